"""Raw figures for spend per client: new clients by the client group and service type of the
service they started, and month of start. True counts for `node.release` to put through the ledger
and the disclosure layer (the money and capacity come from `node.answers.supply`); nothing here
leaves a node.
"""

from __future__ import annotations

from sqlalchemy import Table, and_, func, select, true
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import SQLModel

from node.answers.movement import Month, Question
from node.client_records import ClientRecord
from node.store import Service

__all__ = ["clients_by_month"]


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


_RECORD = _table(ClientRecord).c
_SERVICE = _table(Service).c


def clients_by_month(engine: Engine, *, question: Question) -> dict[tuple[str, str, Month], int]:
    """New clients by (client group, service type, month of start): the finest grain of a spend
    answer, for the release ledger."""
    year = func.extract("year", _RECORD.start_date)
    month = func.extract("month", _RECORD.start_date)
    conditions: list[ColumnElement[bool]] = []
    if question.from_date:
        conditions.append(_RECORD.start_date >= question.from_date)
    if question.to_date:
        conditions.append(_RECORD.start_date <= question.to_date)
    if question.client_groups:
        conditions.append(_SERVICE.client_group.in_(question.client_groups))
    query = (
        select(_SERVICE.client_group, _SERVICE.service_type, year, month, func.count())
        .join(_table(Service), _RECORD.service_id == _SERVICE.id)
        .where(and_(true(), *conditions))
        .group_by(_SERVICE.client_group, _SERVICE.service_type, year, month)
    )
    counts: dict[tuple[str, str, Month], int] = {}
    with engine.connect() as conn:
        for group, stype, y, m, n in conn.execute(query):
            key = (str(int(group)), str(stype), f"{int(y):04d}-{int(m):02d}")
            counts[key] = counts.get(key, 0) + int(n)
    return counts
