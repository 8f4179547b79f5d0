"""Seeded synthetic supply for one authority: providers, services and contracts that look like an SP
authority's between 2003 and 2011, written as the importer's CSV files and loaded through it.

Sizes, unit costs and the service mix follow /work/shared/domain.md. Regional providers work for
several authorities and are spelt differently in each authority's export, as real exports are,
while their registration numbers agree (after the importer's normalisation). Every registration
and provider number here is invented. The same authority and seed always give the same bytes.
"""

from __future__ import annotations

import hashlib
import math
import random
import tempfile
from collections.abc import Sequence
from dataclasses import astuple, dataclass, fields, replace
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from sqlalchemy.engine import Engine

from node.client_records import PersonSealer
from node.imports.records import import_client_records, import_outcomes
from node.imports.returns import KPI1_RETURNS, OCCUPANCY_RETURNS, import_returns
from node.imports.supply import COLUMNS, ImportSummary, import_csv
from node.store import ensure_authority
from node.synthetic import clients as synth_clients
from node.synthetic import returns as synth_returns
from node.synthetic.rows import ContractRecord, ProviderRecord, ServiceRecord, SyntheticSupply, ref_prefix
from shared import vocabulary
from shared.authorities import Authority, District, Register, shipped_register
from shared.spreadsheet import SafeWriter
from shared.vocabulary import UNIT_TYPE_FOR, ServiceType, Term

__all__ = [
    "ContractRecord",
    "LoadSummary",
    "ProviderRecord",
    "ServiceRecord",
    "SyntheticSupply",
    "generate",
    "load",
    "write_csvs",
]

POPULATION_PER_SERVICE = (3000, 4000)  # roughly one service per 3,000-4,000 residents (assumed)
FLOATING_SUPPORT_HOURLY_RATE = (16.0, 19.0)  # £ an hour (source)
HOURS_PER_HOUSEHOLD = (1.25, 3.15)  # a week; with the hourly rate gives £20-60 per household per week
FIRST_START_YEAR, LAST_START_YEAR = 2003, 2009
SP_ERA_START = date(2003, 4, 1)
SP_ERA_END = date(2011, 3, 31)  # Supporting People ran 2003-2011 (domain.md)

ACC = ServiceType.ACCOMMODATION_BASED
FS = ServiceType.FLOATING_SUPPORT
ALARM = ServiceType.COMMUNITY_ALARM
HIA = ServiceType.HOME_IMPROVEMENT_AGENCY
OUTREACH = ServiceType.OUTREACH
RESETTLEMENT = ServiceType.RESETTLEMENT
ACC_FS = ServiceType.ACCOMMODATION_WITH_FLOATING_SUPPORT
SHORT, LONG = Term.SHORT, Term.LONG


# ---------------------------------------------------------------------------------------------
# The service catalogue: client group, type, size and unit cost (£ per unit per week, domain.md).


@dataclass(frozen=True)
class _Template:
    client_group: int
    service_type: ServiceType
    units: tuple[int, int]
    cost: tuple[float, float]  # £ per unit per week; floating support is priced by the hour instead
    term: Term
    designated: float  # the chance that the service is cross-authority designated
    weight: float  # share of the general mix, per 100 services; 0 for services placed on purpose
    name: str  # "{place}" is the district, "{stem}" a building name


_FLOATING = (0.0, 0.0)  # cost from the hourly rate and contracted hours

