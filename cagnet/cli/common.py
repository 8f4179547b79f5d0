"""What the network operator's, a CAG chair's and a member officer's commands share: the consoles,
the --network/--kit/--node options and how a folder becomes the one to act from."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

if TYPE_CHECKING:
    from coordinator.joint.client import Asker


out = Console()
err = Console(stderr=True)


def _default_network() -> Path | None:
    env = os.environ.get("CAGNET_NETWORK")
    return Path(env) if env else None


NetworkOpt = Annotated[
    Path | None,
    typer.Option("--network", "--kit", help="The network folder, or a principal's kit (default: $CAGNET_NETWORK)."),
]
# Joint queries may also be asked as a member authority's officer, from its node's folder.
AskerOpt = Annotated[
    Path | None,
    typer.Option(
        "--network",
        "--kit",
        "--node",
        help="The network folder, a principal's kit (--kit KIT), or a member node's folder (--node NODEDIR:"
        " ask as that authority's officer) (default: $CAGNET_NETWORK).",
    ),
]
PrincipalOpt = Annotated[
    str, typer.Option(help="The principal to act as (default: a kit's own principal, else cag-chair).")
]


def _netdir(value: Path | None) -> Path:
    from coordinator import network

    netdir = value or _default_network()
    if netdir is None:
        raise typer.BadParameter("give --network NETDIR or set CAGNET_NETWORK", param_hint="--network")
    if network.kit_principal(netdir) is not None:
        from coordinator import kit

        kit.refresh(netdir)  # the kit's manifest, brought up to date and verified, before it is used
    return netdir


def parse_districts(values: list[str]) -> dict[str, str]:
    """--district CODE=NAME options as code -> name; a malformed one is refused before anything is written."""
    districts: dict[str, str] = {}
    for value in values:
        code, sep, name = value.partition("=")
        if not sep or not code.strip() or not name.strip():
            raise typer.BadParameter(f"{value!r} is not CODE=NAME", param_hint="--district")
        if code.strip() in districts:
            raise typer.BadParameter(f"{code.strip()} is given twice", param_hint="--district")
        districts[code.strip()] = name.strip()
    return districts


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
