"""Raw counts of short-term outcomes, before any disclosure control: departures from short-term
services by client group, planned or unplanned, and each outcome domain's need as achieved, not
achieved or not applicable, by month of departure. `node.release` protects them; nothing here
leaves a node.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, and_, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import SQLModel

from node.answers.movement import Month, Question
from node.client_records import ClientRecord, Outcome
from node.store import Service
from shared import vocabulary
from shared.kinds.outcomes import DEPARTURE, DOMAINS, NEED_VALUES

__all__ = ["outcome_counts", "records_table", "within"]


def records_table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


def within(column: Any, question: Question) -> list[ColumnElement[bool]]:
    """The question's span as conditions on a date column (inclusive; open ends unbounded)."""
    conditions: list[ColumnElement[bool]] = []
    if question.from_date:
        conditions.append(column >= question.from_date)
    if question.to_date:
        conditions.append(column <= question.to_date)
    return conditions


_RECORD = records_table(ClientRecord).c
_OUTCOME = records_table(Outcome).c
_SERVICE = records_table(Service).c


def outcome_counts(engine: Engine, *, question: Question) -> dict[tuple[int, str, str, Month], int]:
    """Departures from short-term services in the question's span by (client group, measure,
    value, month of departure): the measure "departure" with "planned" / "unplanned", and each
    outcome domain with "achieved", "not-achieved" or "not-applicable". Every departure counts
    once in each measure, so each measure's values sum to the departures."""
    year = func.extract("year", _OUTCOME.end_date)
    month = func.extract("month", _OUTCOME.end_date)
    domains = [getattr(_OUTCOME, d) for d in DOMAINS]
    conditions = [_SERVICE.term == vocabulary.Term.SHORT.value, *within(_OUTCOME.end_date, question)]
    if question.client_groups:
        conditions.append(_RECORD.client_group.in_(question.client_groups))
    query = (
        select(_RECORD.client_group, _OUTCOME.departure, *domains, year, month, func.count())
        .select_from(records_table(Outcome))
        .join(records_table(ClientRecord), _OUTCOME.client_record_id == _RECORD.id)
        .join(records_table(Service), _RECORD.service_id == _SERVICE.id)
        .where(and_(*conditions))
        .group_by(_RECORD.client_group, _OUTCOME.departure, *domains, year, month)
    )
    counts: dict[tuple[int, str, str, Month], int] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            group, departure, *needs, y, m, n = row
            at = f"{int(y):04d}-{int(m):02d}"
            for measure, value in ((DEPARTURE, str(departure)), *zip(DOMAINS, map(str, needs), strict=True)):
                shown = value if measure == DEPARTURE else NEED_VALUES[value]
                key = (int(group), measure, shown, at)
                counts[key] = counts.get(key, 0) + int(n)
    return counts
