"""Raw counts for the equality profile, before any disclosure control: new client records by
client group and each equality field (ethnicity, age band, sex, economic status, referral source,
accommodation before), by month of start; and one cross-tab of two of those fields. `node.release`
protects them; nothing here leaves a node.
"""

from __future__ import annotations

from sqlalchemy import and_, func, select, true
from sqlalchemy.engine import Engine

from node.answers.movement import Month, Question
from node.answers.outcomes import records_table, within
from node.client_records import ClientRecord
from shared.kinds.equality import DIMENSIONS

__all__ = ["cross_tab_counts", "profile_counts"]

_RECORD = records_table(ClientRecord).c


def _conditions(question: Question) -> list[object]:
    conditions: list[object] = [true(), *within(_RECORD.start_date, question)]
    if question.client_groups:
        conditions.append(_RECORD.client_group.in_(question.client_groups))
    return conditions


def profile_counts(engine: Engine, *, question: Question) -> dict[tuple[int, str, str, Month], int]:
    """New client records in the span by (client group, dimension, category, month of start):
    each record counts once in every dimension, so each dimension's categories sum to the records."""
    year = func.extract("year", _RECORD.start_date)
    month = func.extract("month", _RECORD.start_date)
    counts: dict[tuple[int, str, str, Month], int] = {}
    with engine.connect() as conn:
        for dimension in DIMENSIONS:
            column = getattr(_RECORD, dimension)
            query = (
                select(_RECORD.client_group, column, year, month, func.count())
                .where(and_(*_conditions(question)))  # type: ignore[arg-type]
                .group_by(_RECORD.client_group, column, year, month)
            )
            for group, category, y, m, n in conn.execute(query):
                key = (int(group), dimension, str(category), f"{int(y):04d}-{int(m):02d}")
                counts[key] = counts.get(key, 0) + int(n)
    return counts


def cross_tab_counts(engine: Engine, *, question: Question, rows: str, columns: str) -> dict[tuple[int, str, str], int]:
    """New client records in the span by (client group, `rows` category, `columns` category)."""
    first, second = getattr(_RECORD, rows), getattr(_RECORD, columns)
    query = (
        select(_RECORD.client_group, first, second, func.count())
        .where(and_(*_conditions(question)))  # type: ignore[arg-type]
        .group_by(_RECORD.client_group, first, second)
    )
    with engine.connect() as conn:
        return {(int(g), str(a), str(b)): int(n) for g, a, b, n in conn.execute(query)}
