"""CSV and Excel import of the quarterly returns an authority collects from its services: KPI 1
(long-term services) and occupancy. All or nothing, like every import: each row is checked, every
problem names the file, row and column, and either every row is written in one transaction or none.

    kpi1-returns.csv       service_ref, quarter, service_users, maintaining
    occupancy-returns.csv  service_ref, quarter, units_occupied, voids, waiting_list, referrals_refused

`quarter` is a financial-year quarter, "2009-10 Q1" (April to June 2009; "2009/10 Q1" and
"Q1 2009-10" too); it may not have begun after the day of the import, nor lie wholly outside the
service's life where the store knows it. KPI 1 is a long-term service's indicator: a return for a
short-term service is refused (its outcomes come from client records and outcome forms). Counts are
whole numbers from 0: `maintaining` (service users supported to establish and maintain independent
living) at most `service_users`, which is at most 3 times the service's units (a quarter's turnover
never triples a long-term service); `units_occupied` and `voids` at the quarter's end together at
most the service's units; the waiting list and refused referrals at most MAX_PEOPLE. A return is
keyed by service and quarter: importing it again changes nothing, a changed figure replaces the
stored return (a revised return), and returns the file does not name are left as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError, ValidationInfo, field_validator
from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from node.imports.mapping import Translator
from node.imports.reading import Columns, Encoding, Source, count_lines
from node.imports.supply import (
    BATCH,
    MAX_PROBLEMS,
    ImportSummary,
    Observer,
    Ref,
    _lock_for_import,
    _problems_from,
    _table,
    _whole_number,
    _Writer,
)
from node.returns import Kpi1Return, OccupancyReturn, parse_quarter, quarter_end, quarter_label
from node.store import Service, utcnow
from shared.errors import ImportError_, ImportProblem
from shared.vocabulary import Term

__all__ = ["COLUMNS", "KINDS", "MAX_PEOPLE", "USERS_PER_UNIT", "import_returns"]

KPI1_RETURNS = "kpi1-returns"
OCCUPANCY_RETURNS = "occupancy-returns"
KINDS = (KPI1_RETURNS, OCCUPANCY_RETURNS)

COLUMNS: dict[str, Columns] = {
    KPI1_RETURNS: Columns(("service_ref", "quarter", "service_users", "maintaining")),
    OCCUPANCY_RETURNS: Columns(
        ("service_ref", "quarter", "units_occupied", "voids", "waiting_list", "referrals_refused")
    ),
}

MAX_PEOPLE = 100_000
"""People on one service's waiting list, or refused by it in a quarter: more is an export error."""
USERS_PER_UNIT = 3
"""Service users a long-term service may report in a quarter, per unit of its capacity."""


@dataclass(frozen=True)
class _Known:
    service_id: int
    units: int
    term: str
    start_date: date | None
    end_date: date | None


@dataclass
class _Context:
    services: dict[str, _Known]
    today: date


def _context(info: ValidationInfo) -> _Context:
    context = info.context
    if not isinstance(context, _Context):
        raise TypeError("returns are validated with an import context")
    return context


def _count(value: object) -> int:
    number = _whole_number(value)
    if number < 0:
        raise ValueError(f"must be 0 or more, not {number}")
    return number


def _people(value: object) -> int:
    number = _count(value)
    if number > MAX_PEOPLE:
        raise ValueError(f"{number:,} is more than any one service reports (at most {MAX_PEOPLE:,})")
    return number


def _quarter(value: object) -> date:
    return parse_quarter(str(value))


