"""England's 2011 upper-tier authorities in the shipped register: every code present once, of its
kind, in the right region, with a population; listed districts mapped to their county."""

from __future__ import annotations

from collections import Counter

import pytest

from shared import places
from shared.authorities import shipped_register
from tests.sixutil import AUTHORITIES

REGIONS = places.REGIONS
SOUTH_EAST = "E12000008"
UPPER_TIER = shipped_register().authorities

COUNTIES_2011 = (2, 3, 6, 7, 8, 9, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 23, 24, 25, 27, 28, 29, 30, 31, 32, 34)


def test_every_upper_tier_code_of_2011_and_no_other() -> None:
    expected = (
        {f"E06{n:06d}" for n in range(1, 57)}
        | {f"E08{n:06d}" for n in range(1, 37)}
        | {f"E09{n:06d}" for n in range(1, 34)}
        | {f"E10{n:06d}" for n in COUNTIES_2011}
    )
    assert set(UPPER_TIER) == expected
    assert len(expected) == 152  # "about 152 top-tier councils" (domain.md)
    kinds = Counter(a.kind for a in UPPER_TIER.values())
    assert kinds == {"unitary": 56, "metropolitan-district": 36, "london-borough": 33, "county": 27}


def test_populations_add_up_to_england_in_2011() -> None:
    # Census 2011: 53.0 million usual residents in England; the register's figures are rounded.
    total = sum(a.population for a in UPPER_TIER.values())
    assert 52_500_000 <= total <= 53_500_000
    london = sum(a.population for a in UPPER_TIER.values() if a.region == "E12000007")
    assert 8_000_000 <= london <= 8_400_000
    # The six CAG authorities together: about 4.5m (domain.md).
    assert 4_300_000 <= sum(a.population for a in AUTHORITIES.values()) <= 4_700_000


def test_regions_hold_the_authorities_they_should() -> None:
    by_region = Counter(a.region for a in UPPER_TIER.values())
    assert set(by_region) == set(REGIONS)
    # London: 32 boroughs and the City. North East: 7 unitaries and 5 Tyne and Wear districts.
    assert by_region["E12000007"] == 33
    assert by_region["E12000001"] == 12
    assert by_region["E12000008"] == 19  # 12 unitaries and 7 counties (Surrey, Kent, the Sussexes among them)


@pytest.mark.parametrize(
    ("code", "name", "region"),
    [
        ("E06000035", "Medway", "E12000008"),
        ("E06000043", "Brighton & Hove", "E12000008"),
        ("E06000048", "Northumberland", "E12000001"),
        ("E06000042", "Milton Keynes", "E12000008"),
        ("E06000055", "Bedford", "E12000006"),
        ("E08000020", "Gateshead", "E12000001"),
        ("E08000016", "Barnsley", "E12000003"),
        ("E08000019", "Sheffield", "E12000003"),
        ("E08000025", "Birmingham", "E12000005"),
        ("E08000031", "Wolverhampton", "E12000005"),
        ("E08000032", "Bradford", "E12000003"),
        ("E08000036", "Wakefield", "E12000003"),
        ("E09000008", "Croydon", "E12000007"),
        ("E10000016", "Kent", "E12000008"),
        ("E10000023", "North Yorkshire", "E12000003"),
        ("E10000034", "Worcestershire", "E12000005"),
    ],
)
def test_names_and_regions(code: str, name: str, region: str) -> None:
    assert places.place_name(code) == name
    assert places.region_of(code) == region
    assert places.upper_tier(code) == code
    assert places.is_known(code)


def test_listed_districts_map_to_their_county() -> None:
    for authority in AUTHORITIES.values():
        for district in authority.listed_districts:
            assert places.upper_tier(district.code) == authority.code
            assert places.region_of(district.code) == SOUTH_EAST
            assert places.place_name(district.code) == district.name
    assert places.upper_tier("E07000110") == "E10000016"  # Maidstone, Kent
    assert places.upper_tier("E07000226") == "E10000032"  # Crawley, West Sussex
    assert places.upper_tier("E07000084") == "E10000014"  # Basingstoke and Deane, Hampshire


def test_a_county_without_listed_districts_is_its_own_one_district() -> None:
    cumbria = shipped_register().authority("E10000006")
    assert cumbria.kind == "county" and not cumbria.listed_districts
    assert [(d.code, d.name) for d in cumbria.districts] == [("E10000006", "Cumbria")]
    assert not places.is_known("E07000028")  # Carlisle: its county's districts are not listed


@pytest.mark.parametrize("code", ["E07000001", "E10000001", "E06000057", "E09000034", "W06000015", "", "e06000035"])
def test_unknown_codes_are_refused_by_name(code: str) -> None:
    assert not places.is_known(code)
    for lookup in (places.region_of, places.upper_tier, places.place_name):
        with pytest.raises(KeyError, match=repr(code)):
            lookup(code)


def test_a_region_has_a_name_but_is_not_a_place_of_origin() -> None:
    assert places.place_name("E12000007") == "London"
    assert not places.is_known("E12000007")
