"""The authority register: every English upper-tier authority a network knows (GSS code, name,
kind, region, an approximate centre, a county's districts, population by year), kept as reference
data, never as code.

The package ships the 2011 list (`shared/data/authorities-2011.csv`). `cagnet network init` puts
its text in manifest version 1, so the register is signed with the manifest and every node verifies
it along the chain; a governed proposal (`set-authority`) corrects a population or a district.
Members, their names and every per-1,000 rate come from the manifest and this register.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import TYPE_CHECKING

from shared.errors import InvalidRequest
from shared.vocabulary import GSS_DISTRICT, GSS_REGION, GSS_UPPER_TIER

if TYPE_CHECKING:
    from shared.manifest import Manifest

__all__ = [
    "KINDS",
    "SHIPPED",
    "Authority",
    "District",
    "Register",
    "RegisterError",
    "parse_register",
    "regions",
    "register_of",
    "register_text_check",
    "shipped_register",
]

SHIPPED = "authorities-2011.csv"
_REGIONS = "regions-2011.csv"

# The kind each upper-tier code prefix stands for.
KINDS = {"E06": "unitary", "E08": "metropolitan-district", "E09": "london-borough", "E10": "county"}
_COLUMNS = ("code", "name", "kind", "region", "lat", "lon")
_POPULATION = re.compile(r"^population_(\d{4})$")


@dataclass(frozen=True)
class District:
    code: str
    name: str


@dataclass(frozen=True)
class Authority:
    code: str
    name: str
    kind: str  # county, unitary, metropolitan-district or london-borough
    region: str  # the region's GSS code
    lat: float
    lon: float
    populations: tuple[tuple[int, int], ...]  # (year, population), oldest first
    listed_districts: tuple[District, ...] = ()  # a county's districts, as the register lists them

    @property
    def population(self) -> int:
        """The latest population the register holds."""
        return self.populations[-1][1]

    @property
    def districts(self) -> tuple[District, ...]:
        """Where its services are: a county's listed districts; otherwise (a unitary, a borough, or a
        county whose districts are not listed) the authority itself as its one district."""
        return self.listed_districts or (District(self.code, self.name),)


class RegisterError(InvalidRequest):
    """A register that cannot be used, naming the file, row and column."""


@dataclass(frozen=True)
class Register:
    """The authorities by GSS code, in code order, and the population years it holds."""

    authorities: Mapping[str, Authority]
    years: tuple[int, ...]
    _districts: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for a in self.authorities.values():
            for d in a.listed_districts:
                self._districts[d.code] = a.code

    def __contains__(self, code: object) -> bool:
        return code in self.authorities

    def authority(self, code: str) -> Authority:
        """The authority with this GSS code; KeyError names the code when the register has none."""
        try:
            return self.authorities[code]
        except KeyError:
            raise KeyError(f"{code!r} is not an English upper-tier authority in the register") from None

    def county_of(self, district_code: str) -> str | None:
        """The county a listed district belongs to."""
        return self._districts.get(district_code)

    def to_csv(self) -> str:
        """The register's canonical text: what the manifest carries and `parse_register` reads."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([*_COLUMNS, *(f"population_{y}" for y in self.years), "districts"])
        for a in self.authorities.values():
            by_year = dict(a.populations)
            writer.writerow(
                [
                    a.code,
                    a.name,
                    a.kind,
                    a.region,
                    f"{a.lat:g}",
                    f"{a.lon:g}",
                    *(str(by_year[y]) for y in self.years),
                    ";".join(f"{d.code}={d.name}" for d in a.listed_districts),
                ]
            )
        return out.getvalue()

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.to_csv().encode()).hexdigest()

    def corrected(
        self, code: str, *, population: int | None = None, year: int | None = None, districts: Mapping[str, str] = {}
    ) -> Register:
        """A new register with one authority's population (for `year`, default the latest) and/or
        districts (added, or renamed when listed) corrected; InvalidRequest says what is wrong."""
        if code not in self.authorities:
            raise InvalidRequest(f"authority {code!r}: not an English upper-tier authority in the register")
        old = self.authorities[code]
        new = old
        if population is None and not districts:
            raise InvalidRequest("say what to correct: a population, a district or both")
        if population is not None:
            year = year or self.years[-1]
            if year not in self.years:
                raise InvalidRequest(f"year: the register holds {', '.join(map(str, self.years))} (got {year})")
            if population <= 0:
                raise InvalidRequest(f"population: must be a whole number above 0 (got {population})")
            new = replace(new, populations=tuple((y, population if y == year else p) for y, p in old.populations))
        if districts:
            if old.kind != "county":
                raise InvalidRequest(f"district: {old.name} ({code}) is a {old.kind}, which has no districts")
            listed = {d.code: d.name for d in old.listed_districts}
            for district, name in districts.items():
                if not GSS_DISTRICT.match(district):
                    raise InvalidRequest(f"district {district!r}: not a district GSS code (E07 and six digits)")
                if not name.strip():
                    raise InvalidRequest(f"district {district}: needs a name (CODE=NAME)")
                other = self.county_of(district)
                if other is not None and other != code:
                    raise InvalidRequest(f"district {district}: already listed under {other}")
                listed[district] = name.strip()
            new = replace(new, listed_districts=tuple(District(c, n) for c, n in sorted(listed.items())))
        if new == old:
            raise InvalidRequest(f"authority {code}: the register already says so")
        return Register({**self.authorities, code: new}, self.years)


