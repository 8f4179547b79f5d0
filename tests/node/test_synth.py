"""Synthetic supply: the same seed gives the same bytes, the figures look like an SP authority's
(domain.md), regional providers recur under other spellings, and everything passes the importer."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from node.store import get_provider, get_service, open_store, row_counts
from node.synthetic.supply import REGIONAL, SyntheticSupply, drops_leading_zero, generate, load, ref_prefix, write_csvs
from shared.authorities import shipped_register
from shared.vocabulary import ServiceType
from tests.sixutil import AUTHORITIES, SIX

KENT, MEDWAY, SURREY, WEST_SUSSEX, EAST_SUSSEX, BRIGHTON = (
    "E10000016",
    "E06000035",
    "E10000030",
    "E10000032",
    "E10000011",
    "E06000043",
)
ACC = ServiceType.ACCOMMODATION_BASED.value
FS = ServiceType.FLOATING_SUPPORT.value
ALARM = ServiceType.COMMUNITY_ALARM.value
HIA = ServiceType.HOME_IMPROVEMENT_AGENCY.value

# £ per bed-space a week for accommodation, by client group (domain.md; groups 2 and 6 assumed).
ACCOMMODATION_COST = {1: (5, 20), 3: (20, 60), 2: (100, 300), 4: (100, 300), 5: (100, 600), 6: (100, 300)}
ACCOMMODATION_COST |= {g: (100, 250) for g in (7, 12, 13, 16, 18)}
ACCOMMODATION_COST |= {g: (150, 300) for g in (8, 9, 10, 11)} | {14: (150, 350)}


@pytest.fixture(scope="module")
def cag() -> dict[str, SyntheticSupply]:
    """The six authorities as the demo seeds them: one seed each."""
    return {code: generate(code, seed=1 + i) for i, code in enumerate(AUTHORITIES)}


def _files(directory: Path, supply: SyntheticSupply) -> dict[str, bytes]:
    return {kind: path.read_bytes() for kind, path in write_csvs(supply, directory).items()}


def test_the_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    first = _files(tmp_path / "a", generate(KENT, seed=7))
    again = _files(tmp_path / "b", generate(KENT, seed=7))
    other = _files(tmp_path / "c", generate(KENT, seed=8))

    assert set(first) == {"providers", "services", "contracts"}
    assert first == again
    assert all(first[kind] != other[kind] for kind in first)


def test_the_files_are_in_the_importers_format(tmp_path: Path) -> None:
    files = _files(tmp_path, generate(MEDWAY, seed=1))
    assert files["providers"].startswith(b"provider_ref,name,national_provider_id,charity_number,company_number\r\n")
    assert files["services"].startswith(
        b"service_ref,provider_ref,name,district,service_type,client_group,units,unit_type,contracted_hours,"
        b"designated,term\r\n"
    )
    assert files["contracts"].startswith(b"contract_ref,service_ref,annual_value,start_date,end_date\r\n")


def test_services_scale_with_population(cag: dict[str, SyntheticSupply]) -> None:
    count = {code: len(supply.services) for code, supply in cag.items()}
    for code in cag:
        # Roughly one service per 3,000-4,000 residents.
        assert 3000 <= AUTHORITIES[code].population / count[code] <= 4000, code
    assert count[KENT] > count[SURREY] > count[WEST_SUSSEX] > count[EAST_SUSSEX] > count[MEDWAY]
    assert count[KENT] > 4 * count[BRIGHTON]


def test_refuges_are_small_designated_and_in_every_authority(cag: dict[str, SyntheticSupply]) -> None:
    for code, supply in cag.items():
        refuges = [s for s in supply.services if s.client_group == 14 and s.service_type == ACC]
        assert refuges, code
        assert all(s.designated and 4 <= s.units <= 12 and s.unit_type == "bed-spaces" for s in refuges)
        assert all(s.term == "short" for s in refuges)


def test_every_client_group_is_served_somewhere_and_the_small_groups_are_rare(
    cag: dict[str, SyntheticSupply],
) -> None:
    services = [s for supply in cag.values() for s in supply.services]
    groups = {s.client_group for s in services}
    assert groups == set(range(1, 22))
    for small in (15, 17, 20):  # HIV/AIDS, refugees, travellers
        assert 1 <= sum(s.client_group == small for s in services) < 0.005 * len(services)
    older = sum(s.client_group == 1 for s in services)
    assert older > 0.2 * len(services)  # sheltered housing and alarms are the bulk of SP services


def test_designation_is_mainly_refuges_substance_and_offender_services(cag: dict[str, SyntheticSupply]) -> None:
    designated = [s for supply in cag.values() for s in supply.services if s.designated]
    in_expected_groups = [s for s in designated if s.client_group in (8, 9, 10, 11, 14)]
    assert len(in_expected_groups) >= 0.9 * len(designated)
    assert not any(s.client_group in (1, 2, 3, 5, 6) for s in designated)


def test_sizes_follow_the_domain(cag: dict[str, SyntheticSupply]) -> None:
    for supply in cag.values():
        for s in supply.services:
            kind = (s.client_group, s.service_type)
            if kind == (1, ACC):
                assert 20 <= s.units <= 60, s  # sheltered scheme
            elif s.service_type == ALARM:
                assert 300 <= s.units <= 3000 and s.unit_type == "dwellings", s
            elif s.service_type == HIA:
                assert s.unit_type == "cases-per-year", s
            elif s.service_type == FS:
                assert 20 <= s.units <= 150 and s.unit_type == "households", s
                assert s.contracted_hours is not None and s.contracted_hours > 0
            elif kind == (7, ACC):
                assert 10 <= s.units <= 40, s  # hostel
            if s.service_type != FS:
                assert s.contracted_hours is None


def test_unit_costs_follow_the_domain(cag: dict[str, SyntheticSupply]) -> None:
    for supply in cag.values():
        services = {s.service_ref: s for s in supply.services}
        for c in supply.contracts:
            s = services[c.service_ref]
            if s.service_type == FS:
                assert s.contracted_hours is not None
                hourly = c.annual_value / (Decimal(str(s.contracted_hours)) * 52)
                assert Decimal(16) <= hourly <= Decimal(19), (s, c)
                per_household = c.annual_value / (s.units * 52)
                assert Decimal(19) <= per_household <= Decimal(61), (s, c)
                continue
            weekly = c.annual_value / (s.units * 52)
            if s.service_type == ALARM:
                low, high = 1, 5
            elif s.service_type == HIA:
                low, high = 4, 12  # assumed: domain.md gives no HIA range
            elif s.service_type in (ServiceType.OUTREACH, ServiceType.RESETTLEMENT):
                low, high = 20, 60
            else:
                low, high = ACCOMMODATION_COST[s.client_group]
            assert Decimal(low) <= weekly <= Decimal(high), (s, c)


def test_contracts_fall_in_the_sp_era_and_follow_on(cag: dict[str, SyntheticSupply]) -> None:
    for supply in cag.values():
        by_service = defaultdict(list)
        for c in supply.contracts:
            assert date(2003, 4, 1) <= c.start_date <= c.end_date <= date(2011, 3, 31), c
            assert (c.end_date - c.start_date).days < 5 * 366, c
            by_service[c.service_ref].append(c)
        assert set(by_service) == {s.service_ref for s in supply.services}  # every service has a contract
        for contracts in by_service.values():
            assert contracts[0].start_date.year <= 2009
            for before, after in pairwise(contracts):
                assert after.start_date == before.end_date + timedelta(days=1)
        refs = [c.contract_ref for c in supply.contracts]
        assert len(refs) == len(set(refs))


def test_regional_providers_recur_under_other_spellings(cag: dict[str, SyntheticSupply]) -> None:
    names_by_charity: dict[str, set[str]] = defaultdict(set)
    authorities_by_charity: dict[str, set[str]] = defaultdict(set)
    for code, supply in cag.items():
        for p in supply.providers:
            if p.charity_number:
                names_by_charity[p.charity_number].add(p.name)
                authorities_by_charity[p.charity_number].add(code)
    shared = {n for n, codes in authorities_by_charity.items() if len(codes) >= 2}
    respelt = {n for n in shared if len(names_by_charity[n]) >= 2}
    assert len(respelt) >= 5
    # Only organisations that really are the same share a number: never two local providers.
    regional_names = {name for org in REGIONAL for name in org.spellings}
    for number in shared:
        assert names_by_charity[number] <= regional_names, names_by_charity[number]
    # Two YMCAs are two charities, however alike their names.
    ymca = {p.name: p.charity_number for supply in cag.values() for p in supply.providers if "M.C.A" in p.name}
    ymca |= {p.name: p.charity_number for supply in cag.values() for p in supply.providers if "YMCA" in p.name}
    assert len(set(ymca.values())) == 2, ymca


def test_every_service_is_in_a_district_of_its_authority(cag: dict[str, SyntheticSupply]) -> None:
    for code, supply in cag.items():
        info = AUTHORITIES[code]
        labels = {d.name for d in info.districts} if info.kind == "county" else {d.code for d in info.districts}
        assert {s.district for s in supply.services} <= labels
        providers = {p.provider_ref for p in supply.providers}
        assert {s.provider_ref for s in supply.services} == providers  # no provider without a service


def test_a_round_trip_through_the_importer(engine: Engine) -> None:
    supply = generate(KENT, seed=5)
    summary = load(engine, authority_code=KENT, seed=5)

    expected = {"provider": len(supply.providers), "service": len(supply.services), "contract": len(supply.contracts)}
    assert row_counts(engine) == expected
    assert (summary.services.inserted, summary.contracts.inserted) == (expected["service"], expected["contract"])
    for record in supply.services[:50]:
        stored = get_service(engine, service_ref=record.service_ref)
        assert stored is not None
        assert (stored.client_group, stored.service_type, stored.units, stored.designated) == (
            record.client_group,
            record.service_type,
            record.units,
            record.designated,
        )
        assert stored.contracted_hours == record.contracted_hours
        district = next(d for d in AUTHORITIES[KENT].districts if d.name == record.district)
        assert stored.district_code == district.code

    again = load(engine, authority_code=KENT, seed=5)
    assert (again.providers.unchanged, again.services.unchanged, again.contracts.unchanged) == (
        expected["provider"],
        expected["service"],
        expected["contract"],
    )
    assert row_counts(engine) == expected
    assert "inserted" in str(summary) and "services" in str(summary)


@pytest.mark.parametrize("code", list(AUTHORITIES))
def test_every_authority_loads_through_the_importer(tmp_path: Path, code: str) -> None:
    engine = open_store(f"sqlite:///{tmp_path}/node.db")
    try:
        summary = load(engine, authority_code=code, seed=11)
        assert summary.services.rows == len(generate(code, seed=11).services)
    finally:
        engine.dispose()


def test_the_importer_puts_back_the_zeros_an_export_dropped(tmp_path: Path) -> None:
    # An authority whose exports drop leading zeros and one whose exports keep them, both working
    # with the same regional organisation: the importer stores the same company number for both.
    dropping = next(code for code in SIX if drops_leading_zero(code))
    keeping = next(code for code in SIX if not drops_leading_zero(code))
    org = next(o for o in REGIONAL if o.company_number and o.works_for(dropping) and o.works_for(keeping))
    assert org.company_number is not None and org.company_number.startswith("0")
    numbers = {}
    for code in (dropping, keeping):
        supply = generate(code, seed=1)
        exported = next(p for p in supply.providers if p.name == org.spelt_by(code))
        engine = open_store(f"sqlite:///{tmp_path}/{code}.db")
        try:
            load(engine, authority_code=code, seed=1)
            stored = get_provider(engine, provider_ref=exported.provider_ref)
        finally:
            engine.dispose()
        assert stored is not None
        numbers[code] = (exported.company_number, stored.company_number)
    assert numbers[dropping][0] == org.company_number.lstrip("0") != numbers[keeping][0]
    assert numbers[dropping][1] == numbers[keeping][1] == org.company_number


def test_any_authority_is_synthesised_in_proportion_to_its_population(tmp_path: Path) -> None:
    # A county (whose districts are listed), a county without listed districts, two London
    # boroughs and a small unitary: one service per 3,000-4,000 residents everywhere.
    for code in ("E10000014", "E10000006", "E09000022", "E09000028", "E06000017"):
        info = shipped_register().authority(code)
        supply = generate(code, seed=2)
        assert 3000 <= info.population / len(supply.services) <= 4000, code
        labels = {d.name for d in info.districts} if info.kind == "county" else {d.code for d in info.districts}
        assert {s.district for s in supply.services} <= labels, code
        assert all(s.service_ref.startswith(ref_prefix(info) + "-S") for s in supply.services)
    assert ref_prefix(shipped_register().authority("E10000014")) == "HCC"  # Hampshire County Council
    hampshire = open_store(f"sqlite:///{tmp_path}/hampshire.db")
    try:
        summary = load(hampshire, authority_code="E10000014", seed=2)
        assert summary.services.rows == len(generate("E10000014", seed=2).services)
    finally:
        hampshire.dispose()
