"""The Supporting People vocabulary cagnet speaks: client groups, service types, unit types, and
the shapes of GSS codes.

Codes follow the SP client record (client groups 1-21) and 2011 GSS codes. Which authorities,
districts and regions exist, and their populations, is reference data (`shared.authorities`).
"""

from __future__ import annotations

import re
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


# An English local authority or county GSS code (E06 unitary, E07 district, E08 metropolitan,
# E09 London borough, E10 county). Codes outside the network are normal for client origins.
GSS_AUTHORITY = re.compile(r"^E(06|07|08|09|10)\d{6}$")


def is_authority_code(code: str) -> bool:
    return bool(GSS_AUTHORITY.match(code))


# An upper-tier authority that administered Supporting People: unitary, metropolitan district,
# London borough or county.
GSS_UPPER_TIER = re.compile(r"^E(06|08|09|10)\d{6}$")
GSS_DISTRICT = re.compile(r"^E07\d{6}$")  # a shire district inside a county
GSS_REGION = re.compile(r"^E12\d{6}$")
