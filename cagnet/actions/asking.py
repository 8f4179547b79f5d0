"""Asking from a member node's folder: the node's key signs, and the node's own verified manifest
chain and policy check the answers (`cagnet query ... --node NODEDIR`, `cagnet console --node`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coordinator.joint.client import Asker

__all__ = ["member_asker"]


def member_asker(nodedir: Path) -> Asker:
    """A member authority's officer asking from its node's folder: the node's key signs, and the
    node's own verified chain and policy check the answers (`cagnet query ... --node NODEDIR`)."""
    import base64

    from coordinator.joint.client import Asker
    from node.config import load_config
    from node.network.governance import node_manifests
    from shared import dsse, keys
    from shared.policy import PolicySource

    config = load_config(nodedir)
    manifests = node_manifests(config)
    # A rotated key the node has not switched to yet (it is not running): switch as it would.
    keys.promote_if_listed(config.identity_dir, manifests.current(), config.authority)
    trusted = dsse.load_public_key(base64.b64decode(config.coordinator_key))
    return Asker(config.identity(), manifests, PolicySource(config.policy_file, trusted, manifests=manifests))
