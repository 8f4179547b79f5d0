"""An authority's existing accreditation list (CSV or Excel), read into signed register entries:
one entry per row, every row checked before any is submitted.

The columns are ENTRY.toml's fields flattened (docs/register.md): `provider_name`,
`national_provider_id`, `charity_number`, `company_number`, `decision`, `passported_from`,
`decided_on`, `valid_from`, `valid_to`, `reference`, `evidence_sha256` or `evidence` (file names
relative to the list, separated by ";"), the five criteria and the five QAF objectives by name.
Each row becomes exactly the entry `cagnet register submit` would make from the same fields, is
signed with the node's key, and is checked as the coordinator will check it (`verify_entry`
against the node's manifest). Any bad row refuses the whole list, naming row and column.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.accreditation import (
    CRITERIA,
    QAF_OBJECTIVES,
    AccreditationEntry,
    entry_bytes,
    entry_from_mapping,
    sign_entry,
    verify_entry,
)
from shared.errors import CagnetError, ImportError_, ImportProblem, InvalidRequest, ReplayedRequest
from shared.manifest import Manifest

__all__ = ["COLUMNS", "SignedRow", "SubmitSummary", "read_decisions", "sign_decisions", "submit_decisions"]

_PROVIDER = ("national_provider_id", "charity_number", "company_number")
COLUMNS = (
    "provider_name",
    *_PROVIDER,
    "decision",
    "passported_from",
    "decided_on",
    "valid_from",
    "valid_to",
    "reference",
    "evidence_sha256",
    "evidence",
    *CRITERIA,
    *QAF_OBJECTIVES,
)
"""Every column a list may have; only provider_name, decision and decided_on must be there (the
rest default as in ENTRY.toml, or are needed only for some decisions)."""
REQUIRED = ("provider_name", "decision", "decided_on")
_DATES = ("decided_on", "valid_from", "valid_to")
MAX_ROWS = 10_000  # an authority's list is a few hundred providers; more is a wrong file


@dataclass(frozen=True)
class SignedRow:
    row: int
    entry: AccreditationEntry
    data: bytes  # the signed entry as the register logs it


@dataclass(frozen=True)
class SubmitSummary:
    logged: tuple[tuple[int, int], ...]  # (row, leaf index) of each entry logged now
    already: tuple[int, ...]  # rows whose entry the register already held (an earlier run)


def _header_key(cell: object) -> str:
    return str(cell or "").strip().lower().replace(" ", "_")


def _rows(path: Path, sheet: str | None) -> Iterator[list[Any]]:
    """The file's rows as cells: .xlsx through openpyxl (read-only, cached values of formulas),
    anything else as CSV in UTF-8 (with or without a byte order mark)."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        import openpyxl

        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            if sheet is not None and sheet not in workbook.sheetnames:
                raise ImportError_(
                    [
                        ImportProblem(
                            path.name, None, None, f"no sheet {sheet!r}; it has {', '.join(workbook.sheetnames)}"
                        )
                    ]
                )
            for values in workbook[sheet or workbook.sheetnames[0]].iter_rows(values_only=True):
                yield list(values)
        finally:
            workbook.close()
        return
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            yield from csv.reader(f)
    except UnicodeDecodeError as exc:
        raise ImportError_(
            [
                ImportProblem(
                    path.name, None, None, f"not UTF-8 (byte {exc.object[exc.start]:#04x}); save it as CSV UTF-8"
                )
            ]
        ) from None


