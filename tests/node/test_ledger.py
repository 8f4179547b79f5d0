"""The release ledger in the node's database: what it keeps, and that differencing stays refused.

Every test runs on SQLite and on PostgreSQL. The tables are Kent's services counted by SP client
group and service type.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlmodel import col

from node.ledger import PersistentNonceCache, ReleaseRow, SeenNonceRow, SqlReleaseStore
from node.store import open_store
from shared.disclosure import CellKey, InMemoryReleaseStore, ReleaseLedger, ReleaseStore
from shared.errors import DisclosureRefused, ReplayedRequest
from shared.policy import default_policy

SUPPLY = default_policy().rule("supply-map")
BY_GROUP_AND_TYPE = ("client_group", "service_type")
ACCOMMODATION = "accommodation-based"
FLOATING = "floating-support"
T0 = datetime(2009, 4, 1, 9, 30, 15, 123456, tzinfo=UTC)

# Services per client group (1-13) and service type at Kent; groups with no floating support omit it.
_SERVICES = {
    "1": (42, 65),
    "2": (12, 18),
    "3": (27, 31),
    "4": (19, 24),
    "5": (14, 0),
    "6": (16, 22),
    "7": (48, 29),
    "8": (21, 15),
    "9": (11, 26),
    "10": (13, 19),
    "11": (25, 12),
    "12": (30, 17),
    "13": (9, 14),
}
GROUPS_1_TO_13: dict[CellKey, int] = {
    (group, service_type): count
    for group, (accommodation, floating) in _SERVICES.items()
    for service_type, count in ((ACCOMMODATION, accommodation), (FLOATING, floating))
    if count
}


def _stored_cells(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(col(ReleaseRow.cells)).order_by(col(ReleaseRow.id))).scalars())


# --- the store ---------------------------------------------------------------------------------------


def test_satisfies_the_release_store_protocol(engine: Engine) -> None:
    store: ReleaseStore = SqlReleaseStore(engine)
    assert tuple(store.previous("supply-map")) == ()


def test_previous_gives_back_every_release_oldest_first_exactly(engine: Engine) -> None:
    store = SqlReleaseStore(engine)
    bst = timezone(timedelta(hours=1))
    releases: list[tuple[str, tuple[str, ...], dict[CellKey, int], datetime]] = [
        ("all groups", BY_GROUP_AND_TYPE, GROUPS_1_TO_13, T0),
        ("by group", ("client_group",), {("7",): 77, ("14",): 31, ("21",): 0}, T0 + timedelta(days=1)),
        ("older people", BY_GROUP_AND_TYPE, {("1", FLOATING): 65, ("1", ACCOMMODATION): 42}, T0.astimezone(bst)),
    ]
    for signature, dimensions, cells, at in releases:
        store.record("supply-map", signature, dimensions, cells, at)

    previous = store.previous("supply-map")

    assert [r.query_signature for r in previous] == ["all groups", "by group", "older people"]
    for release, (_, dimensions, cells, at) in zip(previous, releases, strict=True):
        assert release.dimensions == dimensions
        assert dict(release.cells) == cells
        assert release.at == at
        assert release.at.utcoffset() == timedelta(0)
    # Earlier releases cannot be edited through what `previous` hands out.
    with pytest.raises(TypeError):
        previous[0].cells[("1", ACCOMMODATION)] = 0  # type: ignore[index]


def test_equal_releases_are_stored_as_equal_text(engine: Engine) -> None:
    store = SqlReleaseStore(engine)
    cells: dict[CellKey, int] = {("9", FLOATING): 26, ("10", ACCOMMODATION): 13, ("9", ACCOMMODATION): 11}
    store.record("supply-map", "q", BY_GROUP_AND_TYPE, cells, T0)
    store.record("supply-map", "q", BY_GROUP_AND_TYPE, dict(reversed(cells.items())), T0)

    first, second = _stored_cells(engine)
    assert first == second
    assert first == '[[["10","accommodation-based"],13],[["9","accommodation-based"],11],[["9","floating-support"],26]]'


def test_releases_of_other_kinds_are_not_returned(engine: Engine) -> None:
    store = SqlReleaseStore(engine)
    store.record("supply-map", "supply", BY_GROUP_AND_TYPE, GROUPS_1_TO_13, T0)
    store.record("movement", "moves", ("client_group",), {("7",): 120}, T0)
    store.record("supply-map", "supply again", BY_GROUP_AND_TYPE, GROUPS_1_TO_13, T0)

    assert [r.query_signature for r in store.previous("supply-map")] == ["supply", "supply again"]
    assert [r.query_signature for r in store.previous("movement")] == ["moves"]
    assert store.previous("kpi") == ()


def test_a_naive_timestamp_is_refused_and_nothing_is_kept(engine: Engine) -> None:
    store = SqlReleaseStore(engine)
    with pytest.raises(ValueError, match="timezone-aware"):
        store.record("supply-map", "q", BY_GROUP_AND_TYPE, GROUPS_1_TO_13, datetime(2009, 4, 1, 9, 30))
    assert store.previous("supply-map") == ()


def test_releases_outlive_the_engine(database_url: str) -> None:
    engine = open_store(database_url)
    SqlReleaseStore(engine).record("supply-map", "all groups", BY_GROUP_AND_TYPE, GROUPS_1_TO_13, T0)
    engine.dispose()

    reopened = open_store(database_url)
    try:
        (release,) = SqlReleaseStore(reopened).previous("supply-map")
    finally:
        reopened.dispose()
    assert (release.query_signature, release.dimensions, dict(release.cells), release.at) == (
        "all groups",
        BY_GROUP_AND_TYPE,
        GROUPS_1_TO_13,
        T0,
    )


# --- the ledger on the store -------------------------------------------------------------------------


def _admit(ledger: ReleaseLedger, signature: str, cells: Mapping[CellKey, int]) -> str:
    try:
        ledger.admit("supply-map", signature, BY_GROUP_AND_TYPE, cells, SUPPLY, at=T0)
    except DisclosureRefused as refused:
        return refused.public_message
    return "admitted"


def _play_differencing(store: ReleaseStore) -> list[str]:
    """Groups 1-13, then 1-14 where group 14 (women at risk of DV) holds three services, then
    1-14 with a large group 14, then the first query again."""
    ledger = ReleaseLedger(store)
    few_dv = {**GROUPS_1_TO_13, ("14", ACCOMMODATION): 3}
    many_dv = {**GROUPS_1_TO_13, ("14", ACCOMMODATION): 18, ("14", FLOATING): 26}
    return [
        _admit(ledger, "groups 1-13", GROUPS_1_TO_13),
        _admit(ledger, "groups 1-14", few_dv),
        _admit(ledger, "groups 1-14, later", many_dv),
        _admit(ledger, "groups 1-13", GROUPS_1_TO_13),
    ]


def test_differencing_is_refused_exactly_as_in_memory(engine: Engine) -> None:
    in_database = _play_differencing(SqlReleaseStore(engine))

    assert in_database == _play_differencing(InMemoryReleaseStore())
    assert in_database[0] == "admitted"
    assert in_database[1].startswith("differencing")
    assert in_database[2:] == ["admitted", "admitted"]
    # The refused release is not kept, and a repeated query is answered from the one already kept.
    assert [r.query_signature for r in SqlReleaseStore(engine).previous("supply-map")] == [
        "groups 1-13",
        "groups 1-14, later",
    ]


def test_a_restart_does_not_forget_what_was_released(database_url: str) -> None:
    engine = open_store(database_url)
    ReleaseLedger(SqlReleaseStore(engine)).admit("supply-map", "groups 1-13", BY_GROUP_AND_TYPE, GROUPS_1_TO_13, SUPPLY)
    engine.dispose()

    restarted = open_store(database_url)
    try:
        ledger = ReleaseLedger(SqlReleaseStore(restarted))
        few_dv = {**GROUPS_1_TO_13, ("14", ACCOMMODATION): 3}
        with pytest.raises(DisclosureRefused, match="differencing"):
            ledger.admit("supply-map", "groups 1-14", BY_GROUP_AND_TYPE, few_dv, SUPPLY)
    finally:
        restarted.dispose()


# --- seen nonces -------------------------------------------------------------------------------------


def test_a_seen_nonce_outlives_the_process_until_it_expires(database_url: str) -> None:
    """A nonce accepted by one runtime is refused by the next on the same database while its
    request could still be accepted, and forgotten (pruned) once it cannot."""
    now = 1_259_000_000_000  # milliseconds
    first = open_store(database_url)
    try:
        cache = PersistentNonceCache(first)
        cache.check_and_add(b"n" * 16, now + 60_000, now)
        with pytest.raises(ReplayedRequest):
            cache.check_and_add(b"n" * 16, now + 60_000, now)  # the same process: memory says so
        cache.check_and_add(b"old-nonce-16byte", now - 120_000, now - 180_000)
    finally:
        first.dispose()
    second = open_store(database_url)
    try:
        restarted = PersistentNonceCache(second)
        with pytest.raises(ReplayedRequest):
            restarted.check_and_add(b"n" * 16, now + 60_000, now + 1_000)
        restarted.check_and_add(b"m" * 16, now + 61_000, now + 1_000)
        with second.connect() as conn:
            kept = set(conn.execute(select(col(SeenNonceRow.expires_at_ms))).scalars())
        # The expired one was pruned on the first check; nothing kept holds a nonce in clear.
        assert kept == {now + 60_000, now + 61_000}
    finally:
        second.dispose()
