"""Synthetic client records: the same seed gives the same bytes, the mixes look like domain.md's,
repeat movers agree between authorities generated apart, outcomes follow their records, and
everything passes the importer."""

from __future__ import annotations

import csv
import secrets
from collections import Counter
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from node.client_records import ClientRecord, Outcome
from node.store import open_store
from node.synthetic import supply as synth
from node.synthetic.clients import (
    WINDOW_END,
    WINDOW_START,
    default_count,
    repeat_movers,
    service_kind,
    write_client_csvs,
)
from node.synthetic.supply import SyntheticSupply, generate
from shared import places, vocabulary
from shared.authorities import shipped_register
from tests.sixutil import SIX

KENT, MEDWAY, SURREY, BRIGHTON = "E10000016", "E06000035", "E10000030", "E06000043"
EAST_SUSSEX, WEST_SUSSEX = "E10000011", "E10000032"
LONDON = "E12000007"


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def written(
    supply: SyntheticSupply, directory: Path, count: int | None = None, members: tuple[str, ...] = ()
) -> tuple[list[dict[str, str]], ...]:
    paths = write_client_csvs(supply, directory, count=count, members=members)
    return rows(paths["client-records"]), rows(paths["outcomes"])


@pytest.fixture(scope="module")
def kent(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[SyntheticSupply, list[dict[str, str]], list[dict[str, str]]]:
    """Kent at its realistic volume (about 11,000 records over two years)."""
    supply = generate(KENT, seed=3)
    records, outcomes = written(supply, tmp_path_factory.mktemp("kent"))
    return supply, records, outcomes


def person(row: dict[str, str]) -> tuple[str, str, str, str]:
    return row["surname"], row["first_initial"], row["date_of_birth"], row["sex"]


def is_outside(row: dict[str, str], host: str) -> bool | None:
    """Whether the client came from outside `host`; None when the record does not say."""
    previous = row["previous_authority"]
    if previous in ("", "unknown"):
        return None
    return places.upper_tier(previous) != host


def test_the_same_seed_gives_the_same_bytes(tmp_path: Path) -> None:
    supply = generate(MEDWAY, seed=5)
    first = write_client_csvs(supply, tmp_path / "a", count=500)
    again = write_client_csvs(supply, tmp_path / "b", count=500)
    other = write_client_csvs(generate(MEDWAY, seed=6), tmp_path / "c", count=500)
    for kind in ("client-records", "outcomes"):
        assert first[kind].read_bytes() == again[kind].read_bytes()
        assert first[kind].read_bytes() != other[kind].read_bytes()
    assert len(rows(first["client-records"])) == 500


def test_the_default_volume_is_about_3_9_per_1000_people_a_year() -> None:
    assert default_count(KENT) == pytest.approx(3.9 * 1464 * 2, rel=0.01)  # Kent: 1,464,000 in 2011
    total = sum(default_count(code) for code in SIX)
    assert 15_000 * 2 <= total <= 20_000 * 2  # the CAG: 15-20k new client records a year


def test_out_of_area_shares_follow_the_kind_of_service(kent: tuple) -> None:
    supply, records, _ = kent
    kind_of = {s.service_ref: service_kind(s) for s in supply.services}
    outside: dict[str, list[bool]] = {}
    for row in records:
        answer = is_outside(row, KENT)
        if answer is not None:
            outside.setdefault(kind_of[row["service_ref"]], []).append(answer)
    share = {kind: sum(answers) / len(answers) for kind, answers in outside.items()}
    # domain.md's priors, with room for the sample (a few hundred records for the smaller kinds).
    assert 0.60 <= share["refuge"] <= 0.80
    assert 0.22 <= share["offender-substance"] <= 0.43
    assert 0.13 <= share["single-homeless"] <= 0.32
    assert 0.04 <= share["floating-support"] <= 0.16
    assert 0.01 <= share["older-people"] <= 0.10
    unknown = sum(row["previous_authority"] in ("", "unknown") for row in records) / len(records)
    assert 0.01 <= unknown <= 0.03


def test_where_out_of_area_clients_come_from(tmp_path: Path, kent: tuple) -> None:
    _, records, _ = kent
    origins = Counter(places.upper_tier(r["previous_authority"]) for r in records if is_outside(r, KENT))
    assert origins.most_common(1)[0][0] == MEDWAY
    regions = Counter(places.region_of(code) for code in origins.elements())
    assert regions[LONDON] > 0.25 * sum(regions.values())  # London into Kent
    assert len(regions) == 9  # and some from every region
    brighton, _ = written(generate(BRIGHTON, seed=1), tmp_path)
    from_brighton = Counter(places.upper_tier(r["previous_authority"]) for r in brighton if is_outside(r, BRIGHTON))
    # Its neighbours first (Surrey, a county of 1.1m, is close behind East Sussex).
    assert {EAST_SUSSEX, WEST_SUSSEX} <= {code for code, _ in from_brighton.most_common(3)}
    assert from_brighton.most_common(1)[0][0] == WEST_SUSSEX
    surrey, _ = written(generate(SURREY, seed=1), tmp_path / "surrey", count=4000)
    beyond_the_cag = Counter(
        places.region_of(r["previous_authority"])
        for r in surrey
        if is_outside(r, SURREY) and places.upper_tier(r["previous_authority"]) not in SIX
    )
    assert beyond_the_cag.most_common(1)[0][0] == LONDON  # London into Surrey
    assert beyond_the_cag[LONDON] > 0.4 * sum(beyond_the_cag.values())


def test_people_look_like_their_client_group(kent: tuple) -> None:
    supply, records, _ = kent
    by_group: dict[int, list[dict[str, str]]] = {}
    for row in records:
        by_group.setdefault(int(row["client_group"]), []).append(row)
    domestic_violence = by_group[vocabulary.DOMESTIC_VIOLENCE]
    assert sum(r["sex"] == "female" for r in domestic_violence) / len(domestic_violence) > 0.9
    older = by_group[1] + by_group.get(2, []) + by_group.get(3, [])
    assert sum(r["age_band"] in ("60-64", "65-74", "75-84", "85+") for r in older) / len(older) > 0.95
    assert sum(r["economic_status"] == "retired" for r in older) / len(older) > 0.7
    offenders = by_group[10]
    assert Counter(r["referral_source"] for r in offenders).most_common(1)[0][0] == "probation"
    # A record's group is its service's, except in generic services.
    group_of = {s.service_ref: s.client_group for s in supply.services}
    assert all(int(r["client_group"]) == group_of[r["service_ref"]] or group_of[r["service_ref"]] == 21
               for r in records)  # fmt: skip
    # The largest groups, as in the returns: single homeless, then domestic violence near the top.
    largest = [group for group, _ in Counter(int(r["client_group"]) for r in records).most_common(3)]
    assert largest[0] == 7 and vocabulary.DOMESTIC_VIOLENCE in largest
    for row in records[:500]:
        assert WINDOW_START.isoformat() <= row["start_date"] <= WINDOW_END.isoformat()
        assert row["secondary_groups"] == "" or row["client_group"] not in row["secondary_groups"].split(";")


def test_outcomes_follow_departures_from_short_term_services(kent: tuple) -> None:
    supply, records, outcomes = kent
    record = {r["record_ref"]: r for r in records}
    term = {s.service_ref: s.term for s in supply.services}
    assert len({o["record_ref"] for o in outcomes}) == len(outcomes)
    for outcome in outcomes:
        started = record[outcome["record_ref"]]
        assert term[started["service_ref"]] == "short"
        assert started["start_date"] <= outcome["end_date"] <= WINDOW_END.isoformat()
    planned = sum(o["departure"] == "planned" for o in outcomes) / len(outcomes)
    assert 0.58 <= planned <= 0.77
    short_term = sum(term[r["service_ref"]] == "short" for r in records)
    assert 0.4 * short_term < len(outcomes) < short_term  # most stays end inside the window, not all


def test_repeat_movers_agree_between_authorities_generated_apart(tmp_path: Path) -> None:
    # Different seeds and volumes, as the demo's nodes have: only the pair decides who moved.
    kent, _ = written(generate(KENT, seed=11), tmp_path / "kent", count=800, members=SIX)
    medway, _ = written(generate(MEDWAY, seed=2), tmp_path / "medway", count=300, members=SIX)
    movers = repeat_movers(KENT, MEDWAY, members=SIX)
    assert movers == repeat_movers(MEDWAY, KENT, members=SIX)
    assert len(movers) >= 30  # Medway-Kent is one of the heavy flows

    shared = {person(r) for r in kent} & {person(r) for r in medway}
    expected = {(m.surname, m.first_initial, m.date_of_birth.isoformat(), m.sex) for m in movers}
    assert shared == expected  # every mover, and no one else by chance
    by_person = {code: {person(r): r for r in records} for code, records in ((KENT, kent), (MEDWAY, medway))}
    for mover in movers:
        key = (mover.surname, mover.first_initial, mover.date_of_birth.isoformat(), mover.sex)
        earlier, later = by_person[mover.first][key], by_person[mover.second][key]
        assert earlier["start_date"] == mover.first_start.isoformat() < later["start_date"] or (
            mover.first_start == mover.second_start
        )
        assert places.upper_tier(later["previous_authority"]) == mover.first
        assert int(earlier["client_group"]) == int(later["client_group"]) == mover.client_group
    # Kent shares people with every other CAG authority too, more with its neighbours.
    others = [code for code in SIX if code != KENT]
    shared_with = {code: len(repeat_movers(KENT, code, members=SIX)) for code in others}
    assert all(shared_with.values())
    assert max(shared_with, key=shared_with.__getitem__) == MEDWAY
    assert shared_with[EAST_SUSSEX] > shared_with[BRIGHTON]  # next door, against across Sussex
    assert sum(shared_with.values()) <= len(kent)
    # Without the membership an authority shares no one.
    alone, _ = written(generate(KENT, seed=11), tmp_path / "alone", count=800)
    assert not {person(r) for r in alone} & expected


def test_a_mover_is_never_a_stranger_s_double() -> None:
    everyone = [m for a in SIX for b in SIX if a < b for m in repeat_movers(a, b, members=SIX)]
    keys = [(m.surname, m.first_initial, m.date_of_birth, m.sex) for m in everyone]
    assert len(set(keys)) == len(keys)
    assert all(date(1900, 1, 1) < m.date_of_birth < m.first_start for m in everyone)


def test_load_imports_client_records_and_outcomes_through_the_importer(engine: Engine) -> None:
    key = secrets.token_bytes(64)
    summary = synth.load(engine, authority_code=MEDWAY, seed=4, person_key=key, clients=400)
    assert summary.client_records is not None and summary.outcomes is not None
    assert (summary.client_records.rows, summary.client_records.inserted) == (400, 400)
    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(ClientRecord.__table__)).scalar_one()  # type: ignore[attr-defined]
        exits = conn.execute(select(func.count()).select_from(Outcome.__table__)).scalar_one()  # type: ignore[attr-defined]
    assert (stored, exits) == (400, summary.outcomes.inserted)
    assert exits > 0
    again = synth.load(engine, authority_code=MEDWAY, seed=4, person_key=key, clients=400)
    assert again.client_records is not None and again.client_records.unchanged == 400


