"""Seeded synthetic client records and short-term outcomes for one authority, written as the
records importer's CSV files (`node.records_import`), streaming, so a million records take seconds
and little memory.

Volumes and mixes follow /work/shared/domain.md: about 3.9 new client records per 1,000 people a
year over the financial years 2008-09 and 2009-10; each record's client group follows its service's;
the share of clients from outside the host authority depends on the kind of service (refuges about
70%, offender and substance services 25-40%, direct access 15-30%, floating support 5-15%, older
people 3-8%). Where out-of-area clients come from is a gravity model over the authority register:
every other authority in proportion to its population, falling off with distance, with a floor for
moves from anywhere in England and London's boroughs pushing more out (their homeless households
placed in neighbouring regions); about 2% of previous authorities are unknown. Ages follow the
client group; ethnicity follows the kind of authority (London boroughs and metropolitan districts
more diverse than counties); short-term outcomes follow the departure (planned moves meet more
needs) and the client group.

Repeat movers: for each pair of the network's members a fixed list of people (`repeat_movers`) has
a record in each, the later one naming the earlier authority as previous authority, more of them
the nearer the two are. The list comes from the pair, the membership and a network seed alone,
never from the node's own seed or volume, so nodes generated separately agree (given the same
members). Ordinary clients are made so that they can never match another authority's (each
member's are born on days of their own, and movers on days of theirs), so the people in two or
more authorities' records are exactly the movers. Some ordinary clients return within one
authority. The same authority, seed and count always give the same bytes.
"""

from __future__ import annotations

import gc
import math
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TypeVar

from node.client_records import AGE_BANDS, OUTCOME_DOMAINS
from node.imports.records import COLUMNS
from node.synthetic.rows import ServiceRecord, SyntheticSupply, ref_prefix
from shared import vocabulary
from shared.authorities import Authority, Register, shipped_register
from shared.vocabulary import ServiceType

__all__ = [
    "RECORDS_PER_1000_A_YEAR",
    "WINDOW_END",
    "WINDOW_START",
    "Mover",
    "default_count",
    "repeat_movers",
    "service_kind",
    "write_client_csvs",
]

WINDOW_START, WINDOW_END = date(2008, 4, 1), date(2010, 3, 31)  # financial years 2008-09 and 2009-10
RECORDS_PER_1000_A_YEAR = 3.9  # new client records a year per 1,000 population (assumed, domain.md)
UNKNOWN_ORIGIN = 0.02  # records whose previous authority is not known
RETURNING = 0.05  # ordinary records that are a client's return within the same authority
SECONDARY = 0.12  # records with one or more secondary client groups

# ---------------------------------------------------------------------------------------------
# Kinds of service: the share of clients from outside the authority (each service draws its own
# from the range) and the mean stay in days (short-term services only).

OUTSIDE_SHARE: dict[str, tuple[float, float]] = {
    "refuge": (0.64, 0.76),
    "offender-substance": (0.25, 0.40),
    "single-homeless": (0.15, 0.30),
    "floating-support": (0.05, 0.15),
    "older-people": (0.03, 0.08),
    "other": (0.08, 0.15),  # supported housing for young people, families, mental health (assumed)
}
MEAN_STAY_DAYS: dict[str, float] = {
    "refuge": 75,
    "offender-substance": 140,
    "single-homeless": 120,
    "floating-support": 200,
    "older-people": 200,
    "other": 240,
}
# Floating support stays vary most by client group: mental health support runs long, domestic
# violence support short (assumed, calibrated so that the group mix looks like the returns': single
# homeless about a quarter of new clients, domestic violence about an eighth).
FLOATING_STAY_DAYS: dict[int, float] = {4: 420, 7: 340, 12: 220, 14: 120, 16: 220, 21: 260}
# New clients a year per unit, for a long-term service (most of its units are filled for years).
LONG_TERM_TURNOVER = 0.12

ACC = ServiceType.ACCOMMODATION_BASED.value
ACC_FS = ServiceType.ACCOMMODATION_WITH_FLOATING_SUPPORT.value
NOT_RECORDED = frozenset({ServiceType.COMMUNITY_ALARM.value, ServiceType.HOME_IMPROVEMENT_AGENCY.value})


def service_kind(service: ServiceRecord) -> str:
    """The kind of service, as the out-of-area shares are given: refuge, offender-substance,
    single-homeless, floating-support, older-people or other."""
    group, accommodation = service.client_group, service.service_type in (ACC, ACC_FS)
    if group in (1, 2, 3):
        return "older-people"
    if group == vocabulary.DOMESTIC_VIOLENCE and accommodation:
        return "refuge"
    if group in (8, 9, 10, 11) and accommodation:
        return "offender-substance"
    if group in (7, 19) and service.service_type in (ACC, ACC_FS, ServiceType.OUTREACH.value):
        return "single-homeless"
    if not accommodation:
        return "floating-support"
    return "other"


