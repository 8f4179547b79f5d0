"""The raw supply map: the authority's services, units and contract money by client group and
service type (and district), straight from the store.

Nothing here is suppressed or rounded: these are the true figures that `node.release` passes
through the disclosure-control layer. Never send a `RawSupply` anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

from sqlalchemy import Table, case, func, select
from sqlalchemy.engine import Engine

from node.store import AuthorityRow, Contract, DistrictRow, Provider, Service
from shared.errors import NotFound

__all__ = ["CellKey", "RawCell", "RawSupply", "contract_values", "supply_map"]

# Hours are summed as floats, and backends add in different orders: rounding the sum keeps the
# map identical on SQLite and PostgreSQL (hours are entered to a tenth or so).
HOURS_DECIMALS = 2

# (client group, service type, district); district is "" when not split by district.
CellKey = tuple[int, str, str]


@dataclass(frozen=True)
class RawCell:
    """True figures for one client group x service type (x district)."""

    client_group: int
    service_type: str
    district: str
    unit_type: str
    services: int
    units: int
    designated_services: int = 0
    designated_units: int = 0
    contracted_hours: float = 0.0

    @property
    def key(self) -> CellKey:
        return (self.client_group, self.service_type, self.district)


@dataclass(frozen=True)
class RawSupply:
    authority: str
    population: int
    by_district: bool
    cells: tuple[RawCell, ...] = ()


def _tables() -> tuple[Table, Table, Table, Table, Table]:
    rows: tuple[Any, ...] = (AuthorityRow, DistrictRow, Service, Contract, Provider)
    return tuple(cast(Table, row.__table__) for row in rows)  # type: ignore[return-value]


def supply_map(
    engine: Engine, *, authority_code: str, by_district: bool, client_groups: Sequence[int] = ()
) -> RawSupply:
    """One cell per client group x service type (x district when `by_district`) with any service,
    for the given client groups (all when empty). NotFound when the store does not hold
    `authority_code`."""
    authority, district, service, _, _ = _tables()
    keys = [service.c.client_group, service.c.service_type, service.c.unit_type]
    if by_district:
        keys.append(service.c.district_code)
    query = (
        select(
            *keys,
            func.count().label("services"),
            func.sum(service.c.units).label("units"),
            func.sum(case((service.c.designated, 1), else_=0)).label("designated_services"),
            func.sum(case((service.c.designated, service.c.units), else_=0)).label("designated_units"),
            func.sum(func.coalesce(service.c.contracted_hours, 0.0)).label("contracted_hours"),
        )
        .join(district, district.c.code == service.c.district_code)
        .where(district.c.authority_code == authority_code)
        .group_by(*keys)
    )
    if client_groups:
        query = query.where(service.c.client_group.in_(sorted(set(client_groups))))
    with engine.connect() as conn:
        population = conn.execute(select(authority.c.population).where(authority.c.code == authority_code)).scalar()
        if population is None:
            raise NotFound("no such authority in this store", detail=f"authority {authority_code!r}")
        rows = conn.execute(query).mappings().all()
    cells = [
        RawCell(
            client_group=row["client_group"],
            service_type=row["service_type"],
            district=row["district_code"] if by_district else "",
            unit_type=row["unit_type"],
            services=row["services"],
            units=int(row["units"]),
            designated_services=int(row["designated_services"]),
            designated_units=int(row["designated_units"]),
            contracted_hours=round(float(row["contracted_hours"]), HOURS_DECIMALS),
        )
        for row in rows
    ]
    # Sorted here rather than by ORDER BY: PostgreSQL's collation would order hyphenated names
    # differently from SQLite's byte order.
    cells.sort(key=lambda c: (c.client_group, c.service_type, c.district, c.unit_type))
    return RawSupply(authority=authority_code, population=int(population), by_district=by_district, cells=tuple(cells))


def contract_values(
    engine: Engine, *, authority_code: str, by_district: bool, client_groups: Sequence[int] = ()
) -> dict[CellKey, dict[str, float]]:
    """Annual contract value in pounds by cell and provider: each service's latest contract
    (by start date), summed per provider, so that the money rules can see who dominates a cell."""
    _, district, service, contract, provider = _tables()
    query = (
        select(
            service.c.id,
            service.c.client_group,
            service.c.service_type,
            service.c.district_code,
            provider.c.provider_ref,
            contract.c.start_date,
            contract.c.contract_ref,
            contract.c.annual_value,
        )
        .join(district, district.c.code == service.c.district_code)
        .join(provider, provider.c.id == service.c.provider_id)
        .join(contract, contract.c.service_id == service.c.id)
        .where(district.c.authority_code == authority_code)
    )
    if client_groups:
        query = query.where(service.c.client_group.in_(sorted(set(client_groups))))
    latest: dict[int, tuple[date, str, CellKey, str, float]] = {}
    with engine.connect() as conn:
        for row in conn.execute(query):
            sid, group, service_type, district_code, provider_ref, start, ref, value = row
            key: CellKey = (group, service_type, district_code if by_district else "")
            # The latest contract wins; the reference breaks a tie so both backends agree.
            candidate = (start, ref, key, provider_ref, float(value))
            if sid not in latest or (start, ref) > latest[sid][:2]:
                latest[sid] = candidate
    values: dict[CellKey, dict[str, float]] = {}
    for _, _, key, provider_ref, value in latest.values():
        by_provider = values.setdefault(key, {})
        by_provider[provider_ref] = by_provider.get(provider_ref, 0.0) + value
    return values
