"""Acting on the accreditation register as a member (its node's folder) or a principal (a network
folder or a kit), and its checkpoint as plain data: what `cagnet register ...` and the console's
register page call."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.checkpoint import VerifiedCheckpoint
    from shared.identity import Identity
    from shared.manifest import Manifest

__all__ = ["Actor", "actor", "checkpoint_json"]


@dataclass(frozen=True)
class Actor:
    """Who acts on the register, the manifest it checks the register's signatures against (and the
    verified chain, oldest first, for entries signed with a key rotated since), and the network
    folder a receipt names (None for a member, which checks in its node's folder)."""

    identity: Identity
    manifest: Callable[[], Manifest]
    netdir: Path | None
    chain: Callable[[], list[Manifest]]


def actor(node: Path | None, network_dir: Path | None, principal: str) -> Actor:
    """A member from its node's folder, else a principal from a network folder or a kit
    (default $CAGNET_NETWORK)."""
    from coordinator import network
    from node.config import load_config
    from shared import dsse
    from shared.manifest import ManifestSource

    if node is not None:
        config = load_config(node)
        trusted = dsse.load_public_key(base64.b64decode(config.coordinator_key))
        source = ManifestSource(config.manifest_path, trusted)
        return Actor(config.identity(), source.current, None, lambda: [m for m, _ in source.history])
    netdir = network_dir or (Path(os.environ["CAGNET_NETWORK"]) if os.environ.get("CAGNET_NETWORK") else None)
    if netdir is None:
        from shared.errors import InvalidRequest

        raise InvalidRequest("give --node NODEDIR or --network NETDIR")
    return Actor(
        network.principal_identity(netdir, principal),
        lambda: network.read(netdir),
        netdir,
        lambda: [m for m, _ in network.history(netdir)],
    )


def checkpoint_json(verified: VerifiedCheckpoint) -> dict[str, object]:
    """A verified checkpoint as plain data: size, root, time, who cosigned, and whether it is final."""
    cp = verified.checkpoint
    return {
        "origin": cp.origin,
        "size": cp.size,
        "root": cp.root.hex(),
        "time": datetime.fromtimestamp(cp.time_ms / 1000, UTC).isoformat(timespec="seconds"),
        "cosigned_by": list(verified.cosigners),
        "quorum": verified.quorum,
        "final": verified.final,
    }
