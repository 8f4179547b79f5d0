"""Reading an import file into rows of text cells: CSV or an Excel workbook, for every importer.

One pipeline for the supply and client-record importers: file -> (encoding or sheet) -> header ->
rows of stripped text cells that know their file, sheet, row and column. A CSV file is read as
UTF-8, UTF-8 with a byte order mark, or Windows-1252, decided from the bytes and said (`Source.
encoding_note`), never guessed from statistics; an `.xlsx` workbook is read with openpyxl in
read-only mode, formulas as the values Excel last calculated. Anything wrong with the file itself
(not a table, a bad byte, a misshapen row) becomes an `ImportProblem`, never an exception.
"""

from __future__ import annotations

import codecs
import csv
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from shared.errors import ImportProblem
from shared.spreadsheet import formula_like

__all__ = [
    "ENCODINGS",
    "Columns",
    "Encoding",
    "Source",
    "count_lines",
    "formula_like",
    "header_key",
]

Encoding = Literal["auto", "utf-8", "windows-1252"]
ENCODINGS: tuple[Encoding, ...] = ("auto", "utf-8", "windows-1252")

XLSX_MAGIC = b"PK\x03\x04"  # an .xlsx file is a zip archive
XLS_MAGIC = b"\xd0\xcf\x11\xe0"  # the old binary Excel format (and other OLE files)
MAX_CELL = 32_767  # Excel's own limit on the characters in a cell: anything longer is not a cell
NOTES_ROW_NAME = "cagnet_notes_row"
"""The defined name a cagnet template gives its notes row, so that reading the filled-in template
skips it (see node.imports.template)."""

# A multi-byte UTF-8 sequence: its presence in a file that is not valid UTF-8 means mixed encodings.
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]+")
_CP1252_UNDEFINED = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")  # the bytes Windows-1252 leaves undefined
# A cell that starts as a formula would, found in a whole row at once (cells joined by \x1f).
_FORMULA_CELL = re.compile("\x1f[=+\\-@\t\r]")  # a literal first character: a fast search


@dataclass(frozen=True)
class Columns:
    """The columns of one kind of file, in the order the importer documents them, and which of
    them may be left out."""

    all: tuple[str, ...]
    optional: frozenset[str] = frozenset()

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c for c in self.all if c not in self.optional)


def header_key(cell: str) -> str:
    """A header cell as a column name: case and surrounding spaces ignored, a space for `_`."""
    return re.sub(r"\s+", "_", cell.strip().lower())


def count_lines(path: Path) -> int:
    """Lines in a text file (a last line without a line break counts); for a progress bar."""
    lines, last = 0, b"\n"
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (last != b"\n")


@dataclass
class _Detected:
    encoding: str  # a Python codec name
    note: str  # what was found, as the importer says it
    bad: str | None = None  # why the file cannot be read as text at all


def _detect(path: Path, wanted: Encoding) -> _Detected:
    """The file's encoding from its bytes: a byte order mark says UTF-8; bytes that all decode as
    UTF-8 are UTF-8; otherwise Windows-1252 (Excel's "CSV" on an English Windows), unless the file
    also holds UTF-8 sequences (two encodings in one file) or bytes Windows-1252 does not define."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    first_bad: tuple[int, int] | None = None  # (byte offset, byte)
    has_bom = False
    utf8_seen = False
    undefined: tuple[int, int] | None = None
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            if offset == 0 and chunk.startswith(codecs.BOM_UTF8):
                has_bom = True
            if first_bad is None:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError as exc:
                    first_bad = (offset + exc.start, chunk[exc.start] if exc.start < len(chunk) else 0)
            utf8_seen = utf8_seen or _UTF8_SEQUENCE.search(chunk) is not None
            if undefined is None:
                found = _CP1252_UNDEFINED.search(chunk)
                if found is not None:
                    undefined = (offset + found.start(), chunk[found.start()])
            offset += len(chunk)
    if first_bad is None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            first_bad = (offset - 1, 0)
    if wanted == "windows-1252":
        if undefined is not None:
            return _Detected(
                "cp1252", "", f"not Windows-1252: byte 0x{undefined[1]:02X} at byte offset {undefined[0]} is undefined"
            )
        return _Detected("cp1252", "read as Windows-1252 (--encoding windows-1252)")
    if first_bad is None:
        if has_bom:
            return _Detected("utf-8-sig", "read as UTF-8 (the file starts with a byte order mark)")
        return _Detected("utf-8", "read as UTF-8")
    where = f"byte 0x{first_bad[1]:02X} at byte offset {first_bad[0]}"
    if wanted == "utf-8":
        return _Detected("utf-8", "", f"not UTF-8: {where}; save the file as CSV UTF-8")
    if has_bom or utf8_seen:
        return _Detected(
            "utf-8",
            "",
            f"mixed encodings: the file holds UTF-8 text and also {where}, which is not UTF-8; "
            "save the whole file as CSV UTF-8",
        )
    if undefined is not None:
        return _Detected(
            "cp1252",
            "",
            f"neither UTF-8 nor Windows-1252: {where}, and byte 0x{undefined[1]:02X} at byte offset "
            f"{undefined[0]} means nothing in Windows-1252; save the file as CSV UTF-8",
        )
    return _Detected("cp1252", f"read as Windows-1252: the file is not UTF-8 ({where}) and has no UTF-8 text")


def _cell_text(value: Any) -> str:
    """An Excel cell's value as the text a CSV export would hold (dates as YYYY-MM-DD)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        if value.time() == time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return format(Decimal(repr(value)).normalize(), "f")
    return str(value).strip()