class _ReturnRow(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    service_ref: Ref
    quarter: Annotated[date, BeforeValidator(_quarter)]

    @field_validator("service_ref")
    @classmethod
    def _known_service(cls, ref: str, info: ValidationInfo) -> str:
        if ref not in _context(info).services:
            raise ValueError(f"unknown service_ref {ref!r}: no such service in the store; import services first")
        return ref

    @field_validator("quarter")
    @classmethod
    def _in_the_service_life(cls, start: date, info: ValidationInfo) -> date:
        context = _context(info)
        if start > context.today:
            raise ValueError(
                f"{quarter_label(start)} has not begun (today is {context.today}); a return follows its quarter"
            )
        known = context.services.get(info.data.get("service_ref", ""))
        if known is not None:
            if known.start_date is not None and quarter_end(start) < known.start_date:
                raise ValueError(f"{quarter_label(start)} ended before the service started ({known.start_date})")
            if known.end_date is not None and start > known.end_date:
                raise ValueError(f"{quarter_label(start)} began after the service ended ({known.end_date})")
        return start

    def known(self, context: _Context) -> _Known:
        return context.services[self.service_ref]

    def figures(self) -> dict[str, int]:
        raise TypeError("every return says what it counts")


class Kpi1ReturnRow(_ReturnRow):
    service_users: Annotated[int, BeforeValidator(_count)]
    maintaining: Annotated[int, BeforeValidator(_count)]

    @field_validator("service_ref")
    @classmethod
    def _long_term(cls, ref: str, info: ValidationInfo) -> str:
        known = _context(info).services[ref]  # the known-service check ran first
        if known.term != Term.LONG.value:
            raise ValueError(
                f"service {ref!r} is short-term: KPI 1 is for long-term services"
                " (a short-term service's outcomes come with its client records)"
            )
        return ref

    @field_validator("service_users")
    @classmethod
    def _bounded_by_units(cls, users: int, info: ValidationInfo) -> int:
        known = _context(info).services.get(info.data.get("service_ref", ""))
        if known is None:
            return users  # the service is already reported
        most = USERS_PER_UNIT * known.units
        if users > most:
            raise ValueError(
                f"{users:,} service users in a quarter is more than {USERS_PER_UNIT} for each of the service's"
                f" {known.units:,} units (at most {most:,})"
            )
        return users

    @field_validator("maintaining")
    @classmethod
    def _at_most_the_users(cls, maintaining: int, info: ValidationInfo) -> int:
        users = info.data.get("service_users")
        if users is not None and maintaining > users:
            raise ValueError(f"{maintaining:,} maintaining independent living is more than the {users:,} service users")
        return maintaining

    def figures(self) -> dict[str, int]:
        return {"service_users": self.service_users, "maintaining": self.maintaining}


class OccupancyReturnRow(_ReturnRow):
    units_occupied: Annotated[int, BeforeValidator(_count)]
    voids: Annotated[int, BeforeValidator(_count)]
    waiting_list: Annotated[int, BeforeValidator(_people)]
    referrals_refused: Annotated[int, BeforeValidator(_people)]

    @field_validator("units_occupied")
    @classmethod
    def _occupied_within_units(cls, occupied: int, info: ValidationInfo) -> int:
        known = _context(info).services.get(info.data.get("service_ref", ""))
        if known is not None and occupied > known.units:
            raise ValueError(f"{occupied:,} units occupied is more than the service's {known.units:,} units")
        return occupied

    @field_validator("voids")
    @classmethod
    def _voids_within_units(cls, voids: int, info: ValidationInfo) -> int:
        known = _context(info).services.get(info.data.get("service_ref", ""))
        occupied = info.data.get("units_occupied")
        if known is not None and occupied is not None and occupied + voids > known.units:
            raise ValueError(
                f"{occupied:,} units occupied and {voids:,} voids make more than the service's {known.units:,} units"
            )
        return voids

    def figures(self) -> dict[str, int]:
        return {
            "units_occupied": self.units_occupied,
            "voids": self.voids,
            "waiting_list": self.waiting_list,
            "referrals_refused": self.referrals_refused,
        }


@dataclass(frozen=True)
class _Kind:
    table: type[Any]
    model: type[_ReturnRow]
    figures: tuple[str, ...]


_KINDS = {
    KPI1_RETURNS: _Kind(Kpi1Return, Kpi1ReturnRow, ("service_users", "maintaining")),
    OCCUPANCY_RETURNS: _Kind(
        OccupancyReturn, OccupancyReturnRow, ("units_occupied", "voids", "waiting_list", "referrals_refused")
    ),
}


@dataclass
class _Seen:
    first_row: dict[tuple[str, date], int] = field(default_factory=dict)


def _load(conn: Connection, today: date) -> _Context:
    service = _table(Service)
    rows = conn.execute(
        select(
            service.c.service_ref,
            service.c.id,
            service.c.units,
            service.c.term,
            service.c.start_date,
            service.c.end_date,
        )
    ).all()
    return _Context({ref: _Known(sid, units, term, start, end) for ref, sid, units, term, start, end in rows}, today)


def import_returns(
    engine: Engine,
    *,
    kind: str,
    path: Path,
    progress: Callable[[int, int], None] | None = None,
    sheet: str | None = None,
    encoding: Encoding = "auto",
    translator: Translator | None = None,
    dry_run: bool = False,
    observe: Observer | None = None,
    source: list[Source] | None = None,
    today: date | None = None,
) -> ImportSummary:
    """Import one file of quarterly returns (`kind`: kpi1-returns or occupancy-returns), all or
    nothing, as `node.imports.supply.import_csv` imports supply (the same options and guarantees).
    Raises `ImportError_` listing every problem, having written nothing."""
    if kind not in _KINDS:
        raise ValueError(f"kind must be one of {', '.join(_KINDS)}: {kind!r}")
    spec = _KINDS[kind]
    table = _table(spec.table)
    translator = translator or Translator()
    today = today or date.today()
    problems: list[ImportProblem] = []
    reader = Source(
        path,
        COLUMNS[kind],
        problems,
        sheet=sheet,
        encoding=encoding,
        renames=translator.renames,
        ignored=translator.ignored,
        kind=kind,
    )
    if source is not None:
        source.append(reader)
    try:
        total = max(count_lines(path) - 1, 0) if path.suffix.lower() == ".csv" else 0
    except OSError as exc:
        raise ImportError_([ImportProblem(reader.label, None, None, f"cannot read the file: {exc.strerror}")]) from None
    seen = _Seen()
    rows = 0

    def report(done: int) -> None:
        if progress is not None:
            progress(done, max(total, done))

    report(0)
    with engine.connect() as conn, conn.begin() as transaction:
        _lock_for_import(conn, table)
        context = _load(conn, today)
        stored = {
            (service_id, quarter): (row_id, tuple(figures))
            for row_id, service_id, quarter, *figures in conn.execute(
                select(table.c.id, table.c.service_id, table.c.quarter_start, *(table.c[f] for f in spec.figures))
            )
        }
        writer = _Writer(conn, table, utcnow())
        for row, values in reader.records():
            rows += 1
            if rows % BATCH == 0:
                report(rows)
            if len(problems) >= MAX_PROBLEMS:
                reader.problem(row, None, f"stopped reading after {MAX_PROBLEMS} problems; fix these and import again")
                break
            cells = translator.row(values, partial(reader.unreadable, row))
            try:
                item = spec.model.model_validate(cells, context=context)
            except ValidationError as exc:
                problems.extend(_problems_from(exc, reader, row, values))
                continue
            if reader.flawed(row):
                continue  # a cell of it could not be read (told): never previewed or written
            key = (item.service_ref, item.quarter)
            first = seen.first_row.setdefault(key, row)
            if first != row:
                reader.problem(
                    row,
                    "quarter",
                    f"a second {quarter_label(item.quarter)} return for service {item.service_ref!r}: already on"
                    f" row {first}; keep one",
                    values.get("quarter"),
                )
                continue
            figures = item.figures()
            if observe is not None:
                observe(
                    row, values, {"service_ref": item.service_ref, "quarter": quarter_label(item.quarter), **figures}
                )
            if problems:
                continue  # the file will be refused: keep checking, stop writing
            service_id = item.known(context).service_id
            before = stored.get((service_id, item.quarter))
            if before is None:
                writer.insert({"service_id": service_id, "quarter_start": item.quarter, **figures})
            elif before[1] != tuple(figures[f] for f in spec.figures):
                writer.update(before[0], figures)
        if rows == 0 and not problems:
            reader.problem(None, None, "no data rows: the file has a header and nothing else")
        if problems:
            raise ImportError_(problems)  # leaving the block rolls back whatever was written
        writer.flush()
        if dry_run:
            transaction.rollback()
    if progress is not None:
        progress(rows, rows)
    return ImportSummary(kind=kind, rows=rows, inserted=writer.inserted, updated=writer.updated)
