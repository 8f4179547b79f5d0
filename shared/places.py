"""England's upper-tier local authorities in 2011 (GSS codes, names, regions), so that a client's
previous authority anywhere in England can be checked, named and grouped by region.

Covers every unitary (E06), metropolitan district (E08), London borough (E09) and county (E10) as
they stood in 2011, plus the districts of the CAG's counties (`shared.vocabulary.AUTHORITIES`),
each mapped to its county. Codes are 2011's: Northumberland is E06000048 and Gateshead E08000020
(both recoded in 2013). Other counties' districts (E07) are not listed: an SP client record names
the administering authority, and the CAG's own exports are the ones that name a district.
"""

from __future__ import annotations

from shared.vocabulary import AUTHORITIES, REGIONS

__all__ = ["UPPER_TIER", "is_known", "place_name", "region_of", "upper_tier"]

NE, NW, YH, EM, WM, EE, LDN, SE, SW = (f"E1200000{n}" for n in range(1, 10))  # in REGIONS' order

# code: (name, region code)
UPPER_TIER: dict[str, tuple[str, str]] = {
    # Unitary authorities.
    "E06000001": ("Hartlepool", NE),
    "E06000002": ("Middlesbrough", NE),
    "E06000003": ("Redcar and Cleveland", NE),
    "E06000004": ("Stockton-on-Tees", NE),
    "E06000005": ("Darlington", NE),
    "E06000006": ("Halton", NW),
    "E06000007": ("Warrington", NW),
    "E06000008": ("Blackburn with Darwen", NW),
    "E06000009": ("Blackpool", NW),
    "E06000010": ("Kingston upon Hull", YH),
    "E06000011": ("East Riding of Yorkshire", YH),
    "E06000012": ("North East Lincolnshire", YH),
    "E06000013": ("North Lincolnshire", YH),
    "E06000014": ("York", YH),
    "E06000015": ("Derby", EM),
    "E06000016": ("Leicester", EM),
    "E06000017": ("Rutland", EM),
    "E06000018": ("Nottingham", EM),
    "E06000019": ("Herefordshire", WM),
    "E06000020": ("Telford and Wrekin", WM),
    "E06000021": ("Stoke-on-Trent", WM),
    "E06000022": ("Bath and North East Somerset", SW),
    "E06000023": ("Bristol", SW),
    "E06000024": ("North Somerset", SW),
    "E06000025": ("South Gloucestershire", SW),
    "E06000026": ("Plymouth", SW),
    "E06000027": ("Torbay", SW),
    "E06000028": ("Bournemouth", SW),
    "E06000029": ("Poole", SW),
    "E06000030": ("Swindon", SW),
    "E06000031": ("Peterborough", EE),
    "E06000032": ("Luton", EE),
    "E06000033": ("Southend-on-Sea", EE),
    "E06000034": ("Thurrock", EE),
    "E06000035": ("Medway", SE),
    "E06000036": ("Bracknell Forest", SE),
    "E06000037": ("West Berkshire", SE),
    "E06000038": ("Reading", SE),
    "E06000039": ("Slough", SE),
    "E06000040": ("Windsor and Maidenhead", SE),
    "E06000041": ("Wokingham", SE),
    "E06000042": ("Milton Keynes", SE),
    "E06000043": ("Brighton and Hove", SE),
    "E06000044": ("Portsmouth", SE),
    "E06000045": ("Southampton", SE),
    "E06000046": ("Isle of Wight", SE),
    "E06000047": ("County Durham", NE),
    "E06000048": ("Northumberland", NE),
    "E06000049": ("Cheshire East", NW),
    "E06000050": ("Cheshire West and Chester", NW),
    "E06000051": ("Shropshire", WM),
    "E06000052": ("Cornwall", SW),
    "E06000053": ("Isles of Scilly", SW),
    "E06000054": ("Wiltshire", SW),
    "E06000055": ("Bedford", EE),
    "E06000056": ("Central Bedfordshire", EE),
    # Metropolitan districts.
    "E08000001": ("Bolton", NW),
    "E08000002": ("Bury", NW),
    "E08000003": ("Manchester", NW),
    "E08000004": ("Oldham", NW),
    "E08000005": ("Rochdale", NW),
    "E08000006": ("Salford", NW),
    "E08000007": ("Stockport", NW),
    "E08000008": ("Tameside", NW),
    "E08000009": ("Trafford", NW),
    "E08000010": ("Wigan", NW),
    "E08000011": ("Knowsley", NW),
    "E08000012": ("Liverpool", NW),
    "E08000013": ("St. Helens", NW),
    "E08000014": ("Sefton", NW),
    "E08000015": ("Wirral", NW),
    "E08000016": ("Barnsley", YH),
    "E08000017": ("Doncaster", YH),
    "E08000018": ("Rotherham", YH),
    "E08000019": ("Sheffield", YH),
    "E08000020": ("Gateshead", NE),
    "E08000021": ("Newcastle upon Tyne", NE),
    "E08000022": ("North Tyneside", NE),
    "E08000023": ("South Tyneside", NE),
    "E08000024": ("Sunderland", NE),
    "E08000025": ("Birmingham", WM),
    "E08000026": ("Coventry", WM),
    "E08000027": ("Dudley", WM),
    "E08000028": ("Sandwell", WM),
    "E08000029": ("Solihull", WM),
    "E08000030": ("Walsall", WM),
    "E08000031": ("Wolverhampton", WM),
    "E08000032": ("Bradford", YH),
    "E08000033": ("Calderdale", YH),
    "E08000034": ("Kirklees", YH),
    "E08000035": ("Leeds", YH),
    "E08000036": ("Wakefield", YH),
    # London boroughs (and the City).
    "E09000001": ("City of London", LDN),
    "E09000002": ("Barking and Dagenham", LDN),
    "E09000003": ("Barnet", LDN),
    "E09000004": ("Bexley", LDN),
    "E09000005": ("Brent", LDN),
    "E09000006": ("Bromley", LDN),
    "E09000007": ("Camden", LDN),
    "E09000008": ("Croydon", LDN),
    "E09000009": ("Ealing", LDN),
    "E09000010": ("Enfield", LDN),
    "E09000011": ("Greenwich", LDN),
    "E09000012": ("Hackney", LDN),
    "E09000013": ("Hammersmith and Fulham", LDN),
    "E09000014": ("Haringey", LDN),
    "E09000015": ("Harrow", LDN),
    "E09000016": ("Havering", LDN),
    "E09000017": ("Hillingdon", LDN),
    "E09000018": ("Hounslow", LDN),
    "E09000019": ("Islington", LDN),
    "E09000020": ("Kensington and Chelsea", LDN),
    "E09000021": ("Kingston upon Thames", LDN),
    "E09000022": ("Lambeth", LDN),
    "E09000023": ("Lewisham", LDN),
    "E09000024": ("Merton", LDN),
    "E09000025": ("Newham", LDN),
    "E09000026": ("Redbridge", LDN),
    "E09000027": ("Richmond upon Thames", LDN),
    "E09000028": ("Southwark", LDN),
    "E09000029": ("Sutton", LDN),
    "E09000030": ("Tower Hamlets", LDN),
    "E09000031": ("Waltham Forest", LDN),
    "E09000032": ("Wandsworth", LDN),
    "E09000033": ("Westminster", LDN),
    # Counties (two-tier areas) as they stood in 2011.
    "E10000002": ("Buckinghamshire", SE),
    "E10000003": ("Cambridgeshire", EE),
    "E10000006": ("Cumbria", NW),
    "E10000007": ("Derbyshire", EM),
    "E10000008": ("Devon", SW),
    "E10000009": ("Dorset", SW),
    "E10000011": ("East Sussex", SE),
    "E10000012": ("Essex", EE),
    "E10000013": ("Gloucestershire", SW),
    "E10000014": ("Hampshire", SE),
    "E10000015": ("Hertfordshire", EE),
    "E10000016": ("Kent", SE),
    "E10000017": ("Lancashire", NW),
    "E10000018": ("Leicestershire", EM),
    "E10000019": ("Lincolnshire", EM),
    "E10000020": ("Norfolk", EE),
    "E10000021": ("Northamptonshire", EM),
    "E10000023": ("North Yorkshire", YH),
    "E10000024": ("Nottinghamshire", EM),
    "E10000025": ("Oxfordshire", SE),
    "E10000027": ("Somerset", SW),
    "E10000028": ("Staffordshire", WM),
    "E10000029": ("Suffolk", EE),
    "E10000030": ("Surrey", SE),
    "E10000031": ("Warwickshire", WM),
    "E10000032": ("West Sussex", SE),
    "E10000034": ("Worcestershire", WM),
}
"""Every upper-tier authority in England in 2011: code -> (name, region code)."""