def _fail(source: str, line: int, column: str, message: str) -> RegisterError:
    return RegisterError(f"{source}, row {line}, column {column}: {message}")


def parse_register(text: str, *, source: str = "the authority register") -> Register:
    """Read and check a register: every row a well-formed upper-tier code listed once, of the kind its
    code says, in a known region, with positive populations and well-formed, unique districts.
    RegisterError names `source`, the row (line of the file) and the column."""
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip() and line[0] != "#"]
    if not lines:
        raise RegisterError(f"{source}: no header row")
    reader = csv.reader([line for _, line in lines])
    header = next(reader)
    header_line = lines[0][0]
    missing = [c for c in (*_COLUMNS, "districts") if c not in header]
    if missing:
        raise _fail(source, header_line, missing[0], "missing from the header")
    years = []
    for column in header:
        m = _POPULATION.match(column)
        if m:
            years.append(int(m.group(1)))
        elif column not in (*_COLUMNS, "districts"):
            raise _fail(source, header_line, column, "not a register column")
    if not years:
        raise _fail(source, header_line, "population_YYYY", "the header needs at least one population column")
    if years != sorted(set(years)):
        raise _fail(source, header_line, "population_YYYY", "population years must be distinct and in order")
    known_regions = regions()
    authorities: dict[str, Authority] = {}
    district_rows: dict[str, int] = {}
    for (line, _), row in zip(lines[1:], reader, strict=True):
        if len(row) != len(header):
            raise _fail(source, line, "-", f"{len(row)} cells where the header has {len(header)}")
        cells = dict(zip(header, row, strict=True))
        code = cells["code"].strip()
        if not GSS_UPPER_TIER.match(code):
            raise _fail(source, line, "code", f"{code!r} is not an upper-tier GSS code (E06, E08, E09 or E10)")
        if code in authorities:
            raise _fail(source, line, "code", f"{code} is listed twice")
        name = cells["name"].strip()
        if not name:
            raise _fail(source, line, "name", "empty")
        kind = cells["kind"].strip()
        if kind != KINDS[code[:3]]:
            raise _fail(source, line, "kind", f"{code} is a {KINDS[code[:3]]} code (got {kind!r})")
        region = cells["region"].strip()
        if not GSS_REGION.match(region) or region not in known_regions:
            raise _fail(source, line, "region", f"{region!r} is not an English region's GSS code")
        centre = []
        for column, low, high in (("lat", 49.0, 56.0), ("lon", -7.0, 2.0)):
            try:
                value = float(cells[column])
            except ValueError:
                raise _fail(source, line, column, f"{cells[column]!r} is not a number") from None
            if not low <= value <= high:
                raise _fail(source, line, column, f"{value} is outside England ({low} to {high})")
            centre.append(value)
        populations = []
        for year in years:
            column = f"population_{year}"
            raw = cells[column].strip().replace(",", "")
            if not raw.isdigit() or int(raw) <= 0:
                raise _fail(source, line, column, f"{cells[column]!r}: a population must be a whole number above 0")
            populations.append((year, int(raw)))
        districts = _districts(cells["districts"], source, line, kind, district_rows)
        authorities[code] = Authority(code, name, kind, region, centre[0], centre[1], tuple(populations), districts)
    if not authorities:
        raise RegisterError(f"{source}: no authorities")
    return Register(dict(sorted(authorities.items())), tuple(years))


def _districts(cell: str, source: str, line: int, kind: str, seen: dict[str, int]) -> tuple[District, ...]:
    if not cell.strip():
        return ()
    if kind != "county":
        raise _fail(source, line, "districts", f"a {kind} has no districts")
    districts = []
    for part in cell.split(";"):
        code, sep, name = part.partition("=")
        code, name = code.strip(), name.strip()
        if not sep or not name:
            raise _fail(source, line, "districts", f"{part!r}: each district is CODE=NAME")
        if not GSS_DISTRICT.match(code):
            raise _fail(source, line, "districts", f"{code!r} is not a district GSS code (E07 and six digits)")
        if code in seen:
            raise _fail(source, line, "districts", f"{code} is listed twice (first on row {seen[code]})")
        seen[code] = line
        districts.append(District(code, name))
    return tuple(districts)


def _data(name: str) -> str:
    return resources.files("shared").joinpath("data", name).read_text(encoding="utf-8")


@functools.cache
def regions() -> dict[str, str]:
    """England's regions: GSS code -> name, from the shipped list."""
    rows = csv.DictReader(line for line in _data(_REGIONS).splitlines() if line and line[0] != "#")
    return {row["code"]: row["name"] for row in rows}


@functools.cache
def shipped_register() -> Register:
    """The shipped 2011 list: what a new network's register starts from."""
    return parse_register(_data(SHIPPED), source=f"shared/data/{SHIPPED}")


@functools.lru_cache(maxsize=8)
def _parsed(text: str) -> Register:
    return parse_register(text, source="the manifest's authority register")


def register_text_check(text: str) -> None:
    """Raise ValueError (for pydantic) when a manifest's register text does not read."""
    try:
        _parsed(text)
    except RegisterError as exc:
        raise ValueError(exc.public_message) from None


def register_of(manifest: Manifest) -> Register:
    """The register a manifest carries; a manifest without one (made before registers were signed)
    uses the shipped list."""
    return _parsed(manifest.authorities) if manifest.authorities else shipped_register()