# ---------------------------------------------------------------------------------------------
# Mixes by client group (assumed, in line with the SP client record returns' published shape).


def _each(groups: tuple[int, ...], mix: Mapping[str, float]) -> dict[int, Mapping[str, float]]:
    return {group: mix for group in groups}


_ADULT: Mapping[str, float] = {"18-24": 12, "25-34": 20, "35-44": 25, "45-54": 22, "55-59": 10, "60-64": 11}
AGE_MIX: dict[int, Mapping[str, float]] = _each(tuple(vocabulary.CLIENT_GROUPS), _ADULT) | {
    1: {"60-64": 6, "65-74": 34, "75-84": 40, "85+": 20},
    2: {"65-74": 25, "75-84": 45, "85+": 30},
    3: {"65-74": 20, "75-84": 45, "85+": 35},
    7: {"18-24": 25, "25-34": 28, "35-44": 25, "45-54": 15, "55-59": 4, "60-64": 3},
    8: {"25-34": 15, "35-44": 35, "45-54": 35, "55-59": 10, "60-64": 5},
    9: {"18-24": 15, "25-34": 45, "35-44": 30, "45-54": 10},
    10: {"18-24": 35, "25-34": 35, "35-44": 20, "45-54": 8, "55-59": 2},
    11: {"18-24": 25, "25-34": 35, "35-44": 25, "45-54": 12, "55-59": 3},
    12: {"16-17": 40, "18-24": 60},
    13: {"16-17": 50, "18-24": 50},
    14: {"18-24": 25, "25-34": 40, "35-44": 25, "45-54": 8, "55-59": 2},
    16: {"18-24": 30, "25-34": 45, "35-44": 20, "45-54": 5},
    18: {"16-17": 50, "18-24": 50},
    19: {"18-24": 20, "25-34": 30, "35-44": 28, "45-54": 15, "55-59": 5, "60-64": 2},
}
FEMALE_SHARE: dict[int, float] = {g: 0.45 for g in vocabulary.CLIENT_GROUPS} | {
    1: 0.65, 2: 0.65, 3: 0.70, 6: 0.5, 7: 0.25, 8: 0.25, 9: 0.3, 10: 0.12, 11: 0.15,
    14: 0.98, 15: 0.3, 16: 0.75, 17: 0.35, 18: 0.96, 19: 0.15, 20: 0.5, 21: 0.4,
}  # fmt: skip
ETHNICITY_MIX: dict[str, float] = {
    "A": 86, "B": 1, "C": 3, "D": 0.8, "E": 0.3, "F": 0.4, "G": 0.4, "H": 0.9, "J": 0.5, "K": 0.4,
    "L": 0.5, "M": 0.6, "N": 1.2, "P": 0.3, "R": 0.4, "S": 0.5, "Z": 2.4,
}  # fmt: skip
# Where more of the population is from minority ethnic groups, so are more clients (assumed, in the
# proportions of the 2001 census's broad picture): London's boroughs, then the metropolitan districts;
# counties and unitaries keep the mix above. The register's kind of authority chooses, so no
# authority is named.
ETHNICITY_BY_KIND: dict[str, dict[str, float]] = {
    "london-borough": {
        "A": 52, "B": 3, "C": 8, "D": 1.5, "E": 0.8, "F": 0.8, "G": 1.0, "H": 5, "J": 2, "K": 2.5,
        "L": 2, "M": 6, "N": 8, "P": 1.2, "R": 1.2, "S": 1.5, "Z": 2.5,
    },
    "metropolitan-district": {
        "A": 80, "B": 1, "C": 2, "D": 1.2, "E": 0.3, "F": 0.5, "G": 0.4, "H": 2.2, "J": 4, "K": 1.2,
        "L": 0.6, "M": 1.3, "N": 1.2, "P": 0.4, "R": 0.4, "S": 0.5, "Z": 2.4,
    },
}  # fmt: skip
REFUGEE_ETHNICITY: dict[str, float] = {"C": 20, "N": 30, "S": 20, "L": 12, "P": 5, "H": 3, "R": 3, "Z": 7}
_WORKING_AGE_STATUS = {
    "jobseeker": 35, "long-term-sick-or-disabled": 22, "not-seeking-work": 18, "part-time-work": 7,
    "full-time-work": 5, "government-training": 3, "full-time-student": 2, "other-adult": 8,
}  # fmt: skip
STATUS_MIX: dict[int, Mapping[str, float]] = {g: _WORKING_AGE_STATUS for g in vocabulary.CLIENT_GROUPS} | {
    **_each((1, 2, 3), {"retired": 88, "long-term-sick-or-disabled": 9, "other-adult": 3}),
    **_each(
        (4, 5, 6, 11),
        {"long-term-sick-or-disabled": 55, "not-seeking-work": 15, "jobseeker": 10, "part-time-work": 8,
         "full-time-work": 3, "government-training": 2, "other-adult": 7},
    ),
    **_each(
        (12, 13, 18),
        {"jobseeker": 40, "full-time-student": 18, "not-seeking-work": 18, "government-training": 12,
         "part-time-work": 6, "other-adult": 6},
    ),
    **_each(
        (14, 16),
        {"not-seeking-work": 38, "jobseeker": 20, "part-time-work": 15, "full-time-work": 9,
         "long-term-sick-or-disabled": 8, "other-adult": 10},
    ),
}  # fmt: skip
_GENERAL_REFERRAL = {
    "housing-department": 35, "self": 20, "voluntary-agency": 15, "social-services": 12,
    "family-or-friend": 6, "health-service": 5, "probation": 3, "police": 1, "other": 3,
}  # fmt: skip
REFERRAL_MIX: dict[int, Mapping[str, float]] = {g: _GENERAL_REFERRAL for g in vocabulary.CLIENT_GROUPS} | {
    **_each(
        (1, 2, 3),
        {"social-services": 35, "family-or-friend": 25, "self": 20, "health-service": 15, "other": 5},
    ),
    **_each(
        (4, 5, 6),
        {"health-service": 45, "social-services": 30, "self": 8, "family-or-friend": 7, "housing-department": 7,
         "other": 3},
    ),
    **_each(
        (8, 9),
        {"health-service": 30, "self": 25, "voluntary-agency": 20, "probation": 15, "housing-department": 7,
         "other": 3},
    ),
    **_each((10, 11), {"probation": 60, "self": 8, "voluntary-agency": 12, "housing-department": 10,
                              "police": 5, "health-service": 5}),
    **_each(
        (12, 13, 18),
        {"social-services": 45, "housing-department": 20, "self": 10, "voluntary-agency": 12,
         "family-or-friend": 8, "other": 5},
    ),
    14: {"self": 30, "police": 20, "voluntary-agency": 25, "social-services": 10, "housing-department": 8,
         "health-service": 4, "family-or-friend": 3},
}  # fmt: skip
_GENERAL_BEFORE = {
    "living-with-family-or-friends": 30, "private-rented": 15, "council-tenant": 8,
    "housing-association-tenant": 8, "hostel": 10, "bed-and-breakfast": 6, "supported-housing": 8,
    "rough-sleeping": 5, "hospital": 3, "prison": 2, "other": 5,
}  # fmt: skip
BEFORE_MIX: dict[int, Mapping[str, float]] = {g: _GENERAL_BEFORE for g in vocabulary.CLIENT_GROUPS} | {
    **_each(
        (1, 2, 3),
        {"owner-occupier": 40, "council-tenant": 28, "housing-association-tenant": 15, "private-rented": 10,
         "living-with-family-or-friends": 5, "hospital": 2},
    ),
    7: {"rough-sleeping": 22, "living-with-family-or-friends": 30, "hostel": 15, "bed-and-breakfast": 10,
        "private-rented": 10, "prison": 5, "supported-housing": 4, "other": 4},
    19: {"rough-sleeping": 70, "hostel": 12, "living-with-family-or-friends": 8, "bed-and-breakfast": 5,
         "prison": 3, "other": 2},
    **_each((10, 11), {"prison": 55, "hostel": 15, "living-with-family-or-friends": 12,
                              "rough-sleeping": 8, "private-rented": 5, "hospital": 3, "other": 2}),
    14: {"private-rented": 25, "council-tenant": 20, "housing-association-tenant": 15, "owner-occupier": 15,
         "living-with-family-or-friends": 15, "refuge": 10},
    **_each((4, 5, 6), {"living-with-family-or-friends": 35, "hospital": 20, "supported-housing": 15,
                               "private-rented": 10, "council-tenant": 8, "housing-association-tenant": 7,
                               "other": 5}),
}  # fmt: skip
# A client's secondary groups are drawn from the groups that go with the primary one.
SECONDARY_WITH: dict[int, tuple[int, ...]] = {g: (4,) for g in vocabulary.CLIENT_GROUPS} | {
    1: (6, 3), 2: (1, 3), 3: (1, 6), 4: (8, 9, 7), 5: (6, 4), 6: (1, 4), 7: (8, 9, 4, 19), 8: (7, 4, 10),
    9: (10, 7, 4), 10: (9, 8, 4, 7), 11: (4, 10), 12: (13, 18, 7), 13: (12, 7), 14: (16, 4), 16: (14, 4),
    18: (12, 16), 19: (7, 8, 9), 21: (4, 7, 9),
}  # fmt: skip
# Generic services take a mix of primary groups.
GENERIC_MIX = {7: 30, 4: 20, 9: 10, 8: 8, 16: 12, 12: 10, 21: 10}
PLANNED_SHARE: dict[int, float] = {g: 0.72 for g in vocabulary.CLIENT_GROUPS} | {
    4: 0.72, 7: 0.64, 8: 0.60, 9: 0.60, 10: 0.61, 11: 0.62, 12: 0.68, 13: 0.68, 14: 0.62, 16: 0.72,
    18: 0.68, 19: 0.60, 21: 0.70,
}  # fmt: skip
# Per outcome domain: the chance the need does not apply, then the chance an applicable need was met.
NOT_APPLICABLE = {
    "economic_wellbeing": 0.35, "enjoy_and_achieve": 0.45, "be_healthy": 0.30, "stay_safe": 0.20,
    "positive_contribution": 0.50,
}  # fmt: skip
ACHIEVED = {"planned": 0.78, "unplanned": 0.38}
# How much likelier (or not) an applicable need is met, by client group (assumed): older people's
# and learning disability services meet most needs they take on, rough sleepers', offenders' and
# drug services' fewer, where more clients leave before the work is done.
ACHIEVED_BY_GROUP: dict[int, float] = {g: 1.0 for g in vocabulary.CLIENT_GROUPS} | {
    1: 1.15, 2: 1.12, 3: 1.12, 5: 1.08, 6: 1.05, 8: 0.85, 9: 0.85, 10: 0.88, 11: 0.9, 14: 0.95,
    17: 0.92, 19: 0.8,
}  # fmt: skip

