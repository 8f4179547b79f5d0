"""Combining node supply maps into the joint CAG supply map: per-authority and CAG totals,
units per 1,000 population by client group, and each authority's gap against the CAG rate.

A pure function of the contributions, so anyone holding a bundle can recompute it exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from shared import vocabulary
from shared.models import SupplyMap


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AuthorityTotals(_Model):
    authority: str
    name: str
    population: int
    services: int
    units: int
    designated_services: int


class GroupRow(_Model):
    """One client group across the CAG: units and rate at each authority, and each one's gap."""

    client_group: int
    name: str
    cag_units: int
    cag_rate: float  # units per 1,000 population across the authorities that answered
    units: dict[str, int]
    rates: dict[str, float]
    # Units the authority would need to add (positive) to reach the CAG rate.
    shortfall: dict[str, int]


class ServiceTypeRow(_Model):
    service_type: str
    unit_type: str
    services: int
    units: int
    designated_services: int


class JointSupplyMap(_Model):
    kind: str = "supply-map"
    population: int
    services: int
    units: int
    designated_services: int
    authorities: tuple[AuthorityTotals, ...]
    client_groups: tuple[GroupRow, ...]
    service_types: tuple[ServiceTypeRow, ...]


def _rate(units: int, population: int) -> float:
    return round(units * 1000 / population, 3) if population else 0.0


def combine_supply_maps(maps: Sequence[SupplyMap]) -> JointSupplyMap:
    maps = sorted(maps, key=lambda m: m.authority)
    population = sum(m.population for m in maps)
    group_units: dict[int, dict[str, int]] = defaultdict(lambda: {m.authority: 0 for m in maps})
    type_rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    type_unit: dict[str, str] = {}
    totals = []
    for m in maps:
        for c in m.cells:
            group_units[c.client_group][m.authority] += c.units
            row = type_rows[c.service_type]
            row[0] += c.services
            row[1] += c.units
            row[2] += c.designated_services
            type_unit[c.service_type] = c.unit_type
        totals.append(
            AuthorityTotals(
                authority=m.authority,
                name=vocabulary.AUTHORITIES[m.authority].name if m.authority in vocabulary.AUTHORITIES else m.authority,
                population=m.population,
                services=sum(c.services for c in m.cells),
                units=sum(c.units for c in m.cells),
                designated_services=sum(c.designated_services for c in m.cells),
            )
        )
    groups = []
    for group in sorted(group_units):
        units = group_units[group]
        cag_units = sum(units.values())
        cag_rate = _rate(cag_units, population)
        pops = {m.authority: m.population for m in maps}
        groups.append(
            GroupRow(
                client_group=group,
                name=vocabulary.CLIENT_GROUPS[group],
                cag_units=cag_units,
                cag_rate=cag_rate,
                units=dict(units),
                rates={a: _rate(u, pops[a]) for a, u in units.items()},
                shortfall={
                    a: round(cag_units * pops[a] / population - u) if population else 0 for a, u in units.items()
                },
            )
        )
    return JointSupplyMap(
        population=population,
        services=sum(t.services for t in totals),
        units=sum(t.units for t in totals),
        designated_services=sum(t.designated_services for t in totals),
        authorities=tuple(totals),
        client_groups=tuple(groups),
        service_types=tuple(
            ServiceTypeRow(service_type=t, unit_type=type_unit[t], services=r[0], units=r[1], designated_services=r[2])
            for t, r in sorted(type_rows.items())
        ),
    )
