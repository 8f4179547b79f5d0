"""Every joint question the CLI asks can be printed for a pipe or a spreadsheet: each `cagnet query`
command takes `--format table|csv|json`, so a chair never meets one that only draws a terminal table."""

from __future__ import annotations

import io
import sys

import pytest
import typer.main
from rich.console import Console

from cagnet.cli import app
from cagnet.cli.common import stdout_console

# The grant scenario is worked out from the supply map at the CLI, not a signed answer of its own;
# its --json prints that analysis beside the bundle, and there is no one table for CSV.
_NO_FORMAT = {"grant"}


def test_every_query_command_takes_format() -> None:
    command = typer.main.get_command(app)
    query = command.commands["query"]  # type: ignore[attr-defined]
    names = sorted(set(query.commands) - _NO_FORMAT)
    assert {"outcomes", "equality", "fair-shares", "spend", "movement", "supply-map"} <= set(names)
    missing = [name for name in names if not any("--format" in p.opts for p in query.commands[name].params if p.opts)]
    assert missing == []


def test_the_demo_prints_whole_tables_to_a_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    """`cagnet demo > demo.txt` (and `--json`, whose narrative goes to standard error): the demo's
    console is the one `cagnet query` prints with, so a piped table is never cut to 80 columns (the
    demo's CAG column was), and a section's rule stays a page wide."""
    from rich.table import Table

    from cagnet import demo
    from cagnet.cli.common import RULE_WIDTH

    made: list[Console] = []

    def recording(*, stderr: bool = False) -> Console:
        made.append(stdout_console(stderr=stderr))
        raise RuntimeError("stop after the console is made")

    for stream in ("stdout", "stderr"):
        monkeypatch.setattr(sys, stream, io.StringIO())
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr(demo, "stdout_console", recording)
    for as_json in (False, True):
        with pytest.raises(RuntimeError):
            demo.run_demo(as_json=as_json, keep=None)
    for console, stream in zip(made, (sys.stdout, sys.stderr), strict=True):
        table = Table(title="Units per 1,000 population by client group")
        for name in ("client group", "Medway", "B&H", "E Sussex", "Hampshire", "Kent", "Surrey", "W Sussex", "CAG"):
            table.add_column(name)
        table.add_row("1 Older people with support needs", *["10.50"] * 8)
        console.print(table)
        console.rule("a section")
        text = stream.getvalue()  # type: ignore[attr-defined]
        assert "1 Older people with support needs" in text and "CAG" in text and "…" not in text
        assert max(len(line) for line in text.splitlines() if "─" in line and "a section" in line) <= RULE_WIDTH