CATALOGUE: tuple[_Template, ...] = (
    # Older people: sheltered housing is the bulk of SP services and units.
    _Template(1, ACC, (20, 60), (5, 20), LONG, 0.0, 24, "{stem} Court sheltered scheme"),
    _Template(1, FS, (30, 150), _FLOATING, LONG, 0.0, 3, "{place} Older People's Floating Support"),
    _Template(3, ACC, (30, 60), (20, 60), LONG, 0.0, 3, "{stem} Lodge very sheltered scheme"),
    _Template(2, ACC, (10, 30), (100, 300), LONG, 0.0, 1.5, "{stem} House dementia scheme"),
    _Template(2, FS, (20, 60), _FLOATING, LONG, 0.0, 1, "{place} Dementia Support Service"),
    # Mental health, learning and physical disability.
    _Template(4, ACC, (6, 20), (100, 300), LONG, 0.0, 4.5, "{stem} House mental health project"),
    _Template(4, FS, (20, 120), _FLOATING, SHORT, 0.0, 3.5, "{place} Mental Health Floating Support"),
    _Template(4, ACC_FS, (8, 24), (100, 300), SHORT, 0.0, 1, "{stem} House and Outreach"),
    _Template(5, ACC, (2, 8), (100, 600), LONG, 0.0, 8, "{stem} Road supported living"),
    _Template(5, FS, (20, 60), _FLOATING, LONG, 0.0, 1, "{place} Learning Disability Floating Support"),
    _Template(6, ACC, (5, 20), (100, 300), LONG, 0.0, 1.2, "{stem} Court wheelchair flats"),
    _Template(6, FS, (20, 60), _FLOATING, LONG, 0.0, 0.8, "{place} Sensory Impairment Support"),
    # Homelessness.
    _Template(7, ACC, (10, 40), (100, 250), SHORT, 0.05, 6, "{stem} House hostel"),
    _Template(7, FS, (30, 150), _FLOATING, SHORT, 0.0, 3, "{place} Tenancy Sustainment Service"),
    _Template(7, RESETTLEMENT, (15, 60), (20, 60), SHORT, 0.0, 0.8, "{place} Resettlement Service"),
    _Template(16, ACC, (8, 30), (100, 250), SHORT, 0.0, 1.6, "{stem} Family Centre"),
    _Template(16, FS, (30, 120), _FLOATING, SHORT, 0.0, 1.8, "{place} Family Floating Support"),
    _Template(19, OUTREACH, (20, 60), (20, 60), SHORT, 0.0, 0.7, "{place} Street Outreach Team"),
    _Template(21, FS, (50, 150), _FLOATING, SHORT, 0.0, 3, "{place} Generic Floating Support"),
    # Substance misuse and offenders: the designated services besides refuges.
    _Template(8, ACC, (6, 20), (150, 300), SHORT, 0.6, 1.2, "{stem} House alcohol recovery project"),
    _Template(9, ACC, (6, 20), (150, 300), SHORT, 0.6, 1.6, "{stem} Lodge drug rehabilitation project"),
    _Template(9, FS, (20, 60), _FLOATING, SHORT, 0.2, 1, "{place} Substance Misuse Floating Support"),
    _Template(10, ACC, (10, 30), (150, 300), SHORT, 0.5, 1.6, "{stem} House offender hostel"),
    _Template(10, FS, (20, 80), _FLOATING, SHORT, 0.2, 1, "{place} Offender Floating Support"),
    _Template(11, ACC, (4, 12), (150, 300), SHORT, 0.4, 0.6, "{stem} House forensic mental health project"),
    # Young people.
    _Template(12, ACC, (10, 40), (100, 250), SHORT, 0.0, 3, "{place} Foyer"),
    _Template(12, ACC_FS, (8, 30), (100, 250), SHORT, 0.0, 1, "{stem} Young People's Project"),
    _Template(12, FS, (20, 80), _FLOATING, SHORT, 0.0, 1.2, "{place} Young People's Floating Support"),
    _Template(13, ACC, (4, 15), (100, 250), SHORT, 0.0, 1.6, "{place} Supported Lodgings for Care Leavers"),
    _Template(18, ACC, (4, 12), (100, 250), SHORT, 0.0, 0.9, "{stem} Teenage Parent Project"),
    # Domestic violence: refuges are placed per authority below, and always designated.
    _Template(14, FS, (20, 80), _FLOATING, SHORT, 0.1, 1.5, "{place} Domestic Abuse Floating Support"),
    _Template(14, OUTREACH, (20, 60), (20, 60), SHORT, 0.1, 0.5, "{place} Domestic Abuse Outreach"),
)

