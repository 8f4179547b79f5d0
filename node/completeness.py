"""How complete a node's client-record returns are: per provider and service, the client records
and outcomes received each financial quarter against the service's units, the share with an
unknown origin, the share linkable, and the services that sent nothing.

This is the list an SP team uses to chase providers for missing returns. It reads only this
node's own store and never leaves it (it names providers and services), so it does not pass
through the disclosure-control layer; `cagnet node completeness` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from node.client_records import ClientRecord, Outcome
from node.imports.supply import _table
from node.store import Provider, Service
from shared.errors import InvalidRequest
from shared.vocabulary import ServiceType

__all__ = [
    "Completeness",
    "ServiceReturns",
    "completeness",
    "csv_rows",
    "quarter_of",
    "quarters_between",
    "spreadsheet_safe",
]

# SP client records are not made for community alarms or home improvement agencies (the
# synthetic records follow the same rule, node.synthetic.clients.NOT_RECORDED): such a service
# sending nothing is not a missing return.
NO_CLIENT_RECORDS = frozenset({ServiceType.COMMUNITY_ALARM.value, ServiceType.HOME_IMPROVEMENT_AGENCY.value})

MAX_QUARTERS = 20
"""At most five years of quarters in one report: wider than that, no one reads the table."""


def quarter_of(day: date) -> tuple[int, int]:
    """(the financial year's first calendar year, quarter 1-4): April-June is Q1."""
    first = day.year if day.month >= 4 else day.year - 1
    return first, ((day.month - 4) % 12) // 3 + 1


def quarter_label(quarter: tuple[int, int]) -> str:
    """ "2009-10 Q1", as the movement answers write it."""
    year, number = quarter
    return f"{year}-{(year + 1) % 100:02d} Q{number}"


def quarter_start(quarter: tuple[int, int]) -> date:
    year, number = quarter
    month = 4 + 3 * (number - 1)
    return date(year + (month > 12), (month - 1) % 12 + 1, 1)


def quarters_between(first: date, last: date) -> list[tuple[int, int]]:
    """Every financial quarter from the one holding `first` to the one holding `last`."""
    quarters, current, end = [], quarter_of(first), quarter_of(last)
    while current <= end:
        quarters.append(current)
        year, number = current
        current = (year, number + 1) if number < 4 else (year + 1, 1)
    return quarters


@dataclass
class ServiceReturns:
    """One service's returns over the report's quarters."""

    provider_ref: str
    provider: str
    service_ref: str
    service: str
    service_type: str
    client_group: int
    units: int
    term: str
    records: dict[str, int] = field(default_factory=dict)  # quarter label -> client records started
    outcomes: dict[str, int] = field(default_factory=dict)  # quarter label -> outcomes (departures)
    unknown_origin: int = 0  # records in the period with no previous authority
    linkable: int = 0  # records in the period that carry the person fields linkage needs

    @property
    def total_records(self) -> int:
        return sum(self.records.values())

    @property
    def total_outcomes(self) -> int:
        return sum(self.outcomes.values())

    @property
    def expects_records(self) -> bool:
        return self.service_type not in NO_CLIENT_RECORDS

    @property
    def expects_outcomes(self) -> bool:
        # Outcome forms are returned on leaving a short-term service only.
        return self.expects_records and self.term == "short"

    @property
    def records_per_unit(self) -> float | None:
        return self.total_records / self.units if self.units else None

    @property
    def unknown_origin_share(self) -> float | None:
        return self.unknown_origin / self.total_records if self.total_records else None

    @property
    def linkable_share(self) -> float | None:
        return self.linkable / self.total_records if self.total_records else None

    @property
    def quarters_without_records(self) -> list[str]:
        return [q for q, n in self.records.items() if n == 0]

    @property
    def sent_nothing(self) -> bool:
        """A service with capacity, of a kind that makes client records, that returned none in
        the whole period."""
        return self.expects_records and self.units > 0 and self.total_records == 0

    def to_json(self) -> dict[str, Any]:
        return {
            "provider_ref": self.provider_ref,
            "provider": self.provider,
            "service_ref": self.service_ref,
            "service": self.service,
            "service_type": self.service_type,
            "client_group": self.client_group,
            "units": self.units,
            "term": self.term,
            "records": self.records if self.expects_records else None,
            "outcomes": self.outcomes if self.expects_outcomes else None,
            "total_records": self.total_records,
            "records_per_unit": _rounded(self.records_per_unit),
            "unknown_origin_share": _rounded(self.unknown_origin_share),
            "linkable_share": _rounded(self.linkable_share),
            "quarters_without_records": self.quarters_without_records,
            "sent_nothing": self.sent_nothing,
        }


@dataclass(frozen=True)
class Completeness:
    """The report: the period, its quarters (labels, in order) and every service's returns."""

    first_day: date
    last_day: date
    quarters: tuple[str, ...]
    services: tuple[ServiceReturns, ...]

    @property
    def sent_nothing(self) -> tuple[ServiceReturns, ...]:
        return tuple(s for s in self.services if s.sent_nothing)

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.first_day.isoformat(),
            "to": self.last_day.isoformat(),
            "quarters": list(self.quarters),
            "services": [s.to_json() for s in self.services],
            "sent_nothing": [s.service_ref for s in self.sent_nothing],
        }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def completeness(engine: Engine, *, first_day: date | None = None, last_day: date | None = None) -> Completeness:
    """Every service's returns, quarter by quarter, from `first_day` to `last_day` (inclusive).

    By default the four quarters ending with the one that holds the newest client record (or
    today, before any record is imported): the latest year an SP team chases."""
    record, outcome = _table(ClientRecord), _table(Outcome)
    service, provider = _table(Service), _table(Provider)
    with engine.connect() as conn:
        if last_day is None:
            newest = conn.execute(select(func.max(record.c.start_date))).scalar()
            last = quarter_of(_as_date(newest) if newest is not None else date.today())
            last_day = _quarter_end(last)
        if first_day is None:
            year, number = quarter_of(last_day)
            first_day = quarter_start((year - 1, number + 1) if number < 4 else (year, 1))
        if first_day > last_day:
            raise InvalidRequest("the period ends before it starts", detail=f"{first_day} to {last_day}")
        quarters = quarters_between(first_day, last_day)
        if len(quarters) > MAX_QUARTERS:
            raise InvalidRequest(f"a completeness report covers at most {MAX_QUARTERS} quarters")
        labels = tuple(quarter_label(q) for q in quarters)
        services: dict[int, ServiceReturns] = {}
        query = select(
            service.c.id,
            provider.c.provider_ref,
            provider.c.name,
            service.c.service_ref,
            service.c.name,
            service.c.service_type,
            service.c.client_group,
            service.c.units,
            service.c.term,
        ).join(provider, provider.c.id == service.c.provider_id)
        for sid, pref, pname, sref, sname, stype, group, units, term in conn.execute(query):
            services[sid] = ServiceReturns(
                pref, pname, sref, sname, stype, group, units, term,
                records=dict.fromkeys(labels, 0), outcomes=dict.fromkeys(labels, 0),
            )  # fmt: skip
        in_year, in_month = func.extract("year", record.c.start_date), func.extract("month", record.c.start_date)
        records = (
            select(
                record.c.service_id,
                in_year,
                in_month,
                func.count(),
                func.count(record.c.previous_authority),
                func.count(record.c.person),
            )
            .where(record.c.start_date >= first_day, record.c.start_date <= last_day)
            .group_by(record.c.service_id, in_year, in_month)
        )
        for sid, y, m, count, known, linkable in conn.execute(records):
            returns = services[sid]
            returns.records[quarter_label(quarter_of(date(int(y), int(m), 1)))] += count
            returns.unknown_origin += count - known
            returns.linkable += linkable
        in_year, in_month = func.extract("year", outcome.c.end_date), func.extract("month", outcome.c.end_date)
        outcomes = (
            select(record.c.service_id, in_year, in_month, func.count())
            .join(record, record.c.id == outcome.c.client_record_id)
            .where(outcome.c.end_date >= first_day, outcome.c.end_date <= last_day)
            .group_by(record.c.service_id, in_year, in_month)
        )
        for sid, y, m, count in conn.execute(outcomes):
            services[sid].outcomes[quarter_label(quarter_of(date(int(y), int(m), 1)))] += count
    # By provider, then service: the order an SP team works down when it chases returns.
    ordered = sorted(services.values(), key=lambda s: (s.provider.casefold(), s.provider_ref, s.service_ref))
    return Completeness(first_day, last_day, labels, tuple(ordered))