SURNAMES = (
    "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson", "Wright",
    "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood", "Jackson", "Clarke",
    "Patel", "Khan", "Lewis", "James", "Phillips", "Mason", "Mitchell", "Rose", "Davis", "Rodriguez",
    "Cox", "Alexander", "Morris", "Ward", "Turner", "Harris", "Martin", "Cooper", "Hill", "Morgan",
    "Moore", "Clark", "Lee", "King", "Baker", "Harrison", "Allen", "Young", "Anderson", "Scott",
    "Edwards", "Hughes", "Hussain", "Bennett", "Carter", "Shaw", "Murphy", "Price", "Bell", "Parker",
    "Collins", "Cook", "Bailey", "Richardson", "Marshall", "Ali", "Adams", "Chapman", "Ellis", "Gray",
    "Kelly", "Stevens", "Webb", "Simpson", "Griffiths", "Russell", "Holmes", "Lloyd", "Powell", "Palmer",
    "Fisher", "Reynolds", "Foster", "Lawrence", "Pearson", "Barnes", "Dixon", "Hunt", "Knight", "Jenkins",
    "Fox", "Butler", "Mills", "Graham", "Owen", "Stone", "Kennedy", "Wells", "Hudson", "Begum",
    "O'Brien", "O'Connor", "McDonald", "Fletcher", "Harvey", "Gibson", "Matthews", "Lane", "Newman", "Dunn",
    "Porter", "Ryan", "Hart", "Watts", "Pritchard", "Sutton", "Payne", "Pope", "Ford", "West",
    "Burton", "Booth", "Chambers", "Spencer", "Francis", "Howard", "Atkinson", "Barker", "Cole", "Hayes",
    "Nwosu", "Okafor", "Mensah", "Kowalski", "Nowak", "Wiśniewski", "Sharma", "Singh", "Kaur", "Chen",
    "Wong", "Nguyen", "Ahmed", "Rahman", "Mohamed", "Abdi", "Osei", "Boateng", "Da Silva", "Costa",
    "Byrne", "Doyle", "Quinn", "Gallagher", "Lynch", "Fitzgerald", "Brennan", "Maguire", "Doherty", "Nolan",
    "Perry", "Saunders", "Lamb", "Day", "Dean", "Walsh", "Kirby", "Hobbs", "Tucker", "Sharp",
    "Ball", "Nash", "Rowe", "Pike", "Rees", "Bishop", "Frost", "Lowe", "Page", "Marsh",
    "Holt", "Glover", "Slater", "Norris", "Finch", "Tyler", "Farrell", "Gardner", "Steele", "Parsons",
    "Brooks", "Jordan", "Field", "Reid", "Hammond", "Abbott", "Archer", "Barton", "Bird", "Blake",
)  # fmt: skip
INITIALS = "AAABBCCDDEEEFGGHHIJJJKKLLMMMNOPPRRSSSTTVWW"

