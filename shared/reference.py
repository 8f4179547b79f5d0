"""Reference data the network agrees on beside its authority register: need indicators (statutory
homelessness acceptances, people in priority need, domestic abuse incidents, probation caseload,
rough sleepers, people in drug treatment) and each authority's Supporting People grant, per year.

They are public or near-public aggregates per authority, not records: the manifest carries them as
the exact text of a CSV (`authority,year,indicator,value`), signed with it and changed like the
register (`set-reference`: the operator while founding, a member's proposal and a quorum once
governed). Every figure a need or grant analysis divides by comes from here.

Beside them, a network may carry its members' residents by an equality field, for the equality
profile's population column: indicator `population:<field>:<category>` (e.g.
`population:age_band:18-24`, `population:sex:female`, `population:ethnicity:A1`), a count of
residents, from a source the proposal cites (a census table). An authority's population share in a
category is its count there over its counts in every category of the field that year.
"""

from __future__ import annotations

import csv
import functools
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shared.errors import InvalidRequest
from shared.vocabulary import GSS_UPPER_TIER

if TYPE_CHECKING:
    from shared.authorities import Register
    from shared.manifest_document import Manifest

__all__ = [
    "COLUMNS",
    "GRANT",
    "INDICATORS",
    "POPULATION",
    "Indicator",
    "ReferenceData",
    "ReferenceError",
    "indicator_of",
    "parse_reference",
    "population_share",
    "reference_of",
    "reference_text_check",
]

COLUMNS = ("authority", "year", "indicator", "value")
GRANT = "sp_grant"
_FIRST_YEAR, _LAST_YEAR = 1990, 2100


@dataclass(frozen=True)
class Indicator:
    """What a row's figure means: a count of people or households a year (need), or pounds (grant)."""

    name: str
    label: str
    unit: str  # "people", "households", "incidents" or "£"
    client_groups: tuple[int, ...]  # the SP client groups whose supply it is read against
    need: bool = True  # False: money (the grant), not a measure of need


# The indicators a row may name. Names are signed into the manifest's text: never renamed.
INDICATORS: dict[str, Indicator] = {
    i.name: i
    for i in (
        Indicator("homelessness_acceptances", "statutory homelessness acceptances", "households", (7, 12, 16, 18)),
        Indicator("priority_need", "households in priority need", "households", (7, 12, 13, 16, 18)),
        Indicator("dv_incidents", "domestic abuse incidents reported to police", "incidents", (14,)),
        Indicator("probation_caseload", "probation caseload", "people", (10, 11)),
        Indicator("rough_sleepers", "rough sleepers counted", "people", (7, 19)),
        Indicator("drug_treatment", "people in drug treatment", "people", (8, 9)),
        Indicator(GRANT, "Supporting People grant allocation", "£", (), need=False),
    )
}

POPULATION = "population"  # the family of indicators `population:<field>:<category>`
# The client record's equality fields a population figure may be given for (shared.kinds.equality).
_POPULATION_FIELDS = ("ethnicity", "age_band", "sex", "economic_status")
_CATEGORY = re.compile(r"[A-Za-z0-9][A-Za-z0-9+_-]{0,39}")


def indicator_of(name: str) -> Indicator | None:
    """What an indicator name means: one of INDICATORS, or residents in one category of an
    equality field (`population:age_band:18-24`); None for any other name."""
    known = INDICATORS.get(name)
    if known is not None:
        return known
    family, _, rest = name.partition(":")
    field, _, category = rest.partition(":")
    if family != POPULATION or field not in _POPULATION_FIELDS or not _CATEGORY.fullmatch(category):
        return None
    return Indicator(name, f"residents, {field.replace('_', ' ')} {category}", "people", (), need=False)


Key = tuple[str, int, str]  # (authority, year, indicator)


class ReferenceError(InvalidRequest):
    """Reference data that cannot be used, naming the file, row and column."""


