"""Raw counts from the services' quarterly returns, before any disclosure control: KPI 1,
occupancy, and the waiting lists and refused referrals, by the service's client group (and type)
and quarter.

Plain functions over the store returning true counts at their finest grain (a quarter), for
`node.release` to put through the ledger and the disclosure layer. Nothing here leaves a node. A
return counts in a question when its whole quarter lies inside the question's dates; each service
is counted under its client group, service type and term as the store holds them now.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from node.answers.movement import Question
from node.returns import Kpi1Return, OccupancyReturn, quarter_label, quarter_of
from node.store import Service
from shared import vocabulary
from shared.kinds.returns import MAINTAINED, NOT_MAINTAINED, OCCUPIED, REFUSED, VOID, WAITING

__all__ = ["demand_counts", "kpi1_counts", "last_kpi1_import", "last_occupancy_import", "occupancy_counts"]


def _table(model: Any) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


_SERVICE = _table(Service).c


def _within(returns: Any, question: Question) -> list[ColumnElement[bool]]:
    """Returns whose quarter lies wholly inside the question's dates."""
    conditions: list[ColumnElement[bool]] = []
    if question.from_date is not None:
        first = question.from_date if question.from_date == quarter_of(question.from_date) else None
        # A quarter that began before `from_date` is only partly inside: the next one is the first.
        start = first or _next_quarter(quarter_of(question.from_date))
        conditions.append(returns.quarter_start >= start)
    if question.to_date is not None:
        # The quarter holding `to_date` is inside only when `to_date` is its last day.
        after = _next_quarter(quarter_of(question.to_date))
        ends_quarter = after.toordinal() - 1 == question.to_date.toordinal()
        conditions.append(
            returns.quarter_start <= quarter_of(question.to_date)
            if ends_quarter
            else returns.quarter_start < quarter_of(question.to_date)
        )
    if question.client_groups:
        conditions.append(_SERVICE.client_group.in_(question.client_groups))
    return conditions


def _next_quarter(start: Any) -> Any:
    month = start.month + 3
    return start.replace(year=start.year + 1, month=month - 12) if month > 12 else start.replace(month=month)


def kpi1_counts(engine: Engine, *, question: Question) -> dict[tuple[int, str, str], int]:
    """Long-term services' users by (client group, maintaining or not, quarter)."""
    returns = _table(Kpi1Return).c
    conditions = [_SERVICE.term == vocabulary.Term.LONG.value, *_within(returns, question)]
    query = (
        select(
            _SERVICE.client_group,
            returns.quarter_start,
            func.sum(returns.maintaining),
            func.sum(returns.service_users - returns.maintaining),
        )
        .select_from(_table(Kpi1Return).join(_table(Service), returns.service_id == _SERVICE.id))
        .where(*conditions)
        .group_by(_SERVICE.client_group, returns.quarter_start)
    )
    counts: dict[tuple[int, str, str], int] = {}
    with engine.connect() as conn:
        for group, start, maintaining, others in conn.execute(query):
            quarter = quarter_label(start)
            counts[(int(group), MAINTAINED, quarter)] = int(maintaining)
            counts[(int(group), NOT_MAINTAINED, quarter)] = int(others)
    return counts


def last_kpi1_import(engine: Engine) -> date | None:
    """The day KPI 1 returns were last written (imported or corrected): like client records'
    `last_import`, a standard quarter of KPI 1 is closed once it ended before that day."""
    with engine.connect() as conn:
        value = conn.execute(select(func.max(_table(Kpi1Return).c.updated_at))).scalar()
    if value is None:
        return None
    return value.date() if isinstance(value, datetime) else datetime.fromisoformat(str(value)).date()


def last_occupancy_import(engine: Engine) -> date | None:
    """The day occupancy returns were last written (imported or corrected): a standard quarter of
    the waiting lists and refused referrals is closed once it ended before that day."""
    with engine.connect() as conn:
        value = conn.execute(select(func.max(_table(OccupancyReturn).c.updated_at))).scalar()
    if value is None:
        return None
    return value.date() if isinstance(value, datetime) else datetime.fromisoformat(str(value)).date()


def occupancy_counts(engine: Engine, *, question: Question) -> dict[tuple[int, str, str, str], int]:
    """Units occupied and void at each quarter's end by (client group, service type, state, quarter)."""
    returns = _table(OccupancyReturn).c
    return _return_pairs(engine, question, (returns.units_occupied, OCCUPIED), (returns.voids, VOID))


def demand_counts(engine: Engine, *, question: Question) -> dict[tuple[int, str, str, str], int]:
    """People on the waiting list at each quarter's end, and referrals refused in each quarter, by
    (client group, service type, measure, quarter): the occupancy returns' counts of people."""
    returns = _table(OccupancyReturn).c
    return _return_pairs(engine, question, (returns.waiting_list, WAITING), (returns.referrals_refused, REFUSED))


def _return_pairs(
    engine: Engine, question: Question, *measures: tuple[Any, str]
) -> dict[tuple[int, str, str, str], int]:
    """Two of the occupancy returns' columns summed by (client group, service type, quarter), each
    under its own label: (group, service type, label, quarter) -> sum."""
    returns = _table(OccupancyReturn).c
    query = (
        select(
            _SERVICE.client_group,
            _SERVICE.service_type,
            returns.quarter_start,
            *(func.sum(column) for column, _ in measures),
        )
        .select_from(_table(OccupancyReturn).join(_table(Service), returns.service_id == _SERVICE.id))
        .where(*_within(returns, question))
        .group_by(_SERVICE.client_group, _SERVICE.service_type, returns.quarter_start)
    )
    counts: dict[tuple[int, str, str, str], int] = {}
    with engine.connect() as conn:
        for group, service_type, start, *sums in conn.execute(query):
            quarter = quarter_label(start)
            for (_, label), total in zip(measures, sums, strict=True):
                counts[(int(group), str(service_type), label, quarter)] = int(total)
    return counts
