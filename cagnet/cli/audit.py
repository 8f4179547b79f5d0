"""`cagnet node audit ...` and `cagnet coordinator audit ...`: one set of show, verify and export
commands for any hash-chained audit log (`shared.audit`), given how to open the log from a folder.
"""

# No `from __future__ import annotations`: typer reads the commands' annotations at run time, and
# they name this factory's `folder` argument type, which only exists inside it.

import contextlib
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cagnet.cli.common import stdout_console

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


__all__ = ["audit_app"]


def audit_app(
    *,
    about: str,
    metavar: str,
    folder_help: str,
    open_log: "Callable[[Path], Engine]",
    principal_names: Callable[[Path], Mapping[str, str]] | None = None,
) -> typer.Typer:
    """A `show | verify | export FOLDER` command group for the audit log `open_log(FOLDER)` opens.
    `principal_names(FOLDER)` gives the names (people, councils) the signed manifest lists for the
    party ids the log holds, shown beside them."""
    app = typer.Typer(help=about, no_args_is_help=True)
    Folder = Annotated[Path, typer.Argument(metavar=metavar, help=folder_help, show_default=False)]

    @app.command("show")
    def show(
        folder: Folder,
        limit: Annotated[int, typer.Option("--limit", "--last", min=1, help="Show the last N entries.")] = 50,
        as_json: Annotated[bool, typer.Option("--json", help="Print the entries as JSON lines.")] = False,
    ) -> None:
        """List the audit log: who asked what, when, and what was decided."""

        from shared import audit
        from shared.errors import CagnetError

        engine = open_log(folder)
        try:
            last_seq, _ = audit.head(engine)
            since_seq = max(0, last_seq - limit)
            if as_json:  # the lines `export` writes, each verifiable on its own
                audit.export_jsonl(engine, sys.stdout, since_seq=since_seq)
                return
            rows = audit.entries(engine, since_seq=since_seq)
        finally:
            engine.dispose()
        names: Mapping[str, str] = {}
        if principal_names is not None:
            with contextlib.suppress(CagnetError, OSError):  # the log is shown even if the manifest is not
                names = principal_names(folder)
        table = Table(title=f"Audit log ({len(rows)} of {last_seq} shown)")
        for column in ("seq", "at", "principal", "role", "via", "method", "parameters", "decision", "released"):
            table.add_column(column)
        for e in rows:
            table.add_row(
                str(e.seq),
                e.at.isoformat(timespec="seconds"),
                f"{e.principal} ({names[e.principal]})"
                if names.get(e.principal, e.principal) != e.principal
                else e.principal,
                e.role,
                e.via,
                e.method.rsplit("/", 1)[-1],
                escape(e.parameters),
                escape(e.decision),
                e.release_digest[:19],
            )
        stdout_console().print(table)

    @app.command("verify")
    def verify(folder: Folder) -> None:
        """Check the hash chain; names the first bad entry and exits non-zero if anything was altered."""

        from shared import audit

        engine = open_log(folder)
        try:
            count = audit.verify_chain(engine)
        finally:
            engine.dispose()
        Console().print(f"[green]audit log intact[/]: {count} entries verified")

    @app.command("export")
    def export(
        folder: Folder,
        out: Annotated[Path | None, typer.Option(help="File to write (default: stdout).")] = None,
    ) -> None:
        """Write the audit log as JSON lines; each line verifies on its own (docs/protocol.md)."""

        from shared import audit

        engine = open_log(folder)
        try:
            if out is None:
                count = audit.export_jsonl(engine, sys.stdout)
            else:
                with out.open("w") as f:
                    count = audit.export_jsonl(engine, f)
        finally:
            engine.dispose()
        Console(stderr=True).print(json.dumps({"exported": count}))

    return app