REFUGE = _Template(14, ACC, (4, 12), (150, 350), SHORT, 1.0, 0, "Women's Refuge {letter}")
COMMUNITY_ALARM = _Template(1, ALARM, (300, 3000), (1, 5), LONG, 0.0, 0, "{place} Community Alarm Service")
# Home improvement agencies count cases a year; £4-12 a case a week is an assumption (domain.md has none).
HOME_IMPROVEMENT = _Template(1, HIA, (150, 800), (4, 12), SHORT, 0.0, 0, "{place} Home Improvement Agency")
RARE: dict[int, _Template] = {
    15: _Template(15, FS, (20, 40), _FLOATING, SHORT, 0.0, 0, "{place} HIV Support Service"),
    17: _Template(17, FS, (20, 40), _FLOATING, SHORT, 0.0, 0, "{place} Refugee Support Service"),
    20: _Template(20, FS, (20, 30), _FLOATING, SHORT, 0.0, 0, "{place} Traveller Support Service"),
}
# The small groups are concentrated in a few places: an authority has a service for one with a
# chance growing with its population, in a district of its own (the same whatever the seed).
RARE_CHANCE = (0.15, 0.45)  # the chance at no population, and the rise per million residents
RARE_MAX = 0.8


def _rare_services(info: Authority) -> list[tuple[int, District]]:
    chance = min(RARE_MAX, RARE_CHANCE[0] + RARE_CHANCE[1] * info.population / 1_000_000)
    placed = []
    for group in sorted(RARE):
        rng = random.Random(f"cagnet-synth-rare:{info.code}:{group}")
        if rng.random() < chance:
            placed.append((group, rng.choice(info.districts)))
    return placed


