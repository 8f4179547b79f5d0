"""The supply map: the authority's services and units by client group and service type (and district).

A raw aggregate of the store, one GROUP BY over services. Disclosure control is the caller's job:
nothing is suppressed or rounded here, so never release this without passing it through the policy.
"""

from __future__ import annotations

from sqlalchemy import case, func, select
from sqlalchemy.engine import Engine

from node.store import AuthorityRow, DistrictRow, Service
from shared.errors import NotFound
from shared.models import SupplyCell, SupplyMap

__all__ = ["supply_map"]

# Hours are summed as floats, and backends add in different orders: rounding the sum keeps the
# map identical on SQLite and PostgreSQL (hours are entered to a tenth or so).
HOURS_DECIMALS = 2


def supply_map(engine: Engine, *, authority_code: str, by_district: bool) -> SupplyMap:
    """One cell per client group x service type (x district when `by_district`) with any service.

    NotFound when the store does not hold `authority_code`.
    """
    authority = AuthorityRow.__table__  # type: ignore[attr-defined]
    district = DistrictRow.__table__  # type: ignore[attr-defined]
    service = Service.__table__  # type: ignore[attr-defined]
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
    with engine.connect() as conn:
        population = conn.execute(select(authority.c.population).where(authority.c.code == authority_code)).scalar()
        if population is None:
            raise NotFound("no such authority in this store", detail=f"authority {authority_code!r}")
        rows = conn.execute(query).mappings().all()
    cells = [
        SupplyCell(
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
    return SupplyMap(authority=authority_code, population=int(population), by_district=by_district, cells=tuple(cells))