# ---------------------------------------------------------------------------------------------
# Where out-of-area clients come from: a gravity model over the register (assumed). An origin's
# weight is its population times (exp(-distance / DISTANCE_KM) + ANYWHERE), London's boroughs times
# LONDON_PUSH for a host outside London. The distance is between centres, widened by each area's
# spread (a county's residents live far from its centre, a borough's near it).

DISTANCE_KM = 22.0  # how fast flows fall off with distance
ANYWHERE = 0.002  # moves from anywhere in England, whatever the distance
LONDON_PUSH = 1.5
SPREAD_KM = {"county": 20.0}  # every other kind: DEFAULT_SPREAD_KM
DEFAULT_SPREAD_KM = 5.0
COUNTY_AS_DISTRICT = 0.3  # a county origin named by one of its districts, as its export may
# Repeat movers shared by two members, per 1,000 of the geometric mean of their default volumes:
# MOVER_NEAR more for neighbours, falling off over MOVER_DISTANCE_KM, and MOVER_FLOOR for any pair.
MOVER_NEAR, MOVER_DISTANCE_KM, MOVER_FLOOR = 16.0, 30.0, 0.3
MOVER_GROUPS = {14: 25, 7: 25, 10: 12, 9: 10, 8: 5, 4: 8, 12: 8, 16: 7}


