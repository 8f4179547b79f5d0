"""Every joint question the CLI asks can be printed for a pipe or a spreadsheet: each `cagnet query`
command takes `--format table|csv|json`, so a chair never meets one that only draws a terminal table."""

from __future__ import annotations

import typer.main

from cagnet.cli import app

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