def _cell(value: Any, column: str) -> Any:
    """A cell as the entry takes it: text stripped, dates as dates (ISO, dd/mm/yyyy, or an Excel date)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a charity number typed into Excel
    text = str(value).strip()
    if not text:
        return None
    if column in _DATES:
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
        try:
            return datetime.strptime(text, "%d/%m/%Y").date()
        except ValueError:
            raise ValueError(f"not a date (YYYY-MM-DD or dd/mm/yyyy): {text!r}") from None
    if column == "decision" or column in CRITERIA:
        return text.lower().replace(" ", "-").replace("_", "-")
    if column in QAF_OBJECTIVES:
        return text.upper() if len(text) == 1 else text.lower().replace(" ", "-")
    return text


def _mapping(cells: dict[str, Any]) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    provider = {"name": cells.get("provider_name") or ""}
    provider |= {k: cells[k] for k in _PROVIDER if cells.get(k) is not None}
    raw["provider"] = provider
    for column in ("decision", "passported_from", "decided_on", "valid_from", "valid_to", "reference"):
        if cells.get(column) is not None:
            raw[column] = cells[column]
    if cells.get("evidence_sha256") is not None:
        raw["evidence_sha256"] = str(cells["evidence_sha256"]).lower()
    if cells.get("evidence") is not None:
        raw["evidence"] = [f.strip() for f in str(cells["evidence"]).split(";") if f.strip()]
    criteria = {c: cells[c] for c in CRITERIA if cells.get(c) is not None}
    qaf = {o: cells[o] for o in QAF_OBJECTIVES if cells.get(o) is not None}
    if criteria:
        raw["criteria"] = criteria
    if qaf:
        raw["qaf"] = qaf
    return raw


def _column_of(loc: tuple[int | str, ...]) -> str | None:
    if not loc:
        return None
    if loc[0] == "provider":
        return "provider_name" if loc[1:] in ((), ("name",), ("key",)) else str(loc[1])
    if loc[0] in ("criteria", "qaf") and len(loc) > 1:
        return str(loc[1])
    return str(loc[0])


def read_decisions(
    path: Path,
    *,
    authority: str,
    register: str,
    members: frozenset[str] = frozenset(),
    sheet: str | None = None,
    today: date | None = None,
) -> list[tuple[int, AccreditationEntry]]:
    """Every row of the list as an entry of `authority`'s, with its spreadsheet row number; raises
    ImportError_ naming every bad row and column (nothing is signed or submitted then). A
    passport must come from one of `members` (when given), as the coordinator will insist."""
    label = path.name
    problems: list[ImportProblem] = []
    entries: list[tuple[int, AccreditationEntry]] = []
    try:
        rows = _rows(path, sheet)
        header_cells = next(rows, None)
    except FileNotFoundError:
        raise ImportError_([ImportProblem(label, None, None, "no such file")]) from None
    if header_cells is None:
        raise ImportError_([ImportProblem(label, None, None, "the file is empty")])
    header = [_header_key(c) for c in header_cells]
    unknown = [h for h in header if h and h not in COLUMNS]
    missing = [c for c in REQUIRED if c not in header]
    if unknown or missing:
        for h in unknown:
            problems.append(ImportProblem(label, 1, h, f"unknown column; the columns are: {', '.join(COLUMNS)}"))
        for c in missing:
            problems.append(ImportProblem(label, 1, c, "a required column is missing"))
        raise ImportError_(problems)
    first_row_of: dict[bytes, int] = {}
    for number, values in enumerate(rows, start=2):
        if number - 1 > MAX_ROWS:
            problems.append(ImportProblem(label, number, None, f"more than {MAX_ROWS} rows: is this the right file?"))
            break
        if all(v is None or str(v).strip() == "" for v in values):
            continue  # a blank row, as spreadsheets leave
        cells: dict[str, Any] = {}
        bad = False
        for column, value in zip(header, values, strict=False):
            if not column:
                continue
            try:
                cells[column] = _cell(value, column)
            except ValueError as exc:
                problems.append(ImportProblem(label, number, column, str(exc)))
                bad = True
        if bad:
            continue
        try:
            entry = entry_from_mapping(
                _mapping(cells), authority=authority, register=register, base=path.parent, today=today
            )
        except ValidationError as exc:
            for error in exc.errors():
                message = str(error["msg"]).removeprefix("Value error, ")
                problems.append(ImportProblem(label, number, _column_of(tuple(error["loc"])), message))
            continue
        except InvalidRequest as exc:
            problems.append(ImportProblem(label, number, None, str(exc)))
            continue
        if members and entry.passported_from is not None and entry.passported_from not in members:
            reason = f"{entry.passported_from} is not a member authority of this network: a passport names one"
            problems.append(ImportProblem(label, number, "passported_from", reason))
            continue
        first = first_row_of.setdefault(entry.canonical_bytes(), number)
        if first != number:
            problems.append(ImportProblem(label, number, None, f"the same decision as row {first}"))
            continue
        entries.append((number, entry))
    if not entries and not problems:
        problems.append(ImportProblem(label, None, None, "no data rows: the file has a header and nothing else"))
    if problems:
        raise ImportError_(problems)
    return entries


def sign_decisions(
    entries: list[tuple[int, AccreditationEntry]], *, key: Any, manifest: Manifest, register: str, label: str
) -> list[SignedRow]:
    """Sign each entry and check it as the coordinator will (a passport's source a member, the
    signature the authority's own in the manifest); any refusal refuses the list."""
    signed, problems = [], []
    for row, entry in entries:
        data = entry_bytes(sign_entry(entry, key))
        try:
            verify_entry(data, manifest, register=register)
        except CagnetError as exc:
            problems.append(ImportProblem(label, row, None, str(exc)))
            continue
        signed.append(SignedRow(row, entry, data))
    if problems:
        raise ImportError_(problems)
    return signed


def submit_decisions(client: Any, signed: list[SignedRow]) -> SubmitSummary:
    """Submit each signed entry in row order. An entry the register already holds (the same
    decision, logged by an earlier run of the same list) is counted, not refused, so a list
    whose submission was interrupted can simply be imported again."""
    logged, already = [], []
    for item in signed:
        try:
            index, _ = client.submit(item.data)
        except client.refused as exc:
            if exc.code == ReplayedRequest.code:
                already.append(item.row)
                continue
            raise
        logged.append((item.row, index))
    return SubmitSummary(tuple(logged), tuple(already))