def distance_km(a: Authority, b: Authority) -> float:
    """Between two authorities' centres, on a sphere (near enough for England)."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def origin_weights(host: str, register: Register | None = None) -> dict[str, float]:
    """Every other authority's share of `host`'s clients from outside it (upper-tier codes)."""
    register = register or shipped_register()
    here = register.authority(host)
    weights = {}
    for code, other in register.authorities.items():
        if code == host:
            continue
        spread = SPREAD_KM.get(here.kind, DEFAULT_SPREAD_KM) ** 2 + SPREAD_KM.get(other.kind, DEFAULT_SPREAD_KM) ** 2
        distance = math.sqrt(distance_km(here, other) ** 2 + spread)
        weight = other.population * (math.exp(-distance / DISTANCE_KM) + ANYWHERE)
        if other.kind == "london-borough" and here.kind != "london-borough":
            weight *= LONDON_PUSH
        weights[code] = weight
    total = sum(weights.values())
    return {code: w / total for code, w in weights.items()}


def default_count(authority_code: str, register: Register | None = None) -> int:
    """The realistic number of new client records for the window: 3.9 per 1,000 people a year."""
    population = (register or shipped_register()).authority(authority_code).population
    years = (WINDOW_END - WINDOW_START).days / 365.25
    return round(RECORDS_PER_1000_A_YEAR * population / 1000 * years)


# ---------------------------------------------------------------------------------------------
# Sampling: each mix becomes a pool of values in proportion, so a draw is one index.

_POOL = 1000
_T = TypeVar("_T")


def _pool(weights: Mapping[_T, float], size: int = _POOL) -> tuple[_T, ...]:
    total = sum(weights.values())
    pool: list[_T] = []
    for value, weight in weights.items():
        pool.extend([value] * max(1, round(weight / total * size)))
    return tuple(pool)


_BAND_OF_AGE = tuple(
    next(band for band in reversed(AGE_BANDS) if age >= int(band.rstrip("+").split("-")[0])) for age in range(16, 121)
)
_BAND_YEARS = {band: (int(band.rstrip("+").split("-")[0]), int(band.split("-")[1]) if "-" in band else 94)
               for band in AGE_BANDS}  # fmt: skip
_EPOCH = WINDOW_START.toordinal()
_LAST = WINDOW_END.toordinal()
_DAYS = _LAST - _EPOCH + 1


class _Days:
    """Date ordinal -> (YYYY-MM-DD, year, month * 100 + day), cached: a file holds a few thousand days."""

    def __init__(self) -> None:
        self.cache: dict[int, tuple[str, int, int]] = {}

    def __call__(self, ordinal: int) -> tuple[str, int, int]:
        day = self.cache.get(ordinal)
        if day is None:
            d = date.fromordinal(ordinal)
            day = self.cache[ordinal] = (d.isoformat(), d.year, d.month * 100 + d.day)
        return day


def _birth(rng: random.Random, band: str, start: int, residue: int, modulus: int) -> int:
    """A birth date giving an age in `band` at `start`, on a day whose ordinal is `residue` mod `modulus`."""
    low, high = _BAND_YEARS[band]
    years = low + rng.random() * (high + 1 - low)
    birth = start - int(years * 365.2425)
    birth -= (birth - residue) % modulus
    return birth


def _days_of_birth(members: Sequence[str], code: str) -> tuple[int, int, int]:
    """(this member's residue, the movers' residue, the modulus): member i of n is born on days
    i mod max(7, n + 1), movers on the last residue, so no two members' ordinary clients coincide."""
    everyone = sorted(set(members) | {code})
    modulus = max(7, len(everyone) + 1)
    return everyone.index(code), modulus - 1, modulus


@dataclass(frozen=True)
class Mover:
    """One person with a record in each of two member authorities: first `first`, then `second`,
    whose record names `first` as the previous authority."""

    surname: str
    first_initial: str
    date_of_birth: date
    sex: str
    client_group: int
    first: str
    first_start: date
    second: str
    second_start: date


