"""Quarterly returns a node keeps per service: the KPI 1 return of a long-term service and the
occupancy return of any service. They are per-service counts, not records about people, and they
leave the node only as protected tables (`node.release`).

    kpi1_return       id PK, service_id -> service, quarter_start (1 April, 1 July, 1 October or
                      1 January), service_users, maintaining (<= service_users): service users
                      supported to establish and maintain independent living in the quarter
    occupancy_return  id PK, service_id -> service, quarter_start, units_occupied and voids at the
                      quarter's end (together at most the service's units), waiting_list (people
                      waiting at the quarter's end), referrals_refused (in the quarter)

One return per service and quarter (a re-import replaces it: a revised return).
"""

from __future__ import annotations

import re
from datetime import date, datetime

from sqlalchemy import CheckConstraint, UniqueConstraint
from sqlmodel import Field, SQLModel

from node.columns import UtcDateTime, utcnow

__all__ = ["QUARTER_STARTS", "Kpi1Return", "OccupancyReturn", "parse_quarter", "quarter_label", "quarter_of"]

QUARTER_STARTS = (4, 7, 10, 1)  # the months an SP financial year's quarters start in, Q1 first

# "2009-10 Q1", "2009/10 Q1", "Q1 2009-10", "2009-10 q1"; a financial year is April to March.
_YEAR_FIRST = re.compile(r"(\d{4})\s*[-/]\s*(\d{2}|\d{4})\s*Q([1-4])", re.IGNORECASE)
_QUARTER_FIRST = re.compile(r"Q([1-4])\s*(\d{4})\s*[-/]\s*(\d{2}|\d{4})", re.IGNORECASE)


class Kpi1Return(SQLModel, table=True):
    """A long-term service's KPI 1 return for one quarter."""

    __tablename__ = "kpi1_return"
    __table_args__ = (
        UniqueConstraint("service_id", "quarter_start", name="uq_kpi1_return_quarter"),
        CheckConstraint("service_users >= 0", name="ck_kpi1_return_users"),
        CheckConstraint("maintaining >= 0 AND maintaining <= service_users", name="ck_kpi1_return_maintaining"),
    )

    id: int | None = Field(default=None, primary_key=True)
    service_id: int = Field(foreign_key="service.id", index=True)
    quarter_start: date = Field(index=True)
    service_users: int
    maintaining: int
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


class OccupancyReturn(SQLModel, table=True):
    """A service's occupancy return for one quarter."""

    __tablename__ = "occupancy_return"
    __table_args__ = (
        UniqueConstraint("service_id", "quarter_start", name="uq_occupancy_return_quarter"),
        CheckConstraint(
            "units_occupied >= 0 AND voids >= 0 AND waiting_list >= 0 AND referrals_refused >= 0",
            name="ck_occupancy_return_counts",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    service_id: int = Field(foreign_key="service.id", index=True)
    quarter_start: date = Field(index=True)
    units_occupied: int
    voids: int
    waiting_list: int
    referrals_refused: int
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime, nullable=False)


def parse_quarter(text: str) -> date:
    """The first day of a financial-year quarter written "2009-10 Q1" (also "2009/10 Q1" and
    "Q1 2009-10"); ValueError saying how to write it otherwise."""
    value = text.strip()
    found = _YEAR_FIRST.fullmatch(value)
    if found is not None:
        first, second, number = found.group(1), found.group(2), found.group(3)
    else:
        found = _QUARTER_FIRST.fullmatch(value)
        if found is None:
            raise ValueError(
                f"not a quarter: {value[:40]!r}; write it as the financial year and quarter, e.g. 2009-10 Q1"
            )
        number, first, second = found.group(1), found.group(2), found.group(3)
    year = int(first)
    if int(second[-2:]) != (year + 1) % 100:
        raise ValueError(
            f"{value[:40]!r}: a financial year runs April to March of the next year, e.g. {year}-{(year + 1) % 100:02d}"
        )
    if not 1990 <= year <= 2100:
        raise ValueError(f"year {year} is out of range (1990 to 2100): {value[:40]!r}")
    month = QUARTER_STARTS[int(number) - 1]
    return date(year + 1 if month == 1 else year, month, 1)


def quarter_label(start: date) -> str:
    """ "2009-10 Q1" for the quarter that starts on `start`."""
    first = start.year if start.month >= 4 else start.year - 1
    return f"{first}-{(first + 1) % 100:02d} Q{QUARTER_STARTS.index(start.month) + 1}"


def quarter_of(day: date) -> date:
    """The first day of the quarter `day` falls in."""
    month = {1: 1, 2: 1, 3: 1, 4: 4, 5: 4, 6: 4, 7: 7, 8: 7, 9: 7, 10: 10, 11: 10, 12: 10}[day.month]
    return date(day.year, month, 1)


def quarter_end(start: date) -> date:
    """The last day of the quarter that starts on `start`."""
    if start.month == 10:
        return date(start.year, 12, 31)
    return date.fromordinal(date(start.year, start.month + 3, 1).toordinal() - 1)