def _share(*parts: object) -> float:
    """A fixed number in [0, 1) for these parts: what every node works out alike, whatever its seed."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


_STEMS = (
    "Abbey", "Albion", "Beacon", "Beech", "Bramley", "Brook", "Cedar", "Chestnut", "Church", "Clarendon",
    "Downs", "Elm", "Fairfield", "Foxglove", "Glebe", "Harbour", "Hawthorn", "Heron", "Holly", "Juniper",
    "Kingfisher", "Larch", "Laurel", "Lavender", "Linden", "Maple", "Meadow", "Mulberry", "Oak", "Orchard",
    "Priory", "Rowan", "St Anne's", "St John's", "Sycamore", "Victoria", "Willow", "Windmill", "Wren", "Yew Tree",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Providers: regional organisations spelt per authority, and local ones made per district.

_HOUSING = frozenset({ACC, FS, ACC_FS, OUTREACH, RESETTLEMENT})


@dataclass(frozen=True)
class _Org:
    spellings: tuple[str, ...]  # how different authorities' systems spell it
    groups: frozenset[int]
    coverage: float  # the share of authorities it works for
    types: frozenset[ServiceType] = _HOUSING
    charity_number: str | None = None
    company_number: str | None = None
    national_provider_id: str | None = None

    def works_for(self, authority_code: str) -> bool:
        return _share("org", self.spellings[0], authority_code) < self.coverage

    def spelt_by(self, authority_code: str) -> str:
        return self.spellings[int(_share("spelling", self.spellings[0], authority_code) * len(self.spellings))]


def _org(
    spellings: tuple[str, ...],
    groups: set[int],
    *,
    coverage: float,
    charity: str | None = None,
    company: str | None = None,
    national: str | None = None,
    types: frozenset[ServiceType] = _HOUSING,
) -> _Org:
    return _Org(spellings, frozenset(groups), coverage, types, charity, company, national)


_OLDER = _HOUSING | {ALARM}

# Numbers are invented, in ranges the local providers never use, so that only the same organisation
# shares a number. YMCA Thames Gateway is a different charity from YMCA DownsLink, as in life.
# Which authorities an organisation works for, and how each spells it, is fixed by the
# organisation and the authority alone, so that nodes generated apart agree.
REGIONAL: tuple[_Org, ...] = (
    _org(
        ("Look Ahead Housing & Care Ltd", "Look Ahead Housing and Care Limited", "Look Ahead Housing and Care",
         "LookAhead Housing & Care"),
        {4, 7, 12, 13, 19}, coverage=0.6, charity="254101", company="02101101", national="100101",
    ),
    _org(("The Riverside Group Ltd", "Riverside Group", "Riverside ECHG"), {7, 16, 19, 10},
         coverage=0.5, company="02102102", national="100102"),
    _org(("YMCA Downslink Group", "Y.M.C.A. DownsLink Group", "YMCA DownsLink Group Ltd", "YMCA Downslink"),
         {12, 13, 18}, coverage=0.35, charity="254103", national="100103"),
    _org(("YMCA Thames Gateway", "Y.M.C.A. Thames Gateway"), {12, 13}, coverage=0.35, charity="254104"),
    _org(
        ("Home Group Ltd", "Stonham (Home Group)", "Home Group Limited", "Stonham Housing Association",
         "Home Group Ltd (Stonham)"),
        {4, 7, 8, 9, 10, 11, 14}, coverage=0.8, company="02105105", national="100105",
    ),
    _org(("St Mungo's", "St Mungos", "St. Mungo's Community Housing Association"), {7, 19, 4, 8},
         coverage=0.5, charity="254106", company="02106106", national="100106"),
    _org(
        ("Sanctuary Housing Association", "Sanctuary HA", "Sanctuary Housing Assoc.",
         "Sanctuary Housing Association Ltd"),
        {1, 3, 5, 16}, coverage=0.65, types=_OLDER, company="02107107", national="100107",
    ),
    _org(("Carr-Gomm", "Carr Gomm Society", "Carr-Gomm Society Ltd"), {4, 5, 21},
         coverage=0.6, charity="254108", company="02108108"),
    _org(("Porchlight", "Porchlight Ltd"), {7, 19, 12, 21}, coverage=0.3, charity="254109", national="100109"),
    _org(
        ("Rethink", "Rethink Mental Illness", "RETHINK", "Rethink (National Schizophrenia Fellowship)"),
        {4, 11, 2}, coverage=0.9, charity="254110", company="02110110", national="100110",
    ),
    _org(("Anchor Trust", "Anchor Trust Ltd", "Anchor Housing Trust", "Anchor"), {1, 2, 3},
         coverage=0.65, types=_OLDER | {HIA}, charity="254111", national="100111"),
    _org(("Hanover Housing Association", "Hanover HA", "Hanover Housing Assoc"), {1, 3},
         coverage=0.5, types=_OLDER, charity="254112", national="100112"),
    _org(("Housing 21", "Housing21", "Housing 21 Ltd"), {1, 3}, coverage=0.5, types=_OLDER),
    _org(("Turning Point", "Turning Point Services Ltd"), {8, 9, 5},
         coverage=0.65, charity="254114", company="02114114", national="100114"),
    _org(("Nacro", "NACRO", "Nacro Community Enterprises"), {10, 11},
         coverage=0.65, charity="254115", company="02115115"),
    _org(("Southdown Housing Association", "Southdown HA", "Southdown Housing Assoc Ltd"), {4, 5, 12},
         coverage=0.3, company="02117117"),
    _org(("Salvation Army Housing Association", "SAHA", "The Salvation Army Housing Association"), {7, 16, 19},
         coverage=0.5, charity="254118", national="100118"),
    _org(("Terrence Higgins Trust", "The Terrence Higgins Trust"), {15}, coverage=0.35, charity="254119"),
    _org(("Migrant Helpline", "Migrant Helpline Ltd"), {17}, coverage=0.35, charity="254120"),
    _org(("Friends, Families and Travellers", "Friends Families & Travellers"), {20},
         coverage=0.35, charity="254121"),
)  # fmt: skip

# Export quirks, fixed per authority: about a third of systems never held the national provider id,
# and about a third drop the leading zero of company numbers, as spreadsheets do.
NO_NATIONAL_ID_SHARE = 1 / 3
DROPS_LEADING_ZERO_SHARE = 1 / 3


def no_national_id(authority_code: str) -> bool:
    """Whether this authority's exports leave the national provider id blank."""
    return _share("no-national-id", authority_code) < NO_NATIONAL_ID_SHARE