def repeat_movers(
    authority_a: str,
    authority_b: str,
    *,
    network_seed: int = 0,
    members: Sequence[str] = (),
    register: Register | None = None,
) -> list[Mover]:
    """The people shared by two member authorities, from the pair, the network's `members` and the
    network seed alone: each authority's generator makes the same list whatever its own seed or
    volume. More of them the nearer the two are."""
    register = register or shipped_register()
    a, b = sorted((register.authority(authority_a).code, register.authority(authority_b).code))
    if a == b:
        raise ValueError("repeat movers are shared by two different authorities")
    _, mover_residue, modulus = _days_of_birth((*members, a, b), a)
    distance = distance_km(register.authority(a), register.authority(b))
    rate = MOVER_FLOOR + MOVER_NEAR * math.exp(-distance / MOVER_DISTANCE_KM)
    count = round(rate / 1000 * math.sqrt(default_count(a, register) * default_count(b, register)))
    rng = random.Random(f"cagnet-movers:{network_seed}:{a}:{b}")
    last_first_start = WINDOW_END.toordinal() - 60
    movers = []
    for _ in range(count):
        group = rng.choices(list(MOVER_GROUPS), weights=list(MOVER_GROUPS.values()))[0]
        sex = "female" if rng.random() < FEMALE_SHARE[group] else "male"
        first_start = rng.randint(_EPOCH, last_first_start)
        second_start = min(first_start + rng.randint(14, 300), WINDOW_END.toordinal())
        ages = AGE_MIX[group]
        band = rng.choices(list(ages), weights=list(ages.values()))[0]
        birth = _birth(rng, band, first_start, mover_residue, modulus)
        first, second = (a, b) if rng.random() < 0.5 else (b, a)
        movers.append(
            Mover(
                surname=rng.choice(SURNAMES),
                first_initial=rng.choice(INITIALS),
                date_of_birth=date.fromordinal(birth),
                sex=sex,
                client_group=group,
                first=first,
                first_start=date.fromordinal(first_start),
                second=second,
                second_start=date.fromordinal(second_start),
            )
        )
    return movers


# ---------------------------------------------------------------------------------------------
# Per-service profiles.


@dataclass(frozen=True)
class _Profile:
    service_ref: str
    group: int  # 21 for a generic service: its clients' groups come from GENERIC_MIX
    kind: str
    short: bool
    outside: float
    mean_stay: float
    district: str  # the district's GSS code
    throughput: float  # new clients a year


def _profiles(supply: SyntheticSupply, rng: random.Random, info: Authority) -> list[_Profile]:
    district_code = {d.name: d.code for d in info.districts} | {d.code: d.code for d in info.districts}
    profiles = []
    for service in supply.services:
        if service.service_type in NOT_RECORDED:
            continue  # alarms and home improvement agencies make no client records
        kind = service_kind(service)
        short = service.term == vocabulary.Term.SHORT.value
        mean_stay = MEAN_STAY_DAYS[kind]
        if kind == "floating-support":
            mean_stay = FLOATING_STAY_DAYS.get(service.client_group, mean_stay)
        # A service's new clients a year: its units turn over once a stay (at 90% occupancy).
        throughput = service.units * (0.9 * 365 / mean_stay if short else LONG_TERM_TURNOVER)
        profiles.append(
            _Profile(
                service_ref=service.service_ref,
                group=service.client_group,
                kind=kind,
                short=short,
                outside=rng.uniform(*OUTSIDE_SHARE[kind]),
                mean_stay=mean_stay,
                district=district_code[service.district],
                throughput=throughput,
            )
        )
    return profiles


def _service_pool(profiles: Sequence[_Profile], size: int = 20_000) -> tuple[_Profile, ...]:
    total = sum(p.throughput for p in profiles)
    pool: list[_Profile] = []
    for p in profiles:
        pool.extend([p] * max(1, round(p.throughput / total * size)))
    return tuple(pool)


def _origin_pool(host: str, register: Register) -> tuple[str, ...]:
    """Previous authorities of clients from outside `host`, in proportion; a county with listed
    districts sometimes as one of them, as a county's export may name one."""
    weights: dict[str, float] = {}
    for origin, weight in origin_weights(host, register).items():
        districts = register.authority(origin).listed_districts
        if not districts:
            weights[origin] = weight
            continue
        weights[origin] = weight * (1 - COUNTY_AS_DISTRICT)
        for d in districts:
            weights[d.code] = weight * COUNTY_AS_DISTRICT / len(districts)
    return _pool(weights, 20_000)


# ---------------------------------------------------------------------------------------------
# Writing.


# Cells are written joined by commas, without the csv module's quoting: nothing written holds a
# comma, a quote or a line break, which keeps a million rows to a few seconds.
assert not any(ch in name for name in SURNAMES for ch in ',"\n')

_Person = tuple[str, str, int, str]  # surname, first initial, birth (date ordinal), sex
_DRAWS = 2048  # pre-drawn combinations of a group's other details, per group


