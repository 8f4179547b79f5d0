"""`cagnet health`: exit 0 when a node or the coordinator reports SERVING through the standard
gRPC health service, 1 otherwise. The servers accept only mutual TLS, so the probe connects with
the identity of the folder it is given (a container's health check runs it inside that container)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cagnet.cli.common import stdout_console

err = stdout_console(stderr=True)  # piped into a log, a message stays whole


def health_command(
    endpoint: Annotated[
        str | None,
        typer.Argument(
            help="host:port to probe (default: the node's own endpoint with --node, the coordinator's with --network)."
        ),
    ] = None,
    nodedir: Annotated[Path | None, typer.Option("--node", help="Probe as this node (its folder).")] = None,
    netdir: Annotated[
        Path | None, typer.Option("--network", help="Probe as the coordinator (the network folder).")
    ] = None,
    peer: Annotated[
        str | None,
        typer.Option(help="The party the server's certificate must name (default: the folder's own party)."),
    ] = None,
    service: Annotated[str, typer.Option(help="One service, e.g. cagnet.v1.Node (default: the server).")] = "",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for an answer.")] = 5.0,
) -> None:
    """Ask a cagnet server whether it is SERVING (exit 0) or not (exit 1), over mTLS."""

    from coordinator import network
    from node.config import load_config
    from node.network.governance import node_manifests
    from shared import health
    from shared.errors import CagnetError
    from shared.manifest import COORDINATOR
    from shared.relay import attached_service

    if (nodedir is None) == (netdir is None):
        raise typer.BadParameter("give exactly one of --node NODEDIR or --network NETDIR", param_hint="--node")
    if nodedir is not None:
        config = load_config(nodedir)
        identity = config.identity()
        target = endpoint or config.endpoint
        if config.transport == "dial-out" and endpoint is None and peer is None and not service:
            # A dial-out node has no port: healthy when the coordinator says it is attached.
            target = node_manifests(config).current().coordinator_endpoint
            peer, service = COORDINATOR, attached_service(config.authority)
    elif netdir is not None:
        identity = network.coordinator_identity(netdir)
        target = endpoint or network.read(netdir).coordinator_endpoint
    expected = peer or identity.party_id
    try:
        status = health.check(target, identity=identity, peer_party_id=expected, service=service, timeout_s=timeout)
    except CagnetError as exc:
        err.print(f"[red]unhealthy[/]: {exc}")
        raise typer.Exit(1) from None
    what = f"{expected} at {target}" + (f" ({service})" if service else "")
    if status != "SERVING":
        err.print(f"[red]unhealthy[/]: {what} is {status}")
        raise typer.Exit(1)
    err.print(f"[green]healthy[/]: {what} is SERVING")