def drops_leading_zero(authority_code: str) -> bool:
    """Whether this authority's exports drop the leading zero of company numbers."""
    return _share("drops-leading-zero", authority_code) < DROPS_LEADING_ZERO_SHARE


# Local organisations, made per district: (name pattern, client groups, service types, registered as).
LOCAL_KINDS: tuple[tuple[str, frozenset[int], frozenset[ServiceType], str], ...] = (
    ("{place} Mind", frozenset({4, 2}), _HOUSING, "charity"),
    ("Age Concern {place}", frozenset({1, 2, 3}), frozenset({FS, HIA}), "charity"),
    ("{place} Women's Aid", frozenset({14}), _HOUSING, "charity"),
    ("Care & Repair {place}", frozenset({1, 6}), frozenset({HIA}), "charity"),
    ("{place} Churches Housing Association", frozenset({7, 16, 19}), _HOUSING, "company"),
    ("{place} Foyer Trust", frozenset({12, 13, 18}), _HOUSING, "charity"),
    ("{place} Housing Trust", frozenset({5, 6, 16, 21}), _HOUSING, "company"),
    ("{place} Night Shelter", frozenset({7, 19}), _HOUSING, "charity"),
    ("{place} Learning Disability Trust", frozenset({5}), _HOUSING, "charity"),
    ("{place} Recovery Project", frozenset({8, 9}), _HOUSING, "charity"),
)
_ALL_GROUPS = frozenset(vocabulary.CLIENT_GROUPS)


@dataclass
class _Provider:
    record: ProviderRecord
    groups: frozenset[int]
    types: frozenset[ServiceType]
    regional: bool = False
    fallback: bool = False  # serves anything, chosen only when no specialist can
    services: int = 0


def _local_numbers(authority_code: str, register: Register) -> tuple[int, int, int]:
    """Bases of disjoint per-authority ranges for invented charity, company and provider numbers."""
    index = list(register.authorities).index(authority_code)
    return 1_000_000 + index * 20_000, 4_000_000 + index * 100_000, 200_000 + index * 10_000


def _providers(info: Authority, rng: random.Random, register: Register) -> list[_Provider]:
    prefix = ref_prefix(info)
    providers: list[_Provider] = []

    def add(
        name: str,
        groups: frozenset[int],
        types: frozenset[ServiceType],
        *,
        regional: bool = False,
        national: str | None = None,
        charity: str | None = None,
        company: str | None = None,
    ) -> _Provider:
        record = ProviderRecord(f"{prefix}-P{len(providers) + 1:04d}", name, national, charity, company)
        providers.append(_Provider(record, groups, types, regional=regional))
        return providers[-1]

    no_national = no_national_id(info.code)
    for org in REGIONAL:
        if not org.works_for(info.code):
            continue
        company = org.company_number
        if company and drops_leading_zero(info.code):
            company = company.lstrip("0")
        national = None if no_national else org.national_provider_id
        add(
            org.spelt_by(info.code),
            org.groups,
            org.types,
            regional=True,
            national=national,
            charity=org.charity_number,
            company=company,
        )

    charity_base, company_base, national_base = _local_numbers(info.code, register)
    charities = iter(rng.sample(range(charity_base, charity_base + 20_000), 200))
    companies = iter(rng.sample(range(company_base, company_base + 100_000), 200))
    nationals = iter(rng.sample(range(national_base, national_base + 10_000), 400))

    def national_id(chance: float = 1.0) -> str | None:
        number = str(next(nationals))
        return None if no_national or rng.random() >= chance else number

    # Each district council runs its own alarm service and sheltered housing, and some run an HIA.
    for district in info.districts:
        add(f"{district.name} Council", frozenset({1}), frozenset({ACC, ALARM, HIA}), national=national_id())
    per_district = 3 if len(info.districts) > 1 else 7
    for district in info.districts:
        for pattern, groups, types, registered in rng.sample(LOCAL_KINDS, per_district):
            add(
                pattern.format(place=district.name),
                groups,
                types,
                charity=str(next(charities)) if registered == "charity" else None,
                company=f"{next(companies):08d}" if registered == "company" else None,
                national=national_id(0.7),
            )
    fallback = add(
        f"{info.name} Supported Housing Trust",
        _ALL_GROUPS,
        _HOUSING,
        company=f"{next(companies):08d}",
        national=national_id(),
    )
    fallback.fallback = True
    return providers


