"""Raw counts from an authority's client records, before any disclosure control: where new clients
came from, how they left short-term services, and which services take mostly non-local people.

Plain functions over the store that return true counts at their finest grain (a calendar month),
for `node.release` to put through the ledger and the disclosure layer. Nothing here leaves a node.
Origins are coarsened as the CAG reads them: an authority of the CAG by its code, anywhere else in
England by its region, and "unknown" when the record does not say.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise
from typing import Any

from sqlalchemy import Table, and_, func, select, true
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import SQLModel

from node import stamps
from node.client_records import ClientRecord, Outcome
from node.store import Provider, Service
from shared import places, vocabulary
from shared.authorities import Register
from shared.disclosure import check_share_threshold
from shared.errors import InvalidRequest
from shared.models import RecordsQuestion

__all__ = [
    "OUTSIDE",
    "PERIODS",
    "UNKNOWN",
    "Question",
    "check_question",
    "departures",
    "intake_by_month",
    "last_import",
    "linkage_persons",
    "new_clients",
    "origin_class",
    "origin_of",
    "period_of",
    "records_version",
    "service_intake",
    "standard_periods",
]


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


_RECORD = _table(ClientRecord).c
_OUTCOME = _table(Outcome).c
_SERVICE = _table(Service).c
_PROVIDER = _table(Provider).c

UNKNOWN = "unknown"
OUTSIDE = "outside"  # anywhere in England outside the CAG (net flows)
PERIODS = ("year", "quarter", "all")
Month = str  # "2009-04"


@dataclass(frozen=True)
class Question:
    """A checked records question."""

    from_date: date | None
    to_date: date | None
    period: str
    client_groups: tuple[int, ...]
    min_share_percent: int

    def as_asked(self) -> RecordsQuestion:
        return RecordsQuestion(
            from_date=self.from_date.isoformat() if self.from_date else "",
            to_date=self.to_date.isoformat() if self.to_date else "",
            period=self.period,
            client_groups=self.client_groups,
            min_share_percent=self.min_share_percent,
        )


def _date(field: str, value: str) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(f"{field}: a date is YYYY-MM-DD") from None


def check_question(question: RecordsQuestion, *, default_share: int = 50) -> Question:
    """The question with its dates parsed and its values checked; InvalidRequest names the field."""
    start, end = _date("from_date", question.from_date), _date("to_date", question.to_date)
    if start and end and end < start:
        raise InvalidRequest("to_date: the period ends before it starts")
    if question.period not in PERIODS:
        raise InvalidRequest(f"period: one of {', '.join(PERIODS)}")
    for group in question.client_groups:
        if group not in vocabulary.CLIENT_GROUPS:
            raise InvalidRequest("client_groups: each must be an SP client group code, 1 to 21")
    share = check_share_threshold(question.min_share_percent or default_share)
    return Question(start, end, question.period, tuple(sorted(set(question.client_groups))), share)


# A plan covers at most this many financial years and client groups: its work grows with both.
PLAN_MAX_YEARS = 5
PLAN_MAX_GROUPS = 4


def standard_periods(question: Question) -> list[tuple[date, date, str]]:
    """The standard periods wholly inside the question's span, for a plan: each financial year
    (1 April to 31 March, grain "year") and each of its quarters (grain "quarter")."""
    if question.from_date is None or question.to_date is None:
        raise InvalidRequest("from_date: a plan needs a period with a first and a last day")
    if len(question.client_groups) > PLAN_MAX_GROUPS:
        raise InvalidRequest(f"client_groups: a plan takes at most {PLAN_MAX_GROUPS} client groups")
    first = question.from_date.year if question.from_date.month >= 4 else question.from_date.year - 1
    last = question.to_date.year if question.to_date.month >= 4 else question.to_date.year - 1
    if last - first + 1 > PLAN_MAX_YEARS:
        raise InvalidRequest(f"to_date: a plan covers at most {PLAN_MAX_YEARS} financial years")
    periods: list[tuple[date, date, str]] = []
    for year in range(first, last + 1):
        starts = [date(year, 4, 1), date(year, 7, 1), date(year, 10, 1), date(year + 1, 1, 1), date(year + 1, 4, 1)]
        inside = [
            (start, end - timedelta(days=1), grain)
            for start, end, grain in [(starts[0], starts[4], "year"), *((a, b, "quarter") for a, b in pairwise(starts))]
        ]
        periods.extend(p for p in inside if question.from_date <= p[0] and p[1] <= question.to_date)
    return periods


def origin_of(previous_authority: str | None, cag: frozenset[str], register: Register | None = None) -> str:
    """How a record's previous authority is shown: a CAG authority by its code, elsewhere in
    England by its region's code, or "unknown" (places from the network's `register`, default
    the shipped list)."""
    if not previous_authority:
        return UNKNOWN
    try:
        upper = places.upper_tier(previous_authority, register)
        return upper if upper in cag else places.region_of(upper, register)
    except KeyError:
        return UNKNOWN  # the importer refuses unknown codes; an old row is shown as unknown


def origin_class(origin: str, cag: frozenset[str]) -> str:
    """For net flows: a CAG authority stays itself; every other known place is "outside"."""
    return origin if origin in cag or origin == UNKNOWN else OUTSIDE


def period_of(month: Month, grain: str) -> str:
    """The financial year ("2009-10") or quarter ("2009-10 Q1") a month falls in, or "all"."""
    if grain == "all":
        return "all"
    year, number = int(month[:4]), int(month[5:7])
    first = year if number >= 4 else year - 1
    label = f"{first}-{(first + 1) % 100:02d}"
    if grain == "year":
        return label
    return f"{label} Q{((number - 4) % 12) // 3 + 1}"


def _month(year: object, month: object) -> Month:
    # PostgreSQL's EXTRACT gives a Decimal, SQLite's a whole number.
    return f"{int(year):04d}-{int(month):02d}"  # type: ignore[call-overload]


def _within(column: Any, question: Question) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if question.from_date:
        conditions.append(column >= question.from_date)
    if question.to_date:
        conditions.append(column <= question.to_date)
    return conditions


def new_clients(
    engine: Engine,
    *,
    authority_code: str,
    question: Question,
    members: frozenset[str] = frozenset(),
    register: Register | None = None,
) -> dict[tuple[str, int, Month], int]:
    """New client records by (origin, primary client group, month of start): true counts. An origin
    among the network's `members` (or this authority) is shown by its code, any other by region,
    as the network's authority `register` places it (default: the shipped list)."""
    cag = members | {authority_code}
    year = func.extract("year", _RECORD.start_date)
    month = func.extract("month", _RECORD.start_date)
    conditions = _within(_RECORD.start_date, question)
    if question.client_groups:
        conditions.append(_RECORD.client_group.in_(question.client_groups))
    query = (
        select(_RECORD.previous_authority, _RECORD.client_group, year, month, func.count())
        .where(and_(true(), *conditions))
        .group_by(_RECORD.previous_authority, _RECORD.client_group, year, month)
    )
    counts: dict[tuple[str, int, Month], int] = {}
    with engine.connect() as conn:
        for previous, group, y, m, n in conn.execute(query):
            key = (origin_of(previous, cag, register), int(group), _month(y, m))
            counts[key] = counts.get(key, 0) + int(n)
    return counts