class _Writer:
    """Writes client records and their outcomes line by line, drawing each record's details."""

    def __init__(
        self, supply: SyntheticSupply, directory: Path, rng: random.Random, register: Register, members: Sequence[str]
    ) -> None:
        self.code = supply.authority_code
        self.register = register
        self.info = register.authority(self.code)
        self.rng = rng
        self.prefix = ref_prefix(self.info)
        self.number = self.outcomes = 0
        self.days = _Days()
        self.record_path = directory / "client-records.csv"
        self.outcome_path = directory / "outcomes.csv"
        self._record_file = self.record_path.open("w", encoding="utf-8", newline="")
        self._outcome_file = self.outcome_path.open("w", encoding="utf-8", newline="")
        self.record_lines: list[str] = [",".join(COLUMNS["client-records"].all) + "\r\n"]
        self.outcome_lines: list[str] = [",".join(COLUMNS["outcomes"].all) + "\r\n"]
        groups = tuple(vocabulary.CLIENT_GROUPS)
        self.ages = {g: _pool(AGE_MIX[g]) for g in groups}
        self.generic = _pool(GENERIC_MIX)
        self.outside = _origin_pool(self.code, register)
        self.residue, _, self.modulus = _days_of_birth(members, self.code)
        self.returning: dict[int, deque[_Person]] = {g: deque(maxlen=256) for g in groups}
        # Per group, drawn up front when the group is first met (one index per record instead of
        # a draw per cell): secondary groups; ethnicity, economic status, referral source and
        # accommodation before; departure and outcomes.
        self.secondary: dict[int, tuple[str, ...]] = {}
        self.details: dict[int, tuple[str, ...]] = {}
        self.exits: dict[int, tuple[str, ...]] = {}

    def _draw(self, group: int) -> None:
        rng = self.rng
        self.secondary[group] = tuple(self._secondary(group) if rng.random() < SECONDARY else "" for _ in range(_DRAWS))
        local = ETHNICITY_BY_KIND.get(self.info.kind, ETHNICITY_MIX)
        ethnicity = REFUGEE_ETHNICITY if group == vocabulary.REFUGEES else local
        columns = [
            rng.choices(_pool(mix), k=_DRAWS)
            for mix in (ethnicity, STATUS_MIX[group], REFERRAL_MIX[group], BEFORE_MIX[group])
        ]
        self.details[group] = tuple(",".join(cells) for cells in zip(*columns, strict=True))
        departures = ["planned" if rng.random() < PLANNED_SHARE[group] else "unplanned" for _ in range(_DRAWS)]
        needs = [
            [
                "not-applicable" if rng.random() < NOT_APPLICABLE[domain]
                else "achieved" if rng.random() < min(0.97, ACHIEVED[departure] * ACHIEVED_BY_GROUP[group])
                else "identified"
                for departure in departures
            ]
            for domain in OUTCOME_DOMAINS
        ]  # fmt: skip
        self.exits[group] = tuple(",".join(cells) for cells in zip(departures, *needs, strict=True))

    def _secondary(self, group: int) -> str:
        options = SECONDARY_WITH[group]
        picked = {self.rng.choice(options)}
        if self.rng.random() < 0.2:
            picked.add(self.rng.choice(options))
        picked.discard(group)
        return ";".join(str(g) for g in sorted(picked))

    def _local(self, profile: _Profile) -> str:
        # A county's export names the client's district about half the time, its own code otherwise.
        if self.info.kind == "county" and self.rng.random() < 0.5:
            return profile.district
        return self.code

    def record(self, profile: _Profile, group: int, start: int, person: _Person, previous: str, end: int) -> None:
        """Write one record, and its outcome unless `end` is 0."""
        random_ = self.rng.random
        self.number += 1
        ref = f"{self.prefix}-CR{self.number:07d}"
        surname, initial, birth, sex = person
        start_iso, start_year, start_md = self.days(start)
        birth_iso, birth_year, birth_md = self.days(birth)
        age = start_year - birth_year - (start_md < birth_md)
        band = _BAND_OF_AGE[min(max(age, 16), 120) - 16]
        if group not in self.details:
            self._draw(group)
        secondary = self.secondary[group][int(random_() * _DRAWS)]
        details = self.details[group][int(random_() * _DRAWS)]
        self.record_lines.append(
            f"{ref},{profile.service_ref},{start_iso},{group},{secondary},{band},{sex},{details},{previous},"
            f"{surname},{initial},{birth_iso}\r\n"
        )
        if end:
            self.outcome_lines.append(f"{ref},{self.days(end)[0]},{self.exits[group][int(random_() * _DRAWS)]}\r\n")
            self.outcomes += 1
        if len(self.record_lines) >= 10_000:
            self.flush()

    def flush(self) -> None:
        self._record_file.write("".join(self.record_lines))
        self._outcome_file.write("".join(self.outcome_lines))
        self.record_lines, self.outcome_lines = [], []

    def close(self) -> None:
        self.flush()
        self._record_file.close()
        self._outcome_file.close()

    def ordinary(self, pool: tuple[_Profile, ...]) -> None:
        """One ordinary record: a new or returning client of a service drawn by its throughput."""
        rng = self.rng
        random_ = rng.random
        profile = pool[int(random_() * len(pool))]
        group = profile.group if profile.group != 21 else self.generic[int(random_() * len(self.generic))]
        start = _EPOCH + int(random_() * _DAYS)
        returning = self.returning[group]
        person: _Person
        if returning and random_() < RETURNING:
            person = returning[int(random_() * len(returning))]
        else:
            ages = self.ages[group]
            person = (
                SURNAMES[int(random_() * len(SURNAMES))],
                INITIALS[int(random_() * len(INITIALS))],
                _birth(rng, ages[int(random_() * len(ages))], start, self.residue, self.modulus),
                "female" if random_() < FEMALE_SHARE[group] else "male",
            )
            returning.append(person)
        draw = random_()
        if draw < UNKNOWN_ORIGIN:
            previous = "unknown" if draw < UNKNOWN_ORIGIN / 2 else ""
        elif random_() < profile.outside:
            previous = self.outside[int(random_() * len(self.outside))]
        else:
            previous = self._local(profile)
        end = 0
        if profile.short:
            end = start + 7 + int(rng.expovariate(1 / profile.mean_stay))
            if end > _LAST:
                end = 0  # still there at the end of the window
        self.record(profile, group, start, person, previous, end)

    def mover(self, mover: Mover, profiles: Sequence[_Profile]) -> None:
        """A repeat mover's record here: the first of their two, or the second, from `first`."""
        rng = self.rng
        # A small authority may have no service for the group, nor a generic one: then any service.
        matching = (
            [p for p in profiles if p.group == mover.client_group]
            or [p for p in profiles if p.group == 21]
            or list(profiles)
        )
        profile = rng.choices(matching, weights=[p.throughput for p in matching])[0]
        person = (mover.surname, mover.first_initial, mover.date_of_birth.toordinal(), mover.sex)
        if mover.first == self.code:
            start = mover.first_start.toordinal()
            # They left before (or as) they started at the second authority.
            end = max(start, mover.second_start.toordinal() - rng.randint(0, 14)) if profile.short else 0
            self.record(profile, mover.client_group, start, person, self._local(profile), end)
            return
        first = self.register.authority(mover.first)
        previous = first.code
        if first.kind == "county" and rng.random() < 0.3:
            previous = rng.choice(first.districts).code
        self.record(profile, mover.client_group, mover.second_start.toordinal(), person, previous, 0)