# A CAG county's district -> (district name, county code). A unitary is its own single district.
_CAG_DISTRICTS: dict[str, tuple[str, str]] = {
    d.code: (d.name, a.code) for a in AUTHORITIES.values() if a.kind == "county" for d in a.districts
}


def _unknown(code: str) -> KeyError:
    return KeyError(f"{code!r} is not a known English upper-tier authority or CAG district GSS code (2011)")


def is_known(code: str) -> bool:
    """Whether `code` is an upper-tier authority or a CAG county's district."""
    return code in UPPER_TIER or code in _CAG_DISTRICTS


def upper_tier(code: str) -> str:
    """The upper-tier authority: a CAG district's county, or an upper-tier code itself."""
    if code in UPPER_TIER:
        return code
    if code in _CAG_DISTRICTS:
        return _CAG_DISTRICTS[code][1]
    raise _unknown(code)


def region_of(code: str) -> str:
    """The region code (E12000001-E12000009) of an upper-tier authority or a CAG district."""
    return UPPER_TIER[upper_tier(code)][1]


def place_name(code: str) -> str:
    """The name of an upper-tier authority, a CAG district or a region."""
    if code in UPPER_TIER:
        return UPPER_TIER[code][0]
    if code in _CAG_DISTRICTS:
        return _CAG_DISTRICTS[code][0]
    if code in REGIONS:
        return REGIONS[code]
    raise _unknown(code)
