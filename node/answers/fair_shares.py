"""Raw figures for designated services and fair shares: the designated services an authority
hosts (what they are and their capacity) and each one's new clients by origin and month, an origin
being a member authority by its code, "outside" for anywhere else known, or "unknown". True counts
for `node.release` to put through the ledger and the bands; nothing here leaves a node.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Table, and_, func, or_, select, true
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import SQLModel

from node.answers.movement import Month, Question, origin_class, origin_of
from node.client_records import ClientRecord
from node.store import Provider, Service
from shared.authorities import Register

__all__ = ["HostedService", "designated_intake_by_month", "designated_services"]


def _table(model: type[SQLModel]) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


_RECORD = _table(ClientRecord).c
_SERVICE = _table(Service).c
_PROVIDER = _table(Provider).c


@dataclass(frozen=True)
class HostedService:
    """A designated service as the store holds it."""

    service_ref: str
    provider: str
    name: str
    service_type: str
    client_group: int
    district: str
    units: int
    unit_type: str


def _running(question: Question) -> list[ColumnElement[bool]]:
    """Services running at some time in the question's period (a service without dates always runs)."""
    conditions: list[ColumnElement[bool]] = []
    if question.to_date:
        conditions.append(or_(_SERVICE.start_date.is_(None), _SERVICE.start_date <= question.to_date))
    if question.from_date:
        conditions.append(or_(_SERVICE.end_date.is_(None), _SERVICE.end_date >= question.from_date))
    return conditions


def designated_services(engine: Engine, *, question: Question) -> list[HostedService]:
    """The designated services running in the period (of the question's client groups), by reference."""
    conditions: list[ColumnElement[bool]] = [_SERVICE.designated.is_(True), *_running(question)]
    if question.client_groups:
        conditions.append(_SERVICE.client_group.in_(question.client_groups))
    query = (
        select(
            _SERVICE.service_ref,
            _PROVIDER.name,
            _SERVICE.name,
            _SERVICE.service_type,
            _SERVICE.client_group,
            _SERVICE.district_code,
            _SERVICE.units,
            _SERVICE.unit_type,
        )
        .join(_table(Provider), _SERVICE.provider_id == _PROVIDER.id)
        .where(and_(true(), *conditions))
        .order_by(_SERVICE.service_ref)
    )
    with engine.connect() as conn:
        return [
            HostedService(str(ref), provider, name, stype, int(group), district, int(units), unit_type)
            for ref, provider, name, stype, group, district, units, unit_type in conn.execute(query)
        ]


def designated_intake_by_month(
    engine: Engine,
    *,
    question: Question,
    members: frozenset[str],
    register: Register | None = None,
) -> dict[tuple[str, str, str, Month], int]:
    """Each designated service's new clients by (client group, service, origin, month of start):
    the finest grain of a fair shares answer, for the release ledger."""
    year = func.extract("year", _RECORD.start_date)
    month = func.extract("month", _RECORD.start_date)
    conditions: list[ColumnElement[bool]] = [_SERVICE.designated.is_(True)]
    if question.from_date:
        conditions.append(_RECORD.start_date >= question.from_date)
    if question.to_date:
        conditions.append(_RECORD.start_date <= question.to_date)
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
            origin = origin_class(origin_of(previous, members, register), members)
            key = (str(int(group)), str(ref), origin, f"{int(y):04d}-{int(m):02d}")
            counts[key] = counts.get(key, 0) + int(n)
    return counts