def _movers_here(code: str, network_seed: int, members: Sequence[str], register: Register) -> list[Mover]:
    everyone = sorted(set(members) | {code})
    movers = []
    for other in everyone:
        if other != code:
            a, b = sorted((code, other))
            movers.extend(repeat_movers(a, b, network_seed=network_seed, members=everyone, register=register))
    return movers


def write_client_csvs(
    supply: SyntheticSupply,
    directory: Path,
    *,
    count: int | None = None,
    network_seed: int = 0,
    members: Sequence[str] = (),
    register: Register | None = None,
) -> dict[str, Path]:
    """client-records.csv and outcomes.csv for the supply's authority, in the records importer's
    format; returns {"client-records": path, "outcomes": path}.

    `count` is the number of client records (default: `default_count`); the authority's repeat
    movers are among them, and are all written even when `count` is smaller. The supply's seed
    seeds everything but the movers, which come from `network_seed` and `members`, the network's
    member authorities (see `repeat_movers`); without members the authority shares no one.
    `register` is the network's authority register (default: the shipped list).
    """
    register = register or shipped_register()
    code = supply.authority_code
    rng = random.Random(f"cagnet-clients:{code}:{supply.seed}")
    profiles = _profiles(supply, rng, register.authority(code))
    pool = _service_pool(profiles)
    movers = _movers_here(code, network_seed, members, register)
    total = max(default_count(code, register) if count is None else count, len(movers))
    # Where each mover's record goes among the ordinary ones: sampled positions, in file order.
    positions = dict(zip(sorted(rng.sample(range(total), len(movers))), movers, strict=True))
    directory.mkdir(parents=True, exist_ok=True)
    writer = _Writer(supply, directory, rng, register, members)
    # Nothing made here forms a reference cycle, and the collector's passes over the pools and
    # caches would take a third of the time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for position in range(total):
            mover = positions.get(position)
            if mover is None:
                writer.ordinary(pool)
            else:
                writer.mover(mover, profiles)
    finally:
        if collecting:
            gc.enable()
        writer.close()
    return {"client-records": writer.record_path, "outcomes": writer.outcome_path}