def _choose_provider(rng: random.Random, providers: list[_Provider], template: _Template) -> _Provider:
    able = [p for p in providers if template.service_type in p.types and template.client_group in p.groups]
    specialists = [p for p in able if not p.fallback]
    if specialists:
        able = specialists
    if not able:
        # Alarms and HIAs have a council in every district; this is only for a catalogue edit gone wrong.
        raise ValueError(f"no synthetic provider can run {template}")
    return rng.choice(able)


# ---------------------------------------------------------------------------------------------
# Generation.


def _pounds(value: float | Decimal) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class _Planned:
    template: _Template
    district: District
    provider: _Provider | None = None


def _plan(info: Authority, rng: random.Random, providers: list[_Provider]) -> list[_Planned]:
    """Which services the authority has: the fixed core first, then the weighted mix up to its size."""
    total = round(info.population / rng.uniform(*POPULATION_PER_SERVICE))
    districts = info.districts
    plan: list[_Planned] = []
    # Every district has a community alarm service (two in a unitary: the council's and a landlord's).
    for district in districts if len(districts) > 1 else districts * 2:
        plan.append(_Planned(COMMUNITY_ALARM, district))
    for i in range(max(1, math.ceil(len(districts) / 2))):
        plan.append(_Planned(HOME_IMPROVEMENT, districts[(2 * i) % len(districts)]))
    for _ in range(max(1, round(info.population / 200_000))):
        plan.append(_Planned(REFUGE, rng.choice(districts)))
    for group, district in _rare_services(info):
        plan.append(_Planned(RARE[group], district))
    groups = sorted({t.client_group for t in CATALOGUE})
    # Every common client group has at least one service in every authority big enough to have a
    # service for each (a small one, such as a unitary of 40,000 people, has the mix alone).
    for group in groups if total >= 2 * len(groups) else ():
        options = [t for t in CATALOGUE if t.client_group == group]
        plan.append(_Planned(rng.choices(options, weights=[t.weight for t in options])[0], rng.choice(districts)))
    # Every regional provider working here runs at least one service it specialises in, room allowing.
    # (The specialists in the small groups have none in the mix: they run the services placed above.)
    for provider in providers if total >= 2 * len(groups) else ():
        options = [t for t in CATALOGUE if t.client_group in provider.groups and t.service_type in provider.types]
        if provider.regional and options:
            choice = rng.choices(options, weights=[t.weight for t in options])[0]
            plan.append(_Planned(choice, rng.choice(districts), provider))
    weights = [t.weight for t in CATALOGUE]
    while len(plan) < total:
        plan.append(_Planned(rng.choices(CATALOGUE, weights=weights)[0], rng.choice(districts)))
    return plan


