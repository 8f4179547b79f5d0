"""The `cagnet` command line: one Typer tree, wired here and nowhere else. Each command group is a
module of this package; a module that adds commands to another group lists them, and they are
added below in the order `--help` shows them. Errors are printed plainly (what was wrong, where)
with exit code 2.

Start-up: `cagnet --help` must not pay for grpc, SQLAlchemy, cryptography, pydantic models or
protobuf, so the command modules import those inside the commands that need them
(tests/test_cli_startup.py counts what importing this package loads).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from cagnet.cli import (
    analyses,
    console,
    coordinator,
    feed,
    funding,
    governance,
    health,
    kit,
    network,
    node,
    onboarding,
    providers,
    query,
    records,
    register,
    returns,
    vfm_position,
)
from cagnet.cli.common import stdout_console

__all__ = ["app", "main"]

err = stdout_console(stderr=True)  # piped into a log, a message stays whole


def report(
    period: Annotated[str, typer.Option(help="The financial year the pack covers, e.g. 2009-10 (April to March).")],
    out_dir: Annotated[Path, typer.Option("--out", help="The folder to write pack.html, pack.xlsx and pack.pdf in.")],
    compare: Annotated[
        str, typer.Option(help="An earlier financial year: each figure shows its change since then.")
    ] = "",
    network_dir: Annotated[
        Path | None,
        typer.Option(
            "--network", "--kit", "--node", help="The network folder, a principal's kit, or a member node's folder."
        ),
    ] = None,
    principal: Annotated[
        str, typer.Option(help="The principal to act as (default: a kit's own, else cag-chair).")
    ] = "",
) -> None:
    """A meeting pack for a financial year: a summary for elected members and a section for every
    question the network answers, as self-contained HTML, Excel and an A4 PDF (no request leaves them)."""
    from cagnet.actions.asking import member_asker
    from cagnet.actions.pack import unanswered
    from cagnet.actions.pack_files import write_pack
    from cagnet.cli.common import _netdir

    pack, written, skipped = write_pack(
        _netdir(network_dir), out_dir, period=period, compare=compare, principal=principal, member_asker=member_asker
    )
    asked, refused = unanswered(pack)  # both periods' questions: a refused compared year is said too
    err.print(f"[green]pack written[/] for {pack.period}: {asked - len(refused)} of {asked} questions answered")
    for section in refused:
        period = f" {section.period}" if section.period else ""
        err.print(f"  [yellow]not answered[/]: {section.kind}{period}: {escape(section.refusal)}")
    for path in written:
        err.print(f"  {path.resolve()}")
    if skipped:
        err.print(f"  [yellow]PDF skipped[/]: {skipped}")


def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print the joint bundle as JSON only.")] = False,
    keep: Annotated[Path | None, typer.Option(help="Build the network in this folder and keep it.")] = None,
) -> None:
    """Six authorities as separate processes on loopback, mTLS and signatures on, a joint supply map."""
    from cagnet.demo import run_demo

    raise typer.Exit(run_demo(as_json=as_json, keep=keep))


def _typer() -> typer.Typer:
    return typer.Typer(
        help="cagnet: federated data sharing for Supporting People Cross Authority Groups.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
    )


app = _typer()
app.command("verify")(query.verify)
app.command("health")(health.health_command)
app.command("report")(report)
app.command("console")(console.console_command)
app.command("demo")(demo)

for name, command in onboarding.NETWORK_COMMANDS + governance.NETWORK_COMMANDS:
    network.app.command(name)(command)

NODE_COMMANDS: tuple[tuple[str, Callable[..., None]], ...] = (
    *onboarding.NODE_COMMANDS,
    ("vfm-position", vfm_position.vfm_position),
    ("witness", register.node_witness),
    *governance.NODE_COMMANDS,
    ("init", node.node_init),
)
for name, command in NODE_COMMANDS:
    node.app.command(name)(command)


for name, command in (
    records.QUERY_COMMANDS
    + providers.QUERY_COMMANDS
    + funding.QUERY_COMMANDS
    + analyses.QUERY_COMMANDS
    + returns.QUERY_COMMANDS
):
    query.app.command(name)(command)


# Each group by its name: the whole tree holds them all, in this order; `main` builds one alone.
GROUPS: dict[str, typer.Typer] = {
    "network": network.app,
    "node": node.app,
    "coordinator": coordinator.app,
    "kit": kit.app,
    "query": query.app,
    "register": register.register_app,
    "feed": feed.feed_app,
}
for name, group in GROUPS.items():
    app.add_typer(group, name=name)


def _loaded(module: str, name: str) -> type[BaseException]:
    """An exception class if its module is loaded: if it is not, no command can have raised it, and
    importing it just to say so would cost every command grpc's start-up."""
    loaded = sys.modules.get(module)
    return getattr(loaded, name) if loaded is not None else _NeverRaised


class _NeverRaised(Exception):
    pass


def _explain(exc: Exception) -> bool:
    """Print a cagnet error or a refusal plainly; False for anything else (a bug: its traceback shows)."""
    if isinstance(exc, _loaded("shared.errors", "ImportError_")):
        err.print(f"[red]error:[/] {exc.public_message}")  # type: ignore[attr-defined]
        problems = exc.problems  # type: ignore[attr-defined]
        for problem in problems[:50]:
            err.print(f"  {problem}")
        if len(problems) > 50:
            err.print(f"  ... and {len(problems) - 50} more")
    elif isinstance(exc, (_loaded("coordinator.joint.client", "Refused"), _loaded("shared.channel", "ServiceRefused"))):
        err.print(f"[red]refused[/] ({exc.code.name}): {exc.public_message}")  # type: ignore[attr-defined]
    elif isinstance(exc, _loaded("shared.errors", "CagnetError")):
        err.print(f"[red]error:[/] {escape(str(exc))}")  # a message may name a [section] of a file
    elif isinstance(exc, _loaded("grpc", "RpcError")):
        err.print(f"[red]refused:[/] {exc.code().name}: {exc.details()}")  # type: ignore[attr-defined]
    else:
        return False
    return True


def _app_for(argv: list[str]) -> typer.Typer:
    """The app a command line needs: Typer builds every parameter of every command it holds before
    it parses anything (a pydantic adapter each), so `cagnet query ...` builds only the query group,
    a third of the start-up a person waits through. Same commands, same usage lines and errors."""
    group = argv[1] if len(argv) > 1 else ""
    if group not in GROUPS:
        return app
    narrow = _typer()
    narrow.add_typer(GROUPS[group], name=group)
    return narrow


def main() -> None:
    try:
        _app_for(sys.argv)()
    except Exception as exc:
        if not _explain(exc):
            raise
        sys.exit(2)


if __name__ == "__main__":
    main()