def departures(engine: Engine, *, question: Question) -> dict[tuple[int, str, Month], int]:
    """Departures from short-term services by (client group, planned/unplanned, month of end)."""
    year = func.extract("year", _OUTCOME.end_date)
    month = func.extract("month", _OUTCOME.end_date)
    conditions = [_SERVICE.term == vocabulary.Term.SHORT.value, *_within(_OUTCOME.end_date, question)]
    if question.client_groups:
        conditions.append(_RECORD.client_group.in_(question.client_groups))
    query = (
        select(_RECORD.client_group, _OUTCOME.departure, year, month, func.count())
        .select_from(Outcome)
        .join(_table(ClientRecord), _OUTCOME.client_record_id == _RECORD.id)
        .join(_table(Service), _RECORD.service_id == _SERVICE.id)
        .where(and_(*conditions))
        .group_by(_RECORD.client_group, _OUTCOME.departure, year, month)
    )
    with engine.connect() as conn:
        return {(int(g), str(d), _month(y, m)): int(n) for g, d, y, m, n in conn.execute(query)}


@dataclass(frozen=True)
class ServiceIntake:
    service_ref: str
    provider: str
    name: str
    service_type: str
    client_group: int
    district: str
    designated: bool
    intake: int  # new clients in the period
    non_local: int  # of whom the previous authority was known and not this one
    unknown: int  # of whom the previous authority is not known


