"""How recent a node's records are: the month its client records run to and when its records were
last imported, stated in every answer it signs so that a joint result can say per authority what
its figures run to.
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import func
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Engine

from node.client_records import ClientRecord, Outcome
from node.store import Contract, Provider, Service
from shared.pb.cagnet.v1 import node_pb2

__all__ = ["records_currency"]


def _currency_query() -> Any:
    # One statement, one row: each max reads an index (start_date leads the movement index).
    dates = [func.max(ClientRecord.start_date), func.max(Outcome.end_date)]
    written = [
        func.max(row.__table__.c.updated_at)  # type: ignore[union-attr]
        for row in (Provider, Service, Contract, ClientRecord, Outcome)
    ]
    return sa_select(*(sa_select(column).scalar_subquery() for column in (*dates, *written)))


_CURRENCY = _currency_query()


def _as_date(value: object) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _as_instant(value: object) -> datetime | None:
    if value is None:
        return None
    instant = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return instant.replace(tzinfo=UTC) if instant.tzinfo is None else instant.astimezone(UTC)


def month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


def records_currency(engine: Engine) -> node_pb2.RecordsCurrency:
    """The last day of the latest month with a client record starting or an outcome ending (a
    month, never one client's own date), and when any record was last written."""
    with engine.connect() as conn:
        row = conn.execute(_CURRENCY).one()
    days = [d for d in (_as_date(v) for v in row[:2]) if d is not None]
    instants = [t for t in (_as_instant(v) for v in row[2:]) if t is not None]
    return node_pb2.RecordsCurrency(
        records_to=month_end(max(days)).isoformat() if days else "",
        last_import=max(instants).strftime("%Y-%m-%dT%H:%M:%SZ") if instants else "",
    )