def test_load_without_clients_or_a_key_loads_supply_only(tmp_path: Path) -> None:
    for name, options in (("skip", {"person_key": secrets.token_bytes(64), "with_clients": False}), ("nokey", {})):
        engine = open_store(f"sqlite:///{tmp_path / name}.db")
        summary = synth.load(engine, authority_code=BRIGHTON, seed=1, **options)  # type: ignore[arg-type]
        assert summary.client_records is None and summary.services.rows > 0
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(ClientRecord.__table__)).scalar_one() == 0  # type: ignore[attr-defined]
        engine.dispose()


def test_a_network_of_any_size_shares_exactly_its_movers(tmp_path: Path) -> None:
    # Twenty members from four regions: each pair's movers, and no one else, are in both pairs' files.
    register = shipped_register()
    members = tuple(sorted(register.authorities))[::7][:20]
    assert len(members) == 20
    picked = (members[0], members[1], members[10])
    files = {
        code: {person(r) for r in written(generate(code, seed=i), tmp_path / code, count=300, members=members)[0]}
        for i, code in enumerate(picked)
    }
    for a, b in ((picked[0], picked[1]), (picked[0], picked[2]), (picked[1], picked[2])):
        movers = repeat_movers(a, b, members=members)
        expected = {(m.surname, m.first_initial, m.date_of_birth.isoformat(), m.sex) for m in movers}
        assert files[a] & files[b] == expected
    # Neighbours share more people than authorities at opposite ends of England.
    lambeth, southwark, cornwall = "E09000022", "E09000028", "E06000052"
    assert len(repeat_movers(lambeth, southwark)) > 5 * len(repeat_movers(lambeth, cornwall))


def test_a_london_borough_s_clients_come_mostly_from_london(tmp_path: Path) -> None:
    lambeth = "E09000022"
    records, _ = written(generate(lambeth, seed=1), tmp_path, count=3000)
    regions = Counter(places.region_of(r["previous_authority"]) for r in records if is_outside(r, lambeth))
    assert regions.most_common(1)[0][0] == LONDON
    assert regions[LONDON] > 0.6 * sum(regions.values())
    assert len(regions) >= 6  # and from far away now and then
