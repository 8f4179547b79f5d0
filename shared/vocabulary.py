"""The Supporting People vocabulary cagnet speaks: client groups, service types, unit types,
and the authorities of the South East Cross Authority Group with their districts.

Codes follow the SP client record (client groups 1-21) and 2011 GSS codes. Populations are
rounded working figures, kept here so that synthetic data and per-1,000 rates agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

CLIENT_GROUPS: dict[int, str] = {
    1: "Older people with support needs",
    2: "Older people with mental health problems/dementia",
    3: "Frail elderly",
    4: "People with mental health problems",
    5: "People with learning disabilities",
    6: "People with a physical or sensory disability",
    7: "Single homeless with support needs",
    8: "People with alcohol problems",
    9: "People with drug problems",
    10: "Offenders or people at risk of offending",
    11: "Mentally disordered offenders",
    12: "Young people at risk",
    13: "Young people leaving care",
    14: "Women at risk of domestic violence",
    15: "People with HIV/AIDS",
    16: "Homeless families with support needs",
    17: "Refugees",
    18: "Teenage parents",
    19: "Rough sleepers",
    20: "Travellers",
    21: "Generic / complex needs",
}

# Groups whose figures are safety-critical or very small; the disclosure policy treats them strictly.
DOMESTIC_VIOLENCE = 14
REFUGEES = 17


class ServiceType(StrEnum):
    ACCOMMODATION_BASED = "accommodation-based"
    FLOATING_SUPPORT = "floating-support"
    COMMUNITY_ALARM = "community-alarm"
    HOME_IMPROVEMENT_AGENCY = "home-improvement-agency"
    OUTREACH = "outreach"
    RESETTLEMENT = "resettlement"
    ACCOMMODATION_WITH_FLOATING_SUPPORT = "accommodation-with-floating-support"


class UnitType(StrEnum):
    BED_SPACES = "bed-spaces"  # bed-spaces or flats in accommodation-based services
    HOUSEHOLDS = "households"  # households supported at once (floating support, outreach, resettlement)
    DWELLINGS = "dwellings"  # connected dwellings for community alarms
    CASES_PER_YEAR = "cases-per-year"  # home improvement agencies


UNIT_TYPE_FOR: dict[ServiceType, UnitType] = {
    ServiceType.ACCOMMODATION_BASED: UnitType.BED_SPACES,
    ServiceType.FLOATING_SUPPORT: UnitType.HOUSEHOLDS,
    ServiceType.COMMUNITY_ALARM: UnitType.DWELLINGS,
    ServiceType.HOME_IMPROVEMENT_AGENCY: UnitType.CASES_PER_YEAR,
    ServiceType.OUTREACH: UnitType.HOUSEHOLDS,
    ServiceType.RESETTLEMENT: UnitType.HOUSEHOLDS,
    ServiceType.ACCOMMODATION_WITH_FLOATING_SUPPORT: UnitType.BED_SPACES,
}


class Term(StrEnum):
    SHORT = "short"  # 28 days to 2 years
    LONG = "long"  # over 2 years


@dataclass(frozen=True)
class District:
    code: str
    name: str


@dataclass(frozen=True)
class Authority:
    code: str
    name: str
    kind: str  # "county" or "unitary"
    population: int
    districts: tuple[District, ...]


def _d(*pairs: tuple[str, str]) -> tuple[District, ...]:
    return tuple(District(code, name) for code, name in pairs)


SOUTH_EAST = "E12000008"

AUTHORITIES: dict[str, Authority] = {
    a.code: a
    for a in [
        Authority(
            "E10000016",
            "Kent",
            "county",
            1_400_000,
            _d(
                ("E07000105", "Ashford"),
                ("E07000106", "Canterbury"),
                ("E07000107", "Dartford"),
                ("E07000108", "Dover"),
                ("E07000109", "Gravesham"),
                ("E07000110", "Maidstone"),
                ("E07000111", "Sevenoaks"),
                ("E07000112", "Shepway"),
                ("E07000113", "Swale"),
                ("E07000114", "Thanet"),
                ("E07000115", "Tonbridge and Malling"),
                ("E07000116", "Tunbridge Wells"),
            ),
        ),
        Authority("E06000035", "Medway", "unitary", 260_000, _d(("E06000035", "Medway"))),
        Authority(
            "E10000030",
            "Surrey",
            "county",
            1_100_000,
            _d(
                ("E07000207", "Elmbridge"),
                ("E07000208", "Epsom and Ewell"),
                ("E07000209", "Guildford"),
                ("E07000210", "Mole Valley"),
                ("E07000211", "Reigate and Banstead"),
                ("E07000212", "Runnymede"),
                ("E07000213", "Spelthorne"),
                ("E07000214", "Surrey Heath"),
                ("E07000215", "Tandridge"),
                ("E07000216", "Waverley"),
                ("E07000217", "Woking"),
            ),
        ),
        Authority(
            "E10000032",
            "West Sussex",
            "county",
            800_000,
            _d(
                ("E07000223", "Adur"),
                ("E07000224", "Arun"),
                ("E07000225", "Chichester"),
                ("E07000226", "Crawley"),
                ("E07000227", "Horsham"),
                ("E07000228", "Mid Sussex"),
                ("E07000229", "Worthing"),
            ),
        ),
        Authority(
            "E10000011",
            "East Sussex",
            "county",
            500_000,
            _d(
                ("E07000061", "Eastbourne"),
                ("E07000062", "Hastings"),
                ("E07000063", "Lewes"),
                ("E07000064", "Rother"),
                ("E07000065", "Wealden"),
            ),
        ),
        Authority("E06000043", "Brighton & Hove", "unitary", 260_000, _d(("E06000043", "Brighton and Hove"))),
    ]
}

REGIONS: dict[str, str] = {
    "E12000001": "North East",
    "E12000002": "North West",
    "E12000003": "Yorkshire and The Humber",
    "E12000004": "East Midlands",
    "E12000005": "West Midlands",
    "E12000006": "East of England",
    "E12000007": "London",
    "E12000008": "South East",
    "E12000009": "South West",
}

# An English local authority or county GSS code (E06 unitary, E07 district, E08 metropolitan,
# E09 London borough, E10 county). Codes outside the network are normal for client origins.
GSS_AUTHORITY = re.compile(r"^E(06|07|08|09|10)\d{6}$")


def is_authority_code(code: str) -> bool:
    return bool(GSS_AUTHORITY.match(code))


def authority(code: str) -> Authority:
    """The CAG authority with this GSS code; KeyError names the code when it is not one."""
    try:
        return AUTHORITIES[code]
    except KeyError:
        raise KeyError(f"{code!r} is not an authority of the South East CAG") from None
