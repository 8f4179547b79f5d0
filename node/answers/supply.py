"""The raw supply map: the authority's services, units and contract money by client group and
service type (and district), straight from the store, as the services stood on a given day
(their start and end dates, and the versions a re-import replaced: node.store.ServiceHistory).

Nothing here is suppressed or rounded: these are the true figures that `node.release` passes
through the disclosure-control layer. Never send a `RawSupply` anywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, cast

from sqlalchemy import Table, select
from sqlalchemy.engine import Connection, Engine

from node.store import AuthorityRow, Contract, DistrictRow, Provider, Service, ServiceHistory
from shared.errors import NotFound

__all__ = ["CellKey", "RawCell", "RawSupply", "contract_values", "services_as_at", "supply_map"]

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


@dataclass(frozen=True)
class _Version:
    """A service as it stood on the day asked."""

    provider_ref: str
    district_code: str
    service_type: str
    client_group: int
    units: int
    unit_type: str
    contracted_hours: float | None
    designated: bool
    start_date: date | None
    end_date: date | None


def services_as_at(conn: Connection, *, authority_code: str, as_at: date) -> dict[int, _Version]:
    """Every service of the authority running on `as_at` (by its start and end dates), as it stood
    that day: its version from service_history when a re-import has replaced it since (the
    earliest version still in force that day), else the service row."""
    _, district, service, _, provider = _tables()
    history = cast(Table, ServiceHistory.__table__)  # type: ignore[attr-defined]
    fields = ("district_code", "service_type", "client_group", "units", "unit_type", "contracted_hours", "designated")
    life = select(service.c.id, service.c.start_date, service.c.end_date).where(
        (service.c.start_date.is_(None) | (service.c.start_date <= as_at))
        & (service.c.end_date.is_(None) | (service.c.end_date >= as_at))
    )
    lives = {sid: (start, end) for sid, start, end in conn.execute(life)}
    versions: dict[int, tuple[Any, ...]] = {}
    current = select(service.c.id, service.c.provider_id, *(service.c[f] for f in fields))
    for row in conn.execute(current):
        if row[0] in lives:
            versions[row[0]] = tuple(row[1:])
    past = (
        select(history.c.service_id, history.c.provider_id, *(history.c[f] for f in fields))
        .where(history.c.valid_until >= as_at)
        .order_by(history.c.service_id, history.c.valid_until.desc(), history.c.id.desc())
    )
    for row in conn.execute(past):  # the earliest version still in force on the day comes last, and wins
        if row[0] in lives:
            versions[row[0]] = tuple(row[1:])
    providers = dict(conn.execute(select(provider.c.id, provider.c.provider_ref)).all())
    ours = set(conn.execute(select(district.c.code).where(district.c.authority_code == authority_code)).scalars())
    found = {}
    for sid, (provider_id, district_code, service_type, group, units, unit_type, hours, designated) in versions.items():
        if district_code in ours:
            start, end = lives[sid]
            found[sid] = _Version(
                provider_ref=providers[provider_id],
                district_code=district_code,
                service_type=service_type,
                client_group=group,
                units=units,
                unit_type=unit_type,
                contracted_hours=hours,
                designated=designated,
                start_date=start,
                end_date=end,
            )
    return found


def supply_map(
    engine: Engine,
    *,
    authority_code: str,
    by_district: bool,
    client_groups: Sequence[int] = (),
    as_at: date | None = None,
) -> RawSupply:
    """One cell per client group x service type (x district when `by_district`) with any service,
    for the given client groups (all when empty), as the services stood on `as_at` (default
    today). NotFound when the store does not hold `authority_code`."""
    authority = _tables()[0]
    day = as_at or date.today()
    wanted = set(client_groups)
    with engine.connect() as conn:
        population = conn.execute(select(authority.c.population).where(authority.c.code == authority_code)).scalar()
        if population is None:
            raise NotFound("no such authority in this store", detail=f"authority {authority_code!r}")
        versions = services_as_at(conn, authority_code=authority_code, as_at=day)
    sums: dict[tuple[int, str, str, str], list[float]] = {}
    for v in versions.values():
        if wanted and v.client_group not in wanted:
            continue
        key = (v.client_group, v.service_type, v.district_code if by_district else "", v.unit_type)
        total = sums.setdefault(key, [0, 0, 0, 0, 0.0])
        total[0] += 1
        total[1] += v.units
        total[2] += 1 if v.designated else 0
        total[3] += v.units if v.designated else 0
        total[4] += v.contracted_hours or 0.0
    cells = [
        RawCell(
            client_group=group,
            service_type=service_type,
            district=district,
            unit_type=unit_type,
            services=int(total[0]),
            units=int(total[1]),
            designated_services=int(total[2]),
            designated_units=int(total[3]),
            contracted_hours=round(float(total[4]), HOURS_DECIMALS),
        )
        for (group, service_type, district, unit_type), total in sums.items()
    ]
    # Sorted here rather than by ORDER BY: PostgreSQL's collation would order hyphenated names
    # differently from SQLite's byte order.
    cells.sort(key=lambda c: (c.client_group, c.service_type, c.district, c.unit_type))
    return RawSupply(authority=authority_code, population=int(population), by_district=by_district, cells=tuple(cells))


def contract_values(
    engine: Engine,
    *,
    authority_code: str,
    by_district: bool,
    client_groups: Sequence[int] = (),
    as_at: date | None = None,
) -> dict[CellKey, dict[str, float]]:
    """Annual contract value in pounds by cell and provider: for each service running on `as_at`
    (default today), its latest contract to have started by then (by start date), summed per
    provider, so that the money rules can see who dominates a cell."""
    _, _, _, contract, _ = _tables()
    day = as_at or date.today()
    wanted = set(client_groups)
    query = select(
        contract.c.service_id, contract.c.start_date, contract.c.contract_ref, contract.c.annual_value
    ).where(contract.c.start_date <= day)
    latest: dict[int, tuple[date, str, float]] = {}
    with engine.connect() as conn:
        versions = services_as_at(conn, authority_code=authority_code, as_at=day)
        for sid, start, ref, value in conn.execute(query):
            # The latest contract wins; the reference breaks a tie so both backends agree.
            if sid in versions and (sid not in latest or (start, ref) > latest[sid][:2]):
                latest[sid] = (start, ref, float(value))
    values: dict[CellKey, dict[str, float]] = {}
    for sid, (_, _, value) in latest.items():
        v = versions[sid]
        if wanted and v.client_group not in wanted:
            continue
        key: CellKey = (v.client_group, v.service_type, v.district_code if by_district else "")
        by_provider = values.setdefault(key, {})
        by_provider[v.provider_ref] = by_provider.get(v.provider_ref, 0.0) + value
    return values
