"""`cagnet console`: the browser console on this machine, for a principal holding a kit (`--kit`)
or a member authority's officer (`--node`); a regional board may give one kit per network
(`--kit A --kit B ...`, the first the session's own) for the Region page's roll-up. It prints the
address to open, with this session's token in it (and opens it unless --no-browser), and serves
until Ctrl-C."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cagnet.cli.common import _default_network, err


def console_command(
    kits: Annotated[
        list[Path] | None,
        typer.Option(
            "--kit",
            "--network",
            help="A principal's kit (or a network folder) (default: $CAGNET_NETWORK). A regional board may repeat it,"
            " one kit per network, for the Region page (the first is the session's own).",
        ),
    ] = None,
    node: Annotated[
        Path | None,
        typer.Option("--node", help="A member node's folder: ask as its officer, with the node's own pages."),
    ] = None,
    port: Annotated[int, typer.Option(help="The loopback port to serve on (0: any free one).")] = 0,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Print the address; do not open a browser.")] = False,
    principal: Annotated[
        str, typer.Option(help="With a network folder: the principal to act as (default: a kit's own, else cag-chair).")
    ] = "",
    feeds: Annotated[
        Path | None, typer.Option(help="Where the feeds page keeps snapshots (default: FOLDER/feeds).")
    ] = None,
) -> None:
    """Serve the console in a browser on this machine (loopback only, a token in the address)."""
    # Imported here: `cagnet --help` must not pay for the web stack.
    import webbrowser

    from cagnet.console.app import ConsoleServer
    from cagnet.console.session import Session
    from shared.errors import CagnetError

    kit = kits[0] if kits else None
    if kit is not None and node is not None:
        raise typer.BadParameter("give --kit KIT or --node NODEDIR, not both", param_hint="--kit")
    folder = node or kit or _default_network()
    if folder is None:
        raise typer.BadParameter("give --kit KIT or --node NODEDIR (or set CAGNET_NETWORK)", param_hint="--kit")
    if node is not None and not (node / "node.toml").exists():
        raise typer.BadParameter(f"{node} is not a node folder (no node.toml)", param_hint="--node")
    region_kits = tuple(kits) if kits and len(kits) > 1 else ()  # one kit: no roll-up to make
    try:
        session = Session(folder, principal=principal, feeds_dir=feeds, region_kits=region_kits)
    except CagnetError as exc:
        raise typer.BadParameter(str(exc), param_hint="--kit") from None
    session.asker()  # the folder's manifest and policy, verified (a kit's brought up to date), before serving
    server = ConsoleServer(session, port=port)
    try:
        server.start()
        err.print(
            f"the cagnet console for {folder} is at (the address holds this session's token: keep it to yourself):"
        )
        print(server.url, flush=True)
        if not no_browser:
            webbrowser.open(server.url)
        server.wait()
    except KeyboardInterrupt:
        err.print("stopping the console")
    finally:
        server.stop()
