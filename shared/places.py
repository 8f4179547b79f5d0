"""Places in England a client's previous authority may name: upper-tier authorities, the districts a
register lists for its counties, and regions. So that an origin anywhere in England can be checked,
named and grouped by region.

Everything comes from an authority register (`shared.authorities`): the network's signed one where
the caller has it, else the shipped 2011 list. A district of a county whose districts the register
does not list is not known here: an SP client record names the administering authority, and a
county's own exports are the ones that name a district.
"""

from __future__ import annotations

from shared.authorities import Register, regions, shipped_register

__all__ = ["REGIONS", "is_known", "place_name", "region_of", "upper_tier"]

REGIONS: dict[str, str] = regions()
"""England's nine regions: GSS code -> name."""


def _unknown(code: str) -> KeyError:
    return KeyError(f"{code!r} is not a known English upper-tier authority or listed district GSS code (2011)")


def is_known(code: str, register: Register | None = None) -> bool:
    """Whether `code` is an upper-tier authority or a listed county district."""
    register = register or shipped_register()
    return code in register or register.county_of(code) is not None


def upper_tier(code: str, register: Register | None = None) -> str:
    """The upper-tier authority: a listed district's county, or an upper-tier code itself."""
    register = register or shipped_register()
    if code in register:
        return code
    county = register.county_of(code)
    if county is None:
        raise _unknown(code)
    return county


def region_of(code: str, register: Register | None = None) -> str:
    """The region code of an upper-tier authority or a listed district."""
    register = register or shipped_register()
    return register.authority(upper_tier(code, register)).region


def place_name(code: str, register: Register | None = None) -> str:
    """The name of an upper-tier authority, a listed district or a region."""
    register = register or shipped_register()
    if code in register:
        return register.authority(code).name
    county = register.county_of(code)
    if county is not None:
        return next(d.name for d in register.authority(county).listed_districts if d.code == code)
    if code in REGIONS:
        return REGIONS[code]
    raise _unknown(code)
