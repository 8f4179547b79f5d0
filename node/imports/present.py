"""How an import's check is shown on the terminal: what the file was read as, the counts, the
preview of rows as they will be stored, each vocabulary column's values, and the problems."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from node.imports.check import Check, reason_and_fix

__all__ = ["SHOWN_PROBLEMS", "show_check"]

SHOWN_PROBLEMS = 30
"""Problems printed on the terminal; every one is in the --errors report."""


def show_check(console: Console, check: Check, *, dry_run: bool) -> None:
    if check.read_as:
        console.print(f"{check.file}: {check.read_as}")
    if check.problems:
        verb = "would be refused" if dry_run else "import refused"
        count = len(check.problems)
        console.print(f"[red]{check.kind}: {verb}; nothing was written[/] ({count} problem{'s' if count != 1 else ''})")
        _problems(console, check)
        if check.preview:
            _preview(console, check)
        _distinct(console, check)
        return
    summary = check.summary
    assert summary is not None
    if dry_run:
        console.print(
            f"[green]checked[/] {summary.kind}: {summary.rows} rows would be {summary.inserted} new, "
            f"{summary.updated} updated, {summary.unchanged} unchanged; nothing was written (dry run)"
        )
        _preview(console, check)
        _distinct(console, check)
    else:
        console.print(f"[green]imported[/] {summary}")


def _preview(console: Console, check: Check) -> None:
    """One line per column and one column per row: a stored row is wider than a terminal."""
    columns = [c for c in check.preview[0] if c != "row"] if check.preview else []
    title = "rows as they will be stored" if check.ok else "good rows, as they would be stored once the file is fixed"
    table = Table(title=f"the first {len(check.preview)} {title}", title_justify="left")
    table.add_column("column")
    for row in check.preview:
        table.add_column(f"row {row['row']}", overflow="fold")
    for column in columns:
        table.add_row(column, *(_text(row.get(column)) for row in check.preview))
    console.print(table)


def _distinct(console: Console, check: Check) -> None:
    if not check.distinct:
        return
    table = Table(title="values against the vocabulary (as in the file -> as stored)", title_justify="left")
    table.add_column("column")
    table.add_column("value in the file")
    table.add_column("stored as")
    table.add_column("rows", justify="right")
    for column, seen in check.distinct.items():
        for value, count in sorted(seen.counts.items(), key=lambda item: -item[1]):
            table.add_row(column, value, _text(seen.stored.get(value)), f"{count:,}")
        if seen.more:
            table.add_row(column, "… and more", "", "")
    console.print(table)


def _problems(console: Console, check: Check) -> None:
    table = Table(title="problems (each names the place and the fix)", title_justify="left")
    for column in ("sheet", "row", "column", "value", "reason", "fix"):
        table.add_column(column, overflow="fold")
    if not any(p.sheet for p in check.problems):
        table.columns[0].header = ""
    for p in check.problems[:SHOWN_PROBLEMS]:
        reason, fix = reason_and_fix(p)
        row = "" if p.row is None else str(p.row)
        table.add_row(p.sheet or "", row, p.column or "", _text(p.value), reason, fix)
    console.print(table)
    if len(check.problems) > SHOWN_PROBLEMS:
        console.print(f"... and {len(check.problems) - SHOWN_PROBLEMS} more: --errors FILE writes every one")


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
