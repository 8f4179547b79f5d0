"""Checking an import before (and as) it is written: the preview, the counts and every problem.

`check_import` runs an import of any kind through its importer, with `dry_run` writing nothing:
the same reading, checks and comparison with the store as a real import, so a check that passes
is an import that will pass. It returns what an officer needs to decide: the first rows as they
will be stored, new / updated / unchanged counts, each vocabulary column's distinct values and
what they become, and every problem (file, sheet, row, column, value, reason, fix), which
`write_error_report` saves as a CSV file that opens in Excel.
"""

from __future__ import annotations

import codecs
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from node.client_records import PersonSealer
from node.imports.mapping import Translator
from node.imports.reading import Encoding, Source
from node.imports.records import import_client_records, import_outcomes
from node.imports.returns import KINDS as RETURN_KINDS
from node.imports.returns import import_returns
from node.imports.staging import Phase
from node.imports.supply import ImportSummary, import_csv
from shared.authorities import Register
from shared.errors import ImportError_, ImportProblem
from shared.spreadsheet import SafeWriter

__all__ = [
    "KINDS",
    "PREVIEW_ROWS",
    "VOCABULARY_COLUMNS",
    "Check",
    "check_import",
    "reason_and_fix",
    "write_error_report",
]

KINDS = ("providers", "services", "contracts", "client-records", "outcomes", *RETURN_KINDS)
PREVIEW_ROWS = 5
DISTINCT_LIMIT = 40  # distinct values listed per column; a column with more is not a vocabulary column

VOCABULARY_COLUMNS = (
    "district",
    "service_type",
    "client_group",
    "unit_type",
    "designated",
    "term",
    "age_band",
    "sex",
    "ethnicity",
    "economic_status",
    "referral_source",
    "accommodation_before",
    "previous_authority",
    "departure",
    "economic_wellbeing",
    "enjoy_and_achieve",
    "be_healthy",
    "stay_safe",
    "positive_contribution",
)
"""The columns whose values come from a fixed list: a check lists each one's distinct values."""


@dataclass
class Distinct:
    """One column's distinct values: how often each appears and what it is stored as."""

    counts: Counter[str] = field(default_factory=Counter)
    stored: dict[str, Any] = field(default_factory=dict)
    more: bool = False  # over DISTINCT_LIMIT values: only the first are listed