def _service(
    rng: random.Random, ref: str, planned: _Planned, provider: _Provider, place_label: str, letter: str
) -> tuple[ServiceRecord, Decimal]:
    """One service and its annual value at the start of its first contract."""
    t = planned.template
    units = rng.randint(*t.units)
    hours: float | None = None
    if t.service_type == FS:
        hours = round(units * rng.uniform(*HOURS_PER_HOUSEHOLD), 1)
        value = _pounds(round(rng.uniform(*FLOATING_SUPPORT_HOURLY_RATE), 2)) * Decimal(str(hours)) * 52
    else:
        value = _pounds(round(rng.uniform(*t.cost), 2)) * units * 52
    name = t.name.format(place=planned.district.name, stem=rng.choice(_STEMS), letter=letter)
    record = ServiceRecord(
        service_ref=ref,
        provider_ref=provider.record.provider_ref,
        name=name,
        district=place_label,
        service_type=t.service_type.value,
        client_group=t.client_group,
        units=units,
        unit_type=UNIT_TYPE_FOR[t.service_type].value,
        contracted_hours=hours,
        designated=rng.random() < t.designated,
        term=t.term.value,
    )
    return record, _pounds(value)


def _contracts(
    rng: random.Random, prefix: str, first_number: int, service: ServiceRecord, template: _Template, value: Decimal
) -> list[ContractRecord]:
    """The service's contracts: the first from 1 April 2003-2009 (now and then another month), each for
    1-5 years, renewed from the next day (usually) until the end of the SP era."""
    year = rng.randint(FIRST_START_YEAR, LAST_START_YEAR)
    start = date(year, 4, 1) if rng.random() < 0.8 else max(date(year, rng.randint(1, 12), 1), SP_ERA_START)
    low, high = _annual_value_range(service, template)
    contracts: list[ContractRecord] = []
    while True:
        end = min(date(start.year + rng.randint(1, 5), start.month, 1) - timedelta(days=1), SP_ERA_END)
        ref = f"{prefix}-C{first_number + len(contracts):05d}"
        contracts.append(ContractRecord(ref, service.service_ref, value, start, end))
        if end >= SP_ERA_END or rng.random() < 0.2:  # some services were decommissioned
            break
        start = end + timedelta(days=1)
        # Late-SP renewals were mostly flat or cut for efficiency; kept inside the domain's price range.
        value = min(max(_pounds(value * Decimal(str(round(rng.uniform(0.92, 1.03), 3)))), low), high)
    return contracts


def _annual_value_range(service: ServiceRecord, template: _Template) -> tuple[Decimal, Decimal]:
    """The annual value the domain's price range allows for this service (floating support: by the hour)."""
    if service.service_type == FS:
        assert service.contracted_hours is not None
        per_week, (low, high) = Decimal(str(service.contracted_hours)), FLOATING_SUPPORT_HOURLY_RATE
    else:
        per_week, (low, high) = Decimal(service.units), template.cost
    return _pounds(Decimal(str(low)) * per_week * 52), _pounds(Decimal(str(high)) * per_week * 52)


def generate(authority_code: str, *, seed: int, register: Register | None = None) -> SyntheticSupply:
    """The authority's synthetic providers, services and contracts, sized by its population in the
    `register` (default: the shipped 2011 list); the same seed, the same supply."""
    register = register or shipped_register()
    info = register.authority(authority_code)
    rng = random.Random(f"cagnet-synth:{authority_code}:{seed}")
    prefix = ref_prefix(info)
    providers = _providers(info, rng, register)
    plan = _plan(info, rng, providers)
    services: list[ServiceRecord] = []
    contracts: list[ContractRecord] = []
    refuges = 0
    for number, planned in enumerate(plan, start=1):
        provider = planned.provider or _choose_provider(rng, providers, planned.template)
        provider.services += 1
        letter = ""
        if planned.template is REFUGE:
            refuges += 1
            letter = chr(ord("A") + refuges - 1)
        # County exports name the district; a unitary's system holds the GSS code.
        place_label = planned.district.name if info.kind == "county" else planned.district.code
        service, value = _service(rng, f"{prefix}-S{number:05d}", planned, provider, place_label, letter)
        services.append(service)
        contracts.extend(_contracts(rng, prefix, len(contracts) + 1, service, planned.template, value))
    used = [p.record for p in providers if p.services]
    return SyntheticSupply(authority_code, seed, tuple(used), tuple(services), tuple(contracts))