def _quarter_end(quarter: tuple[int, int]) -> date:
    year, number = quarter
    following = quarter_start((year, number + 1) if number < 4 else (year + 1, 1))
    return date.fromordinal(following.toordinal() - 1)


def _as_date(value: object) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def csv_rows(report: Completeness) -> list[list[str]]:
    """The report as rows for a spreadsheet: one per service, a column per quarter's records and
    outcomes. Text cells that a spreadsheet would take for a formula are escaped."""
    header = ["provider_ref", "provider", "service_ref", "service", "service_type", "client_group", "units", "term"]
    for label in report.quarters:
        header += [f"records {label}", f"outcomes {label}"]
    header += ["records", "records_per_unit", "unknown_origin_share", "linkable_share", "sent_nothing"]
    rows = [header]
    for s in report.services:
        row = [s.provider_ref, s.provider, s.service_ref, s.service, s.service_type, str(s.client_group), str(s.units)]
        row.append(s.term)
        for label in report.quarters:
            row += [
                str(s.records[label]) if s.expects_records else "",
                str(s.outcomes[label]) if s.expects_outcomes else "",
            ]
        row += [str(s.total_records), _cell(s.records_per_unit), _cell(s.unknown_origin_share)]
        row += [_cell(s.linkable_share), "yes" if s.sent_nothing else "no"]
        rows.append([spreadsheet_safe(cell) for cell in row])
    return rows


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def spreadsheet_safe(cell: str) -> str:
    """A text cell a spreadsheet would run as a formula (=, +, -, @ first, or a tab or carriage
    return) gets a leading apostrophe, as OWASP advises for CSV exports; numbers are left alone."""
    if cell and cell[0] in "=+-@\t\r":
        try:
            float(cell)
        except ValueError:
            return "'" + cell
    return cell