def service_intake(
    engine: Engine, *, authority_code: str, question: Question, register: Register | None = None
) -> list[ServiceIntake]:
    """Each service's intake in the period, split into local, non-local and unknown origin."""
    cag = frozenset({authority_code})  # only "is it this authority?" matters here
    conditions = _within(_RECORD.start_date, question)
    if question.client_groups:
        conditions.append(_SERVICE.client_group.in_(question.client_groups))
    query = (
        select(_RECORD.service_id, _RECORD.previous_authority, func.count())
        .join(_table(Service), _RECORD.service_id == _SERVICE.id)
        .where(and_(true(), *conditions))
        .group_by(_RECORD.service_id, _RECORD.previous_authority)
    )
    tally: dict[int, list[int]] = {}
    with engine.connect() as conn:
        for service_id, previous, n in conn.execute(query):
            counts = tally.setdefault(int(service_id), [0, 0, 0])
            origin = origin_of(previous, cag, register)
            counts[0] += int(n)
            if origin == UNKNOWN:
                counts[2] += int(n)
            elif origin != authority_code:
                counts[1] += int(n)
        if not tally:
            return []
        rows = conn.execute(
            select(
                _SERVICE.id,
                _SERVICE.service_ref,
                _PROVIDER.name,
                _SERVICE.name,
                _SERVICE.service_type,
                _SERVICE.client_group,
                _SERVICE.district_code,
                _SERVICE.designated,
            )
            .join(_table(Provider), _SERVICE.provider_id == _PROVIDER.id)
            .where(_SERVICE.id.in_(list(tally)))
        ).all()
    return [
        ServiceIntake(ref, provider, name, stype, int(group), district, bool(designated), *tally[int(sid)])
        for sid, ref, provider, name, stype, group, district, designated in sorted(rows, key=lambda r: r[1])
    ]


def intake_by_month(
    engine: Engine, *, authority_code: str, question: Question, register: Register | None = None
) -> dict[tuple[str, str, str, Month], int]:
    """Each service's new clients by (client group, service, local / non-local / unknown origin,
    month of start): the finest grain of a non-local services answer, for the release ledger."""
    cag = frozenset({authority_code})  # only "is it this authority?" matters here
    year = func.extract("year", _RECORD.start_date)
    month = func.extract("month", _RECORD.start_date)
    conditions = _within(_RECORD.start_date, question)
    if question.client_groups:
        conditions.append(_SERVICE.client_group.in_(question.client_groups))
    query = (
        select(_SERVICE.client_group, _SERVICE.service_ref, _RECORD.previous_authority, year, month, func.count())
        .join(_table(Service), _RECORD.service_id == _SERVICE.id)
        .where(and_(true(), *conditions))
        .group_by(_SERVICE.client_group, _SERVICE.service_ref, _RECORD.previous_authority, year, month)
    )
    counts: dict[tuple[str, str, str, Month], int] = {}
    with engine.connect() as conn:
        for group, ref, previous, y, m, n in conn.execute(query):
            origin = origin_of(previous, cag, register)
            where = "local" if origin == authority_code else UNKNOWN if origin == UNKNOWN else "non-local"
            key = (str(int(group)), str(ref), where, _month(y, m))
            counts[key] = counts.get(key, 0) + int(n)
    return counts


def linkage_persons(engine: Engine, *, question: Question) -> Iterator[tuple[bytes, int]]:
    """(sealed person, primary client group) for each record started in the period."""
    conditions = _within(_RECORD.start_date, question)
    if question.client_groups:
        conditions.append(_RECORD.client_group.in_(question.client_groups))
    # A record without linkage fields has no person: it is counted elsewhere, never linked.
    query = select(_RECORD.person, _RECORD.client_group).where(and_(_RECORD.person.is_not(None), *conditions))
    with engine.connect() as conn:
        for person, group in conn.execute(query):
            yield bytes(person), int(group)


def last_import(engine: Engine) -> date | None:
    """The day client records were last written (imported or corrected): a standard period is
    closed, and may be published, once it ended before that day."""
    newest = select(func.max(_RECORD.updated_at)).scalar_subquery()
    with engine.connect() as conn:
        value = conn.execute(select(newest)).scalar()
    if value is None:
        return None
    return value.date() if isinstance(value, datetime) else datetime.fromisoformat(str(value)).date()


def records_version(engine: Engine) -> tuple[object, ...]:
    """The client records' and outcomes' edition, like `node.store.data_version`: changes whenever
    a record or outcome is added, corrected or removed (`node.stamps`)."""
    return (stamps.stamps(engine).get(stamps.RECORDS),)