@dataclass(frozen=True)
class ReferenceData:
    """Figures by (authority, year, indicator), in that order."""

    values: Mapping[Key, int]

    def __len__(self) -> int:
        return len(self.values)

    def value(self, authority: str, year: int, indicator: str) -> int | None:
        return self.values.get((authority, year, indicator))

    def years(self, indicator: str) -> tuple[int, ...]:
        return tuple(sorted({y for _a, y, i in self.values if i == indicator}))

    def indicators(self) -> tuple[str, ...]:
        return tuple(sorted({i for _a, _y, i in self.values}))

    def latest_year(self, indicator: str, authorities: Iterable[str]) -> int | None:
        """The latest year for which every one of `authorities` has the figure (else the latest any has)."""
        wanted = set(authorities)
        years = self.years(indicator)
        for year in reversed(years):
            if all((a, year, indicator) in self.values for a in wanted):
                return year
        return years[-1] if years else None

    def to_csv(self) -> str:
        """The canonical text: what the manifest carries and `parse_reference` reads."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        for (authority, year, indicator), value in sorted(self.values.items()):
            writer.writerow([authority, year, indicator, value])
        return out.getvalue()

    def merged(self, rows: ReferenceData) -> ReferenceData:
        """These figures with `rows` added, or replacing the same authority, year and indicator."""
        if not rows.values:
            raise InvalidRequest("reference data: no rows to set")
        merged = {**self.values, **rows.values}
        if merged == dict(self.values):
            raise InvalidRequest("reference data: the manifest already holds exactly these figures")
        return ReferenceData(dict(sorted(merged.items())))

    def changed_rows(self, rows: ReferenceData) -> list[tuple[Key, int | None, int]]:
        """(key, old, new) for each row of `rows` that differs from these figures."""
        return [(k, self.values.get(k), v) for k, v in sorted(rows.values.items()) if self.values.get(k) != v]


EMPTY = ReferenceData({})


def _fail(source: str, line: int, column: str, message: str) -> ReferenceError:
    return ReferenceError(f"{source}, row {line}, column {column}: {message}")


def parse_reference(
    text: str, *, source: str = "the reference data", register: Register | None = None
) -> ReferenceData:
    """Read and check reference rows: each an upper-tier authority (in `register`, when given), a
    year, a known indicator and a whole, non-negative figure, each (authority, year, indicator)
    once. ReferenceError names `source`, the row (line of the file) and the column; nothing is
    returned unless every row reads."""
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip() and line[0] != "#"]
    if not lines:
        raise ReferenceError(f"{source}: no header row (expected {','.join(COLUMNS)})")
    reader = csv.reader([line for _, line in lines])
    header = [h.strip() for h in next(reader)]
    header_line = lines[0][0]
    for column in COLUMNS:
        if column not in header:
            raise _fail(source, header_line, column, "missing from the header")
    for column in header:
        if column not in COLUMNS:
            raise _fail(source, header_line, column, f"not a reference column ({', '.join(COLUMNS)})")
    values: dict[Key, int] = {}
    first_row: dict[Key, int] = {}
    for (line, _), row in zip(lines[1:], reader, strict=True):
        if len(row) != len(header):
            raise _fail(source, line, "-", f"{len(row)} cells where the header has {len(header)}")
        cells = {h: c.strip() for h, c in zip(header, row, strict=True)}
        authority = cells["authority"]
        if not GSS_UPPER_TIER.match(authority):
            raise _fail(source, line, "authority", f"{authority!r} is not an upper-tier GSS code (E06, E08, E09, E10)")
        if register is not None and authority not in register:
            raise _fail(source, line, "authority", f"{authority} is not in the network's authority register")
        raw_year = cells["year"]
        if not raw_year.isdigit() or not _FIRST_YEAR <= int(raw_year) <= _LAST_YEAR:
            raise _fail(source, line, "year", f"{raw_year!r}: a year from {_FIRST_YEAR} to {_LAST_YEAR}")
        year = int(raw_year)
        indicator = cells["indicator"]
        if indicator_of(indicator) is None:
            known = ", ".join([*INDICATORS, f"{POPULATION}:<{'|'.join(_POPULATION_FIELDS)}>:<category>"])
            raise _fail(source, line, "indicator", f"{indicator!r}: one of {known}")
        raw = cells["value"].replace(",", "").removeprefix("£").strip()
        if not raw.isdigit():
            raise _fail(source, line, "value", f"{cells['value']!r}: a whole number, 0 or more")
        key = (authority, year, indicator)
        if key in values:
            first = first_row[key]
            twice = f"{authority} {year} {indicator} is given twice (first on row {first})"
            raise _fail(source, line, "indicator", twice)
        values[key] = int(raw)
        first_row[key] = line
    if not values:
        raise ReferenceError(f"{source}: no rows")
    return ReferenceData(dict(sorted(values.items())))


@functools.lru_cache(maxsize=8)
def _parsed(text: str) -> ReferenceData:
    return parse_reference(text, source="the manifest's reference data")


def reference_text_check(text: str) -> None:
    """Raise ValueError (for pydantic) when a manifest's reference text does not read."""
    try:
        _parsed(text)
    except ReferenceError as exc:
        raise ValueError(exc.public_message) from None


def reference_of(manifest: Manifest) -> ReferenceData:
    """The reference data a manifest carries (none in a manifest made before it was signed)."""
    return _parsed(manifest.reference) if manifest.reference else EMPTY


def population_share(
    reference: ReferenceData, authorities: Iterable[str], field: str, category: str
) -> tuple[float, int] | None:
    """The residents of `authorities` in `category` of the equality `field` as a percentage of
    their residents in every category of it, and the year, from the latest year for which every
    one of them has figures for the field; None when the network holds no such year."""
    wanted = sorted(set(authorities))
    prefix = f"{POPULATION}:{field}:"
    years: dict[int, dict[str, dict[str, int]]] = {}
    for (authority, year, indicator), value in reference.values.items():
        if indicator.startswith(prefix) and authority in wanted:
            years.setdefault(year, {}).setdefault(authority, {})[indicator.removeprefix(prefix)] = value
    for year in sorted(years, reverse=True):
        counts = years[year]
        if set(counts) != set(wanted):
            continue
        whole = sum(sum(c.values()) for c in counts.values())
        if not whole:
            return None
        part = sum(c.get(category, 0) for c in counts.values())
        return round(100 * part / whole, 1), year
    return None