@dataclass
class Check:
    kind: str
    file: str
    read_as: str = ""  # the encoding, or the worksheet, the file was read as
    summary: ImportSummary | None = None
    problems: list[ImportProblem] = field(default_factory=list)
    preview: list[dict[str, Any]] = field(default_factory=list)
    distinct: dict[str, Distinct] = field(default_factory=dict)
    rows_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def check_import(
    engine: Engine,
    *,
    kind: str,
    path: Path,
    dry_run: bool = True,
    sealer: PersonSealer | None = None,
    register: Register | None = None,
    translator: Translator | None = None,
    sheet: str | None = None,
    encoding: Encoding = "auto",
    progress: Callable[[int, int], None] | None = None,
    today: date | None = None,
    on_phase: Phase | None = None,
) -> Check:
    """Read and check `path` as an import of `kind`; with `dry_run` (the default) nothing is
    written, otherwise it is imported when every row is good. Never raises for a bad file: the
    problems are in the result. `on_phase` is told each step of a client-record or outcome
    import's write (`node.imports.staging.Phase`)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}: {kind!r}")
    check = Check(kind=kind, file=path.name)
    translator = translator or Translator(register=register, today=today)

    def observe(row: int, cells: dict[str, str], stored: dict[str, Any]) -> None:
        check.rows_checked += 1
        stored = _as_columns(stored, cells)
        if len(check.preview) < PREVIEW_ROWS:
            check.preview.append({"row": row, **stored})
        for column in VOCABULARY_COLUMNS:
            if column not in stored:
                continue
            raw = cells.get(column, _shown(stored[column]))
            seen = check.distinct.setdefault(column, Distinct())
            if raw in seen.counts or len(seen.counts) < DISTINCT_LIMIT:
                seen.counts[raw] += 1
                seen.stored.setdefault(raw, stored[column])
            else:
                seen.more = True

    sources: list[Source] = []
    options: dict[str, Any] = {
        "path": path,
        "progress": progress,
        "sheet": sheet,
        "encoding": encoding,
        "translator": translator,
        "dry_run": dry_run,
        "observe": observe,
    }
    try:
        if kind == "client-records":
            if sealer is None:
                raise ValueError("client records are checked with the node's person sealer")
            check.summary = import_client_records(
                engine, sealer=sealer, register=register, today=today, source=sources, on_phase=on_phase, **options
            )
        elif kind == "outcomes":
            check.summary = import_outcomes(engine, today=today, source=sources, on_phase=on_phase, **options)
        elif kind in RETURN_KINDS:
            check.summary = import_returns(engine, kind=kind, today=today, source=sources, **options)
        else:
            check.summary = import_csv(engine, kind=kind, source=sources, **options)  # type: ignore[arg-type]
    except ImportError_ as exc:
        check.problems = list(exc.problems)
    if sources:
        check.read_as = sources[0].encoding_note
    return check


_STORED_AS = {"district_code": "district", "provider_id": "provider_ref", "service_id": "service_ref"}


def _as_columns(stored: dict[str, Any], cells: dict[str, str]) -> dict[str, Any]:
    """Stored values under the file's column names, with references in place of the store's ids."""
    out = {}
    for key, value in stored.items():
        column = _STORED_AS.get(key, key)
        out[column] = cells.get(column, value) if key.endswith("_id") else value
    return out


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


# The phrases that begin the fix in an importer's reason ("...; use one of: a, b").
_FIX_STARTS = (
    "use ",
    "leave ",
    "save ",
    "import ",
    "write ",
    "fix ",
    "keep ",
    "list it",
    "a value is required",
)


def reason_and_fix(problem: ImportProblem) -> tuple[str, str]:
    """A problem's reason and its fix, for the error report's two columns: the fix is the
    problem's own when it has one, else the part of the reason after "; " that says what to do."""
    if problem.fix:
        return problem.reason, problem.fix
    reason = problem.reason
    head, sep, tail = reason.partition("; ")
    if sep and tail.lower().startswith(_FIX_STARTS):
        return head, tail[0].upper() + tail[1:]
    head, sep, tail = reason.partition(". ")
    if sep and tail.lower().startswith(_FIX_STARTS):
        return head, tail
    return reason, _default_fix(problem)


def _default_fix(problem: ImportProblem) -> str:
    if problem.row is None:
        return "Correct the file as the reason says and check it again"
    if problem.column:
        return f"Correct the {problem.column} cell on row {problem.row}"
    return f"Correct row {problem.row}"


REPORT_COLUMNS = ("file", "sheet", "row", "column", "value", "reason", "fix")


def write_error_report(problems: list[ImportProblem], out: Path) -> None:
    """Every problem as one row of a CSV file Excel opens as it is: UTF-8 with a byte order mark
    (so Excel reads it as UTF-8), and every cell escaped so that no value from the file becomes a
    formula in the officer's spreadsheet."""
    with out.open("w", encoding="utf-8", newline="") as f:
        f.write(codecs.BOM_UTF8.decode("utf-8"))
        writer = SafeWriter(f, lineterminator="\r\n")
        writer.writerow(REPORT_COLUMNS)
        for p in problems:
            reason, fix = reason_and_fix(p)
            writer.writerow(
                [p.file, p.sheet or "", "" if p.row is None else p.row, p.column or "", p.value or "", reason, fix]
            )


def linkable_by_provider(engine: Engine) -> list[tuple[str, str, int, int]]:
    """(provider_ref, provider name, client records, of which linkable) for every provider with
    client records: the share a provider's returns can be linked across authorities."""
    from sqlalchemy import func, select

    from node.client_records import ClientRecord
    from node.imports.supply import _table
    from node.store import Provider, Service

    record, service, provider = _table(ClientRecord), _table(Service), _table(Provider)
    query = (
        select(provider.c.provider_ref, provider.c.name, func.count(), func.count(record.c.person))
        .select_from(record.join(service, record.c.service_id == service.c.id))
        .join(provider, service.c.provider_id == provider.c.id)
        .group_by(provider.c.provider_ref, provider.c.name)
        .order_by(provider.c.provider_ref)
    )
    with engine.connect() as conn:
        return [(str(ref), str(name), int(n), int(linked)) for ref, name, n, linked in conn.execute(query)]
