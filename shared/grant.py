"""Grant and spend: each authority's Supporting People grant (signed reference data) beside what
it spends under contract, spend per unit and per 1,000 population by client group, and a
projected grant scenario: which client groups' spend per 1,000 would fall below the CAG's lower
quartile if each authority's grant changed by a percentage and its spend with it.

Worked out from a released joint supply map (whose contract values passed each node's dominance
and p% rules) and the manifest's reference data: no node releases anything new, and anyone holding
the verified bundle gets the same figures. A figure built on a withheld one is withheld, never guessed.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from shared import vocabulary
from shared.errors import InvalidRequest
from shared.kinds.supply import JointSupplyMap
from shared.models import SupplyCell, SupplyMap
from shared.reference import GRANT, ReferenceData

__all__ = ["GrantAnalysis", "GroupSpend", "grant_and_spend", "parse_grant_changes"]

WEEKS = 52


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class AuthoritySpend(_Model):
    authority: str
    name: str
    population: int
    grant: int | None  # the allocation for the year; None: no figure in the reference data
    spend: int | None  # contract values a year; None: withheld by the node's money rules
    spend_share_of_grant: float | None  # percent
    change_percent: float  # the scenario's change to this authority's grant
    projected_grant: int | None


class GroupSpend(_Model):
    """One client group at one authority: spend, units, per unit a week and per 1,000 population,
    now and under the scenario, against the CAG's lower quartile of spend per 1,000."""

    authority: str
    client_group: int
    name: str
    units: int
    spend: int | None
    per_unit_week: float | None
    per_1000: float | None
    projected_per_1000: float | None
    cag_lower_quartile: float | None  # of the authorities' spend per 1,000 now
    below_now: bool
    falls_below: bool  # at or above the lower quartile now, below it under the scenario


class ServiceTypeSpend(_Model):
    service_type: str
    units: int
    spend: int | None  # across the CAG; None when any authority's figure is withheld
    per_unit_week: float | None


class GrantAnalysis(_Model):
    year: int
    authorities: tuple[AuthoritySpend, ...]
    groups: tuple[GroupSpend, ...]
    service_types: tuple[ServiceTypeSpend, ...]
    cag_grant: int | None
    cag_spend: int | None
    no_grant_figure: tuple[str, ...] = ()


def parse_grant_changes(values: Sequence[str], members: Sequence[str]) -> dict[str, float]:
    """`--grant-change` values: "CODE=PCT" for one authority, or a bare "PCT" for every one."""
    changes: dict[str, float] = {}
    for value in values:
        code, sep, pct = value.rpartition("=")
        try:
            percent = float(pct)
        except ValueError:
            usage = "CODE=PERCENT for one authority or PERCENT for all (e.g. -5)"
            raise InvalidRequest(f"--grant-change {value!r}: {usage}") from None
        if not -100 <= percent <= 100:
            raise InvalidRequest(f"--grant-change {value!r}: a percentage from -100 to 100")
        if not sep:
            changes.update(dict.fromkeys(members, percent))
        elif code not in members:
            raise InvalidRequest(f"--grant-change {value!r}: {code} is not an authority that answered")
        else:
            changes[code] = percent
    return changes


def _per(value: int | None, base: int, scale: float) -> float | None:
    return round(value * scale / base, 2) if value is not None and base else None


def _lower_quartile(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    return round(statistics.quantiles(values, n=4, method="inclusive")[0], 2)


def grant_and_spend(
    joint: JointSupplyMap,
    maps: Sequence[SupplyMap],
    reference: ReferenceData,
    *,
    year: int | None = None,
    changes: Mapping[str, float] = {},
) -> GrantAnalysis:
    """The analysis for `year` (default: the latest year every answering authority has a grant for)."""
    codes = [a.authority for a in joint.authorities]
    if year is None:
        year = reference.latest_year(GRANT, codes)
        if year is None:
            raise InvalidRequest("grant: the network's reference data holds no SP grant figures (sp_grant)")
    by_code = {m.authority: m for m in maps}
    authorities = []
    for a in joint.authorities:
        grant = reference.value(a.authority, year, GRANT)
        change = changes.get(a.authority, 0.0)
        authorities.append(
            AuthoritySpend(
                authority=a.authority,
                name=a.name,
                population=a.population,
                grant=grant,
                spend=a.annual_value,
                spend_share_of_grant=round(100 * a.annual_value / grant, 1) if grant and a.annual_value else None,
                change_percent=change,
                projected_grant=round(grant * (1 + change / 100)) if grant is not None else None,
            )
        )
    # Spend per 1,000 by client group, from each node's released client-group totals.
    rows: list[tuple[str, SupplyCell, float | None]] = []
    per_1000: dict[int, list[float]] = {}
    for a in joint.authorities:
        m = by_code.get(a.authority)
        if m is None:
            continue
        for t in m.client_group_totals:
            rate = _per(t.annual_value, a.population, 1000)
            if rate is not None:
                per_1000.setdefault(t.client_group, []).append(rate)
            rows.append((a.authority, t, rate))
    quartiles = {g: _lower_quartile(v) for g, v in per_1000.items()}
    groups = []
    for code, t, rate in rows:
        factor = 1 + changes.get(code, 0.0) / 100
        projected = round(rate * factor, 2) if rate is not None else None
        quartile = quartiles.get(t.client_group)
        below = rate is not None and quartile is not None and rate < quartile
        groups.append(
            GroupSpend(
                authority=code,
                client_group=t.client_group,
                name=vocabulary.CLIENT_GROUPS[t.client_group],
                units=t.units,
                spend=t.annual_value,
                per_unit_week=_per(t.annual_value, t.units * WEEKS, 1),
                per_1000=rate,
                projected_per_1000=projected,
                cag_lower_quartile=quartile,
                below_now=below,
                falls_below=not below and projected is not None and quartile is not None and projected < quartile,
            )
        )
    groups.sort(key=lambda g: (g.client_group, g.authority))
    types: dict[str, list[int | None]] = {}
    units: dict[str, int] = {}
    for m in maps:
        for c in m.cells:
            types.setdefault(c.service_type, []).append(c.annual_value)
            units[c.service_type] = units.get(c.service_type, 0) + c.units
    service_types = []
    for stype, values in sorted(types.items()):
        spend = None if any(v is None for v in values) else sum(v for v in values if v is not None)
        service_types.append(
            ServiceTypeSpend(
                service_type=stype, units=units[stype], spend=spend, per_unit_week=_per(spend, units[stype] * WEEKS, 1)
            )
        )
    grants = [a.grant for a in authorities]
    return GrantAnalysis(
        year=year,
        authorities=tuple(authorities),
        groups=tuple(groups),
        service_types=tuple(service_types),
        cag_grant=None if any(g is None for g in grants) else sum(g for g in grants if g is not None),
        cag_spend=joint.annual_value,
        no_grant_figure=tuple(a.authority for a in authorities if a.grant is None),
    )
