"""Need beside supply: units per 1,000 of a need indicator beside units per 1,000 population, and
each authority's gap against the CAG rate on both. Worked out from a released joint supply map and
the network's signed reference data (shared.reference), so it needs no new release from any node:
anyone holding the verified bundle and the manifest gets the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from shared.errors import InvalidRequest
from shared.kinds.supply import JointSupplyMap
from shared.reference import INDICATORS, ReferenceData

__all__ = ["NeedComparison", "NeedRow", "need_beside_supply"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NeedRow(_Model):
    """One authority: its units in the client groups compared, its population and need, both rates
    and the units it would add (positive) or has above (negative) the CAG rate on each."""

    authority: str
    name: str
    units: int
    population: int
    need: int | None  # None: the reference data has no figure for this authority and year
    per_1000_population: float
    per_1000_need: float | None
    gap_population: int
    gap_need: int | None


class NeedComparison(_Model):
    indicator: str
    label: str
    unit: str
    year: int
    client_groups: tuple[int, ...]
    rows: tuple[NeedRow, ...]
    cag_units: int
    cag_population: int
    cag_need: int  # over the authorities with a figure
    cag_per_1000_population: float
    cag_per_1000_need: float | None
    # Authorities without a need figure for the year: left out of the CAG need rate, never guessed.
    no_figure: tuple[str, ...] = ()


def _rate(units: int, base: int) -> float:
    return round(units * 1000 / base, 3) if base else 0.0


def need_beside_supply(
    joint: JointSupplyMap,
    reference: ReferenceData,
    indicator: str,
    *,
    year: int | None = None,
    client_groups: Sequence[int] = (),
) -> NeedComparison:
    """The comparison for `indicator` in `year` (default: the latest year every answering authority
    has), over `client_groups` (default: the groups the indicator is read against, or the map's
    filter when it has one). InvalidRequest names what is missing."""
    meta = INDICATORS.get(indicator)
    if meta is None or not meta.need:
        names = ", ".join(n for n, i in INDICATORS.items() if i.need)
        raise InvalidRequest(f"need indicator {indicator!r}: one of {names}")
    codes = [a.authority for a in joint.authorities]
    if year is None:
        year = reference.latest_year(indicator, codes)
        if year is None:
            raise InvalidRequest(f"need indicator {indicator}: the network's reference data holds no figures for it")
    groups = tuple(sorted(set(client_groups) or set(joint.selected_groups) or set(meta.client_groups)))
    units = {code: 0 for code in codes}
    for row in joint.client_groups:
        if row.client_group in groups:
            for code, n in row.units.items():
                units[code] += n
    cag_units = sum(units.values())
    cag_population = joint.population
    needs = {code: reference.value(code, year, indicator) for code in codes}
    with_need = [c for c in codes if needs[c]]
    cag_need = sum(needs[c] or 0 for c in with_need)
    units_with_need = sum(units[c] for c in with_need)
    cag_need_rate = _rate(units_with_need, cag_need) if cag_need else None
    rows = []
    for a in joint.authorities:
        code, need = a.authority, needs[a.authority]
        gap_population = round(cag_units * a.population / cag_population - units[code]) if cag_population else 0
        gap_need = round(units_with_need * need / cag_need - units[code]) if need and cag_need else None
        rows.append(
            NeedRow(
                authority=code,
                name=a.name,
                units=units[code],
                population=a.population,
                need=need,
                per_1000_population=_rate(units[code], a.population),
                per_1000_need=_rate(units[code], need) if need else None,
                gap_population=gap_population,
                gap_need=gap_need,
            )
        )
    return NeedComparison(
        indicator=indicator,
        label=meta.label,
        unit=meta.unit,
        year=year,
        client_groups=groups,
        rows=tuple(rows),
        cag_units=cag_units,
        cag_population=cag_population,
        cag_need=cag_need,
        cag_per_1000_population=_rate(cag_units, cag_population),
        cag_per_1000_need=cag_need_rate,
        no_figure=tuple(c for c in codes if not needs[c]),
    )