# ---------------------------------------------------------------------------------------------
# CSV files and loading through the importer.


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def write_csvs(supply: SyntheticSupply, directory: Path) -> dict[str, Path]:
    """providers.csv, services.csv and contracts.csv in the importer's format; returns kind -> path."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, records in (
        ("providers", supply.providers),
        ("services", supply.services),
        ("contracts", supply.contracts),
    ):
        # The importer's columns that the records have (services carry no dates of their own).
        names = {f.name for f in fields(records[0])} if records else set()
        columns = [c for c in COLUMNS[kind].all if c in names]
        path = directory / f"{kind}.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            writer = SafeWriter(f)
            writer.writerow(columns)
            for record in records:
                row = dict(zip((f.name for f in fields(record)), astuple(record), strict=True))
                writer.writerow([_cell(row[c]) for c in columns])
        paths[kind] = path
    return paths


@dataclass(frozen=True)
class LoadSummary:
    providers: ImportSummary
    services: ImportSummary
    contracts: ImportSummary
    client_records: ImportSummary | None = None  # None when client records were not loaded
    outcomes: ImportSummary | None = None
    kpi1_returns: ImportSummary | None = None
    occupancy_returns: ImportSummary | None = None

    def __str__(self) -> str:
        parts = (
            self.providers,
            self.services,
            self.contracts,
            self.kpi1_returns,
            self.occupancy_returns,
            self.client_records,
            self.outcomes,
        )
        return "; ".join(str(s) for s in parts if s is not None)


def load(
    engine: Engine,
    *,
    authority_code: str,
    seed: int,
    person_key: bytes | None = None,
    clients: int | None = None,
    with_clients: bool = True,
    network_seed: int = 0,
    register: Register | None = None,
    members: Sequence[str] = (),
) -> LoadSummary:
    """Generate the authority's synthetic supply and its services' quarterly KPI 1 and occupancy
    returns and import them through the same importers as real files; then, given the node's
    `person_key`, its client records and outcomes (`node.synth_clients`): `clients` of them
    (default: the realistic volume), or none when `with_clients` is false. Without a person key
    only the supply and returns are loaded: records sealed under any other key would be useless to
    the node. `register` is the network's authority register (default: the shipped list) and
    `members` the network's member authorities, who share repeat movers
    (`node.synth_clients.repeat_movers`): give every node the same list."""
    ensure_authority(engine, authority_code=authority_code, register=register)
    supply = generate(authority_code, seed=seed, register=register)
    with tempfile.TemporaryDirectory(prefix="cagnet-synth-") as tmp:
        paths = write_csvs(supply, Path(tmp))
        summary = LoadSummary(
            providers=import_csv(engine, kind="providers", path=paths["providers"]),
            services=import_csv(engine, kind="services", path=paths["services"]),
            contracts=import_csv(engine, kind="contracts", path=paths["contracts"]),
        )
        # The services' quarterly returns need no person key: they count, and name no one.
        returns = synth_returns.write_return_csvs(supply, Path(tmp))
        summary = replace(
            summary,
            kpi1_returns=import_returns(engine, kind=KPI1_RETURNS, path=returns[KPI1_RETURNS]),
            occupancy_returns=import_returns(engine, kind=OCCUPANCY_RETURNS, path=returns[OCCUPANCY_RETURNS]),
        )
        if not with_clients or person_key is None:
            return summary
        files = synth_clients.write_client_csvs(
            supply, Path(tmp), count=clients, network_seed=network_seed, members=members, register=register
        )
        records = import_client_records(
            engine, path=files["client-records"], sealer=PersonSealer(person_key), register=register
        )
        outcomes = import_outcomes(engine, path=files["outcomes"])
    return replace(summary, client_records=records, outcomes=outcomes)
