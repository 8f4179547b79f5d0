"""Combining node supply maps into the joint CAG supply map: per-authority and CAG totals,
units per 1,000 population by client group, and each authority's gap against the CAG rate.

A pure function of the contributions, so anyone holding a bundle can recompute it exactly.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shared import places, vocabulary
from shared.errors import InvalidRequest
from shared.models import SupplyMap

EARLIEST_DAY = date(1990, 1, 1)  # before Supporting People's forerunners: a typo, not a question


def as_at_day(text: str) -> date | None:
    """The day a supply map is asked as at ("YYYY-MM-DD"), or None for none (the node's today);
    InvalidRequest for anything else. The coordinator checks a principal's query with it, and each
    node the request it is sent."""
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise InvalidRequest("as_at: a day in the form YYYY-MM-DD") from None
    if len(text) != 10 or not EARLIEST_DAY <= day <= date(2100, 12, 31):
        raise InvalidRequest("as_at: a day in the form YYYY-MM-DD, from 1990")
    return day


RESULT_VERSION = 2  # 2: a withheld CAG total says why (issue 26)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AuthorityTotals(_Model):
    """One authority's totals as its node released them (None: suppressed by the policy)."""

    authority: str
    name: str
    population: int
    services: int | None
    units: int
    designated_services: int | None
    annual_value: int | None  # pounds a year under contract


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
    """Capacity by service type across the CAG (units are released exactly, so they add up)."""

    service_type: str
    unit_type: str
    units: int
    designated_units: int


class JointSupplyMap(_Model):
    kind: Literal["supply-map"] = "supply-map"
    selected_groups: tuple[int, ...] = ()  # the client-group filter the query applied; empty: every group
    population: int
    # A CAG total of released figures; None when any authority's figure was suppressed, since
    # a total over the others would understate it (the reason is in `withheld`).
    services: int | None
    units: int
    designated_services: int | None
    annual_value: int | None
    authorities: tuple[AuthorityTotals, ...]
    client_groups: tuple[GroupRow, ...]
    service_types: tuple[ServiceTypeRow, ...]
    # Each withheld CAG total and why: {"services": "suppressed at E06000035"}. Units, rates and
    # gaps are built from capacity, which is released exactly, so they are always whole.
    withheld: dict[str, str] = {}
    result_version: int = 1  # absent from bundles made before version 2: read as 1


def _rate(units: int, population: int) -> float:
    return round(units * 1000 / population, 3) if population else 0.0


def _sum(values: Sequence[int | None]) -> int | None:
    if any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)


def _withheld(totals: Sequence[AuthorityTotals]) -> dict[str, str]:
    withheld = {}
    for name in ("services", "designated_services", "annual_value"):
        short = [t.authority for t in totals if getattr(t, name) is None]
        if short:
            withheld[name] = f"suppressed at {', '.join(short)}"
    return withheld


def combine_supply_maps(
    maps: Sequence[SupplyMap], *, client_groups: Sequence[int] = (), version: int = RESULT_VERSION
) -> JointSupplyMap:
    """The joint supply map. `version` 1 (bundles made before issue 26) did not say why a CAG
    total was withheld; the figures are the same."""
    maps = sorted(maps, key=lambda m: m.authority)
    population = sum(m.population for m in maps)
    group_units: dict[int, dict[str, int]] = defaultdict(lambda: {m.authority: 0 for m in maps})
    type_rows: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    type_unit: dict[str, str] = {}
    totals = []
    for m in maps:
        for c in m.cells:
            group_units[c.client_group][m.authority] += c.units
            row = type_rows[c.service_type]
            row[0] += c.units
            row[1] += c.designated_units
            type_unit[c.service_type] = c.unit_type
        totals.append(
            AuthorityTotals(
                authority=m.authority,
                name=_authority_name(m.authority),
                population=m.population,
                services=m.total.services,
                units=m.total.units,
                designated_services=m.total.designated_services,
                annual_value=m.total.annual_value,
            )
        )
    groups = []
    pops = {m.authority: m.population for m in maps}
    for group in sorted(group_units):
        units = group_units[group]
        cag_units = sum(units.values())
        groups.append(
            GroupRow(
                client_group=group,
                name=vocabulary.CLIENT_GROUPS[group],
                cag_units=cag_units,
                cag_rate=_rate(cag_units, population),
                units=dict(units),
                rates={a: _rate(u, pops[a]) for a, u in units.items()},
                shortfall={
                    a: round(cag_units * pops[a] / population - u) if population else 0 for a, u in units.items()
                },
            )
        )
    return JointSupplyMap(
        selected_groups=tuple(sorted(set(client_groups))),
        population=population,
        services=_sum([t.services for t in totals]),
        units=sum(t.units for t in totals),
        designated_services=_sum([t.designated_services for t in totals]),
        annual_value=_sum([t.annual_value for t in totals]),
        authorities=tuple(totals),
        client_groups=tuple(groups),
        service_types=tuple(
            ServiceTypeRow(service_type=t, unit_type=type_unit[t], units=r[0], designated_units=r[1])
            for t, r in sorted(type_rows.items())
        ),
        withheld=_withheld(totals) if version > 1 else {},
        result_version=version,
    )


def _authority_name(code: str) -> str:
    try:
        return places.place_name(code)
    except KeyError:
        return code