def table(report: Completeness) -> Any:
    """The report as a rich table for the terminal: records (and outcomes, for short-term
    services) per quarter, then the shares; a service that sent nothing is marked. Services of a
    kind that makes no client records are left out (the JSON and CSV keep them)."""
    from rich.table import Table

    shown = Table(
        title=f"Client-record returns, {report.first_day} to {report.last_day}",
        caption="per quarter: records/outcomes (outcomes for short-term services only)",
        title_justify="left",
    )
    shown.add_column("provider", max_width=28, overflow="ellipsis", no_wrap=True)
    shown.add_column("service", no_wrap=True)
    shown.add_column("group", justify="right")
    shown.add_column("units", justify="right")
    for label in report.quarters:
        shown.add_column(label.replace(" ", "\n"), justify="right")
    for name in ("per unit", "unknown origin", "linkable"):
        shown.add_column(name, justify="right")
    shown.add_column("", no_wrap=True)
    for s in report.services:
        if not s.expects_records:
            continue
        cells = [s.provider, s.service_ref, str(s.client_group), str(s.units)]
        for label in report.quarters:
            records = s.records[label]
            shown_records = f"[red]{records}[/]" if records == 0 and s.units else str(records)
            cells.append(f"{shown_records}/{s.outcomes[label]}" if s.expects_outcomes else shown_records)
        cells += [_share(s.records_per_unit, percent=False), _share(s.unknown_origin_share), _share(s.linkable_share)]
        cells.append("[red]sent nothing[/]" if s.sent_nothing else "")
        shown.add_row(*cells)
    return shown


def _share(value: float | None, *, percent: bool = True) -> str:
    if value is None:
        return "-"
    return f"{value:.0%}" if percent else f"{value:.2f}"
