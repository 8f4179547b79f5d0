"""The supply map on each backend: exact cells for a small hand-made authority, district splits that
add up to the totals, and the same map from SQLite and PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from node.answers.supply import RawCell, RawSupply, contract_values, supply_map
from node.store import add_contract, add_provider, add_service, ensure_authority, open_store
from node.synthetic.supply import generate, load
from shared.errors import NotFound
from shared.vocabulary import ServiceType, Term
from tests.sixutil import AUTHORITIES

KENT, BRIGHTON = "E10000016", "E06000043"
CANTERBURY, THANET = "E07000106", "E07000114"
ACC, FS, ALARM = ServiceType.ACCOMMODATION_BASED, ServiceType.FLOATING_SUPPORT, ServiceType.COMMUNITY_ALARM

# (ref, provider, group, type, district, units, designated, hours)
SMALL_KENT = [
    ("KCC-S00001", "KCC-P0001", 7, ACC, CANTERBURY, 24, False, None),  # hostel
    ("KCC-S00002", "KCC-P0002", 7, ACC, THANET, 16, True, None),  # direct access, designated
    ("KCC-S00003", "KCC-P0001", 7, FS, CANTERBURY, 60, False, 120.5),
    ("KCC-S00004", "KCC-P0002", 7, FS, CANTERBURY, 40, True, 80.25),
    ("KCC-S00005", "KCC-P0002", 14, ACC, THANET, 8, True, None),  # refuges
    ("KCC-S00006", "KCC-P0002", 14, ACC, CANTERBURY, 6, True, None),
    ("KCC-S00007", "KCC-P0003", 1, ALARM, THANET, 1850, False, None),
    ("KCC-S00008", "KCC-P0003", 1, ACC, THANET, 40, False, None),  # sheltered schemes
    ("KCC-S00009", "KCC-P0003", 1, ACC, THANET, 32, False, None),
]


@pytest.fixture
def small_kent(engine: Engine) -> Engine:
    ensure_authority(engine, authority_code=KENT)
    for ref, name in (("KCC-P0001", "Porchlight"), ("KCC-P0002", "Home Group Ltd"), ("KCC-P0003", "Thanet Council")):
        add_provider(engine, provider_ref=ref, name=name)
    for ref, provider, group, service_type, district, units, designated, hours in SMALL_KENT:
        add_service(
            engine,
            service_ref=ref,
            provider_ref=provider,
            name=f"service {ref}",
            district_code=district,
            service_type=service_type,
            client_group=group,
            units=units,
            term=Term.LONG if group == 1 else Term.SHORT,
            designated=designated,
            contracted_hours=hours,
        )
    return engine


def cell(group: int, service_type: ServiceType, unit_type: str, *counts: float, district: str = "") -> RawCell:
    services, units, designated_services, designated_units, hours = counts
    return RawCell(
        client_group=group,
        service_type=service_type.value,
        district=district,
        unit_type=unit_type,
        services=int(services),
        units=int(units),
        designated_services=int(designated_services),
        designated_units=int(designated_units),
        contracted_hours=hours,
    )


def test_the_authority_totals_match_a_hand_count(small_kent: Engine) -> None:
    result = supply_map(small_kent, authority_code=KENT, by_district=False)

    assert result == RawSupply(
        authority=KENT,
        population=AUTHORITIES[KENT].population,
        by_district=False,
        cells=(
            cell(1, ACC, "bed-spaces", 2, 72, 0, 0, 0.0),
            cell(1, ALARM, "dwellings", 1, 1850, 0, 0, 0.0),
            cell(7, ACC, "bed-spaces", 2, 40, 1, 16, 0.0),
            cell(7, FS, "households", 2, 100, 1, 40, 200.75),
            cell(14, ACC, "bed-spaces", 2, 14, 2, 14, 0.0),
        ),
    )


def test_the_district_split_matches_a_hand_count(small_kent: Engine) -> None:
    result = supply_map(small_kent, authority_code=KENT, by_district=True)

    assert result.by_district
    assert result.cells == (
        cell(1, ACC, "bed-spaces", 2, 72, 0, 0, 0.0, district=THANET),
        cell(1, ALARM, "dwellings", 1, 1850, 0, 0, 0.0, district=THANET),
        cell(7, ACC, "bed-spaces", 1, 24, 0, 0, 0.0, district=CANTERBURY),
        cell(7, ACC, "bed-spaces", 1, 16, 1, 16, 0.0, district=THANET),
        cell(7, FS, "households", 2, 100, 1, 40, 200.75, district=CANTERBURY),
        cell(14, ACC, "bed-spaces", 1, 6, 1, 6, 0.0, district=CANTERBURY),
        cell(14, ACC, "bed-spaces", 1, 8, 1, 8, 0.0, district=THANET),
    )


def test_synthetic_supply_totals_match_the_generated_records_and_districts_add_up(engine: Engine) -> None:
    load(engine, authority_code=KENT, seed=3)
    totals = supply_map(engine, authority_code=KENT, by_district=False)
    split = supply_map(engine, authority_code=KENT, by_district=True)

    # The totals are what the generated records say, counted here independently of the database.
    expected: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0.0])
    for s in generate(KENT, seed=3).services:
        row = expected[(s.client_group, s.service_type)]
        row[0] += 1
        row[1] += s.units
        row[2] += s.designated
        row[3] += s.units if s.designated else 0
        row[4] += s.contracted_hours or 0.0
    assert [(c.client_group, c.service_type) for c in totals.cells] == sorted(expected)
    for c in totals.cells:
        services, units, designated, designated_units, hours = expected[(c.client_group, c.service_type)]
        assert (c.services, c.units, c.designated_services, c.designated_units) == (
            services,
            units,
            designated,
            designated_units,
        )
        assert c.contracted_hours == pytest.approx(hours, abs=0.01)

    # Every district split adds up to its total, on every measure.
    summed: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0, 0, 0, 0.0])
    districts = {d.code for d in AUTHORITIES[KENT].districts}
    for c in split.cells:
        assert c.district in districts
        row = summed[(c.client_group, c.service_type)]
        for i, value in enumerate((c.services, c.units, c.designated_services, c.designated_units, c.contracted_hours)):
            row[i] += value
    for c in totals.cells:
        services, units, designated, designated_units, hours = summed[(c.client_group, c.service_type)]
        assert (services, units, designated, designated_units) == (
            c.services,
            c.units,
            c.designated_services,
            c.designated_units,
        )
        assert hours == pytest.approx(c.contracted_hours, abs=0.01 * len(districts))
    assert len(split.cells) > len(totals.cells)
    keys = [(c.client_group, c.service_type, c.district) for c in split.cells]
    assert keys == sorted(keys)


def test_an_authority_with_no_services_has_an_empty_map(engine: Engine) -> None:
    ensure_authority(engine, authority_code=BRIGHTON)
    result = supply_map(engine, authority_code=BRIGHTON, by_district=True)
    assert result == RawSupply(
        authority=BRIGHTON, population=AUTHORITIES[BRIGHTON].population, by_district=True, cells=()
    )


def test_an_authority_the_store_does_not_hold_is_not_found(small_kent: Engine) -> None:
    with pytest.raises(NotFound):
        supply_map(small_kent, authority_code=BRIGHTON, by_district=False)


@pytest.mark.postgres
def test_sqlite_and_postgresql_give_the_same_map(postgres_url: str, tmp_path: Path) -> None:
    maps = []
    for url in (f"sqlite:///{tmp_path}/node.db", postgres_url):
        engine = open_store(url)
        try:
            load(engine, authority_code=BRIGHTON, seed=4)
            maps.append(
                (
                    supply_map(engine, authority_code=BRIGHTON, by_district=False),
                    supply_map(engine, authority_code=BRIGHTON, by_district=True),
                )
            )
        finally:
            engine.dispose()
    assert maps[0] == maps[1]


def test_a_client_group_filter_selects_only_those_groups(small_kent: Engine) -> None:
    result = supply_map(small_kent, authority_code=KENT, by_district=False, client_groups=[14, 7])
    assert [c.key for c in result.cells] == [(7, ACC.value, ""), (7, FS.value, ""), (14, ACC.value, "")]


def test_contract_money_takes_each_services_latest_contract_by_provider(small_kent: Engine) -> None:
    from datetime import date
    from decimal import Decimal

    contracts = [
        ("KCC-C1", "KCC-S00001", "180000.00", date(2004, 4, 1), date(2007, 3, 31)),
        ("KCC-C2", "KCC-S00001", "195500.50", date(2007, 4, 1), date(2010, 3, 31)),  # renewal: this one counts
        ("KCC-C3", "KCC-S00002", "142000.00", date(2005, 4, 1), date(2010, 3, 31)),
        ("KCC-C4", "KCC-S00005", "96000.00", date(2006, 4, 1), date(2009, 3, 31)),
        ("KCC-C5", "KCC-S00006", "88000.00", date(2006, 4, 1), date(2009, 3, 31)),
    ]
    for ref, service_ref, value, start, end in contracts:
        add_contract(
            small_kent,
            contract_ref=ref,
            service_ref=service_ref,
            annual_value=Decimal(value),
            start_date=start,
            end_date=end,
        )
    money = contract_values(small_kent, authority_code=KENT, by_district=False)
    assert money == {
        (7, ACC.value, ""): {"KCC-P0001": 195500.50, "KCC-P0002": 142000.0},
        (14, ACC.value, ""): {"KCC-P0002": 184000.0},
    }
    split = contract_values(small_kent, authority_code=KENT, by_district=True, client_groups=[14])
    assert split == {
        (14, ACC.value, THANET): {"KCC-P0002": 96000.0},
        (14, ACC.value, CANTERBURY): {"KCC-P0002": 88000.0},
    }