@dataclass
class Source:
    """One file being read: `rows()` yields (row number, cells in header order) for each non-blank
    data row whose cells line up with the header; problems go to `problems` as they are found.

    `renames` maps a header (as `header_key` makes it) to the cagnet column it holds, from a
    mapping profile; `ignored` names headers to skip, with their cells.
    """

    path: Path
    columns: Columns
    problems: list[ImportProblem]
    sheet: str | None = None
    encoding: Encoding = "auto"
    renames: dict[str, str] = field(default_factory=dict)
    ignored: frozenset[str] = frozenset()
    header: list[str] = field(default_factory=list)  # cagnet column names, "" where unnamed or ignored
    source_header: list[str] = field(default_factory=list)  # as the file writes them
    rows_seen: int = 0
    format: str = ""  # "csv" or "xlsx", once reading starts
    sheet_read: str | None = None  # the worksheet read, for a workbook
    encoding_note: str = ""
    kind: str = ""  # what the file should hold, for messages
    _sheets: list[str] = field(default_factory=list)  # every worksheet of a workbook
    _skipped: list[int] = field(default_factory=list)  # columns whose cells must stay empty
    _dropped: list[int] = field(default_factory=list)  # ignored columns: whatever they hold
    # Cells that could not be read as they stand (formula-like, too long, untranslatable): each is
    # told once, its row is still checked cell by cell with the cell empty, and the row is never
    # written. A later check of the same cell (empty, so "a value is required") says nothing more.
    _unread: set[tuple[int, str]] = field(default_factory=set)
    _flawed: set[int] = field(default_factory=set)  # rows with a cell unread or a cell outside the header

    @property
    def label(self) -> str:
        return self.path.name

    def problem(
        self, row: int | None, column: str | None, reason: str, value: str | None = None, fix: str | None = None
    ) -> None:
        if row is not None and column is not None and (row, column) in self._unread:
            return  # the cell's own problem is told; its emptiness follows from it
        self.problems.append(
            ImportProblem(self.label, row, column, reason, sheet=self.sheet_read, value=value, fix=fix)
        )

    def unreadable(self, row: int, column: str | None, reason: str, value: str | None = None) -> None:
        """A cell that cannot be read as it stands: its problem, and the rest of its row is still
        checked (every problem of a row, not its first alone), and the row is never written."""
        self.problem(row, column, reason, value)
        self._flawed.add(row)
        if column:
            self._unread.add((row, column))

    def told(self, row: int, column: str | None) -> bool:
        """Whether the cell's problem is already told (`unreadable`)."""
        return column is not None and (row, column) in self._unread

    def flawed(self, row: int) -> bool:
        """Whether a row has a cell that could not be read: it is checked, never written or previewed."""
        return row in self._flawed

    def records(self) -> Iterator[tuple[int, dict[str, str]]]:
        """Each good row as {column: cell} with the blank cells left out."""
        for row, cells in self.rows():
            yield row, {name: value for name, value in zip(self.header, cells, strict=True) if name and value}

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        for row, cells in self.table():
            self.rows_seen += 1
            if not self.header:
                if not self._read_header(row, cells):
                    return
                continue
            values = self._values(row, cells)
            if values is not None:
                yield row, values
        if self.rows_seen == 0 and not self.problems:
            self.problem(None, None, f"the file is empty: expected a header row naming {', '.join(self.columns.all)}")

    def table(self) -> Iterator[tuple[int, list[str]]]:
        """Every row of the file or sheet as text cells, the header included, unchecked."""
        try:
            with self.path.open("rb") as f:
                start = f.read(4)
        except OSError as exc:
            self.problem(None, None, f"cannot read the file: {exc.strerror}")
            return
        if start.startswith(XLSX_MAGIC) or self.path.suffix.lower() in (".xlsx", ".xlsm"):
            self.format = "xlsx"
            raw: Iterable[tuple[int, list[str]]] = self._xlsx_rows()
        elif start.startswith(XLS_MAGIC) or self.path.suffix.lower() == ".xls":
            self.problem(
                None, None, "an old-style Excel file (.xls): save it as an Excel Workbook (.xlsx) or as CSV UTF-8"
            )
            return
        else:
            self.format = "csv"
            if self.sheet is not None:
                self.problem(None, None, f"--sheet {self.sheet!r} was given, but a CSV file has no sheets")
                return
            raw = self._csv_rows()
        yield from raw

    # -- CSV ---------------------------------------------------------------------------------

    def _csv_rows(self) -> Iterator[tuple[int, list[str]]]:
        detected = _detect(self.path, self.encoding)
        if detected.bad is not None:
            self.problem(None, None, detected.bad)
            return
        self.encoding_note = detected.note
        row = 0
        with self.path.open(encoding=detected.encoding, newline="") as text:
            reader = csv.reader(text, strict=True)
            try:
                for cells in reader:
                    row += 1
                    yield row, [c.strip() for c in cells]
            except csv.Error as exc:
                self.problem(row + 1, None, f"not valid CSV ({exc}); nothing after this row was read")

    # -- Excel -------------------------------------------------------------------------------

    def _xlsx_rows(self) -> Iterator[tuple[int, list[str]]]:
        # Imported here: openpyxl is only needed, and only loaded, for a workbook.
        import openpyxl
        from openpyxl.utils.exceptions import InvalidFileException

        try:
            # read_only streams the sheet; data_only gives a formula's cached value, never the formula.
            book = openpyxl.load_workbook(self.path, read_only=True, data_only=True)
        except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as exc:
            self.problem(None, None, f"not a readable Excel workbook (.xlsx): {_short(exc)}")
            return
        except Exception as exc:  # a damaged workbook can fail anywhere inside openpyxl's parser
            self.problem(None, None, f"not a readable Excel workbook (.xlsx): {type(exc).__name__}: {_short(exc)}")
            return
        try:
            names = book.sheetnames
            self._sheets = list(names)
            if self.sheet is None:
                if not names:
                    self.problem(None, None, "the workbook has no worksheets")
                    return
                name = names[0]
            elif self.sheet in names:
                name = self.sheet
            else:
                self.problem(None, None, f"no worksheet named {self.sheet!r}; the workbook has: {', '.join(names)}")
                return
            self.sheet_read = name
            self.encoding_note = f"worksheet {name!r}" + (f" (first of {len(names)})" if self.sheet is None else "")
            notes_row = _notes_row(book, name)
            sheet = book[name]
            try:
                for index, values in enumerate(sheet.iter_rows(values_only=True), start=1):
                    if index == notes_row:
                        continue
                    yield index, [_cell_text(v) for v in values]
            except Exception as exc:  # a damaged sheet's XML fails as openpyxl meets it
                reason = f"the worksheet cannot be read past here: {type(exc).__name__}: {_short(exc)}"
                self.problem(self.rows_seen + 1, None, reason)
        finally:
            book.close()

    # -- header and rows ---------------------------------------------------------------------

    def _read_header(self, row: int, cells: list[str]) -> bool:
        if not any(cells):
            return True  # blank rows above the header (a workbook's title rows are not blank)
        if self.format == "xlsx":
            while cells and not cells[-1]:
                cells = cells[:-1]  # a workbook's rows reach to its widest row
        self.source_header = list(cells)
        keys = [header_key(c) for c in cells]
        renames = {header_key(k): v for k, v in self.renames.items()}
        ignored = {header_key(k) for k in self.ignored}
        if self.columns.all and not any(renames.get(k, k) in self.columns.all for k in keys):
            # Not one known column: the wrong file or sheet, or a title row above the header.
            other = [s for s in self._sheets if s != self.sheet_read]
            fix = (
                f"Choose the sheet with --sheet (the workbook also has: {', '.join(other)})"
                if other
                else "Check it is the right file and kind, and that the header is the first row; "
                "a mapping profile (--mapping) names headers that differ"
            )
            self.problem(
                row,
                None,
                f"this is not the header of a {self.kind or 'cagnet import'} file: no cell names one of its columns "
                f"({', '.join(self.columns.all)})",
                " | ".join(c for c in cells if c)[:200],
                fix,
            )
            return False
        self.header = []
        known = set(self.columns.all)
        ok = True
        seen: dict[str, str] = {}
        for index, (key, cell) in enumerate(zip(keys, cells, strict=True)):
            if key in ignored:
                self.header.append("")
                self._dropped.append(index)
                continue
            name = renames.get(key, key)
            self.header.append(name)
            if not name:
                self._skipped.append(index)  # Excel leaves unnamed empty columns; their cells must stay empty
                continue
            if name in seen:
                named = "" if header_key(seen[name]) == key else f" (as {seen[name]!r} and {cell!r})"
                self.problem(row, name, f"column appears twice in the header{named}", cell)
                ok = False
            elif name not in known:
                self.problem(
                    row,
                    name,
                    f"unknown column; the columns are {', '.join(self.columns.all)}",
                    cell,
                    "Rename or delete the column, or map it (or ignore it) in a mapping profile",
                )
                ok = False
            seen[name] = cell
        for name in self.columns.required:
            if name not in seen:
                self.problem(
                    row,
                    name,
                    "missing column: the header must name it",
                    fix=f"Add a column headed {name}, or map the header that holds it in a mapping profile",
                )
                ok = False
        if not self.header:
            self.header = [""]
        return ok

    def _values(self, row: int, cells: list[str]) -> list[str] | None:
        width = len(self.header)
        if len(cells) > width and not any(cells[width:]):
            cells = cells[:width]  # a workbook row reaches to the sheet's widest row
        if not any(cells):
            return None
        if len(cells) < width and self.format == "xlsx":
            cells = cells + [""] * (width - len(cells))  # a workbook leaves out trailing empty cells
        if len(cells) != width:
            self.problem(row, None, f"row has {len(cells)} cells but the header has {width}")
            return None
        # Each cell that cannot be read is told and emptied, and the row's other cells are still
        # checked, so that the officer sees every problem of a row at once.
        for index in self._skipped:
            if cells[index]:
                self.unreadable(
                    row, None, f"cell {index + 1} holds {cells[index]!r} but its column has no name in the header"
                )
                cells[index] = ""
        for index in self._dropped:
            cells[index] = ""
        joined = "\x1f" + "\x1f".join(cells)
        if len(joined) <= MAX_CELL and not _FORMULA_CELL.search(joined):
            return cells  # the common case, decided in C: no long cell, nothing formula-like
        for index, cell in enumerate(cells):
            if len(cell) > MAX_CELL:
                column = self.header[index] or None
                self.unreadable(row, column, f"a cell of {len(cell):,} characters (a cell holds at most {MAX_CELL:,})")
                cells[index] = ""
            elif cell and formula_like(cell):
                # Refused, not neutralised: the cell is the authority's own data, and quietly storing
                # something else in its place would hide that the source system holds formula text.
                self.unreadable(
                    row,
                    self.header[index] or None,
                    f"begins with {cell[0]!r}, so a spreadsheet would run it as a formula; cagnet stores no "
                    "formula-like text. Write the value itself (start it with a letter or digit)",
                    cell,
                )
                cells[index] = ""
        return cells


def _notes_row(book: Any, sheet: str) -> int | None:
    """The row a cagnet template marks as its notes row, if this sheet has one."""
    try:
        defined = book.defined_names.get(NOTES_ROW_NAME)
        if defined is None:
            return None
        for title, ref in defined.destinations:
            if title == sheet:
                match = re.fullmatch(r"\$?(\d+):\$?(\d+)", ref)
                if match:
                    return int(match.group(1))
    except (AttributeError, ValueError, TypeError):
        return None
    return None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 200 else text[:200] + "…"
