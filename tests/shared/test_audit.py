"""The audit log on each backend: appends chain, verification names the first entry tampered with
behind the log's back, concurrent appends never fork, and an export verifies without this code."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from shared.audit import (  # the group commit's lock and queue, to hold a group together
    GENESIS_HASH,
    AuditChainBroken,
    _append_lock,
    _committer,
    append,
    digest_of,
    entries,
    export_jsonl,
    head,
    open_log,
    verify_chain,
    write,
)
from shared.errors import CagnetError, ReplayedRequest

SUPPLY_MAP = "/cagnet.v1.Node/SupplyMap"
START = datetime(2025, 4, 1, 9, 30, tzinfo=UTC)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    SQLModel.metadata.create_all(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _append_session(engine: Engine) -> None:
    """A realistic morning: releases, a refusal, and a replay rejected, five entries in all."""
    payload = b'{"authority":"E06000035","cells":[]}'
    append(
        engine,
        principal="cag-chair",
        role="cag-chair",
        via="coordinator",
        method=SUPPLY_MAP,
        parameters={"by_district": False},
        decision="released",
        release_digest=digest_of(payload),
        policy_digest=digest_of(b"small-count threshold 5"),
        at=START,
    )
    append(
        engine,
        principal="cag-chair",
        role="cag-chair",
        via="coordinator",
        method=SUPPLY_MAP,
        parameters={"by_district": True},
        decision="refused: small-count rule",
        policy_digest=digest_of(b"small-count threshold 5"),
        at=START + timedelta(seconds=1),
    )
    append(
        engine,
        principal="E06000035",
        role="node",
        via="",
        method="/cagnet.v1.Node/Describe",
        parameters={},
        decision="rejected: replayed request",
        at=START + timedelta(seconds=2),
    )
    append(
        engine,
        principal="officer-medway",
        role="commissioner",
        via="coordinator",
        method=SUPPLY_MAP,
        parameters={"by_district": False, "client_groups": [1, 7, 21], "note": "Sévérité — ünïcode"},
        decision="released",
        release_digest=digest_of(payload + b" "),
        at=START + timedelta(seconds=3),
    )
    append(
        engine,
        principal="cag-chair",
        role="cag-chair",
        via="coordinator",
        method="/cagnet.v1.Node/Describe",
        parameters={},
        decision="released",
        release_digest=digest_of(b"description"),
        at=START + timedelta(seconds=4),
    )


def _broken(engine: Engine, expected_head: tuple[int, str] | None = None) -> AuditChainBroken:
    with pytest.raises(AuditChainBroken) as caught:
        verify_chain(engine, expected_head=expected_head)
    return caught.value


def _tamper(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for statement in statements:
            conn.execute(text(statement))


def test_appends_chain_from_genesis_and_verify(engine: Engine) -> None:
    assert head(engine) == (0, GENESIS_HASH)
    assert verify_chain(engine) == 0
    _append_session(engine)

    log = entries(engine)
    assert [e.seq for e in log] == [1, 2, 3, 4, 5]
    assert log[0].prev_hash == GENESIS_HASH
    assert all(later.prev_hash == earlier.entry_hash for earlier, later in itertools.pairwise(log))
    assert [e.decision for e in log[:3]] == [
        "released",
        "refused: small-count rule",
        "rejected: replayed request",
    ]
    assert log[0].parameters == '{"by_district":false}'
    assert log[1].release_digest == "" and log[0].release_digest.startswith("sha256:")
    assert log[2].principal == "E06000035" and log[2].via == ""
    assert log[0].at == START and log[0].at.tzinfo is not None
    assert head(engine) == (5, log[-1].entry_hash)
    assert verify_chain(engine) == 5
    assert verify_chain(engine, expected_head=head(engine)) == 5


def test_append_returns_the_entry_as_stored(engine: Engine) -> None:
    returned = append(
        engine,
        principal="cag-chair",
        role="cag-chair",
        via="coordinator",
        method=SUPPLY_MAP,
        # Key order and an offset zone must not matter: both are canonicalised before hashing.
        parameters={"z": 1, "a": [True, None, 2.5]},
        decision="released",
        release_digest=digest_of(b"x"),
        at=datetime(2025, 4, 1, 10, 30, 0, 123456, tzinfo=timezone(timedelta(hours=1))),
    )
    (stored,) = entries(engine)
    assert returned.model_dump() == stored.model_dump()
    assert stored.at == datetime(2025, 4, 1, 9, 30, 0, 123456, tzinfo=UTC)
    assert stored.at.utcoffset() == timedelta(0)
    assert stored.parameters == '{"a":[true,null,2.5],"z":1}'


def test_append_defaults_the_time_to_now_in_utc(engine: Engine) -> None:
    before = datetime.now(UTC)
    entry = append(
        engine,
        principal="p",
        role="r",
        via="",
        method=SUPPLY_MAP,
        parameters={},
        decision="released",
        release_digest=digest_of(b""),
    )
    after = datetime.now(UTC)
    assert before <= entry.at <= after
    assert entry.at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("decision", "release_digest", "at"),
    [
        ("ok", "", START),  # not one of the three forms
        ("refused:", "", START),  # no rule named
        ("released", "", START),  # a release without its digest
        ("released", "sha256:abc", START),  # not a SHA-256 digest
        ("refused: small-count rule", digest_of(b"x"), START),  # a digest for nothing released
        ("released", digest_of(b"x"), datetime(2025, 4, 1, 9, 30)),  # naive time
    ],
)
def test_append_refuses_malformed_entries_and_writes_nothing(
    engine: Engine, decision: str, release_digest: str, at: datetime
) -> None:
    with pytest.raises(ValueError):
        append(
            engine,
            principal="p",
            role="r",
            via="",
            method=SUPPLY_MAP,
            parameters={},
            decision=decision,
            release_digest=release_digest,
            at=at,
        )
    assert entries(engine) == []


def test_append_refuses_parameters_that_are_not_exact_json(engine: Engine) -> None:
    with pytest.raises(ValueError):
        append(
            engine,
            principal="p",
            role="r",
            via="",
            method=SUPPLY_MAP,
            parameters={"x": float("nan")},
            decision="rejected: invalid request",
        )
    with pytest.raises(TypeError):
        append(
            engine,
            principal="p",
            role="r",
            via="",
            method=SUPPLY_MAP,
            parameters={"x": object()},
            decision="rejected: invalid request",
        )
    assert entries(engine) == []


def test_entries_pages_in_seq_order(engine: Engine) -> None:
    _append_session(engine)
    assert [e.seq for e in entries(engine, since_seq=2)] == [3, 4, 5]
    assert [e.seq for e in entries(engine, since_seq=1, limit=2)] == [2, 3]
    assert entries(engine, since_seq=5) == []
    assert entries(engine, limit=0) == []


def test_edited_field_names_that_entry(engine: Engine) -> None:
    _append_session(engine)
    _tamper(engine, "UPDATE audit_log SET decision = 'released' WHERE seq = 2")
    broken = _broken(engine)
    assert broken.seq == 2
    assert broken.reason == "entry 2: hash does not match its contents"
    assert isinstance(broken, CagnetError)
    assert "entry 2: hash does not match its contents" in str(broken)


def test_edited_timestamp_text_is_detected_even_when_the_instant_is_unchanged(engine: Engine) -> None:
    _append_session(engine)
    _tamper(engine, "UPDATE audit_log SET at = '2025-04-01T09:30:00+00:00' WHERE seq = 1")
    assert _broken(engine).reason == "entry 1: hash does not match its contents"


def test_edited_field_with_its_hash_recomputed_names_the_next_entry(engine: Engine) -> None:
    _append_session(engine)
    _tamper(engine, "UPDATE audit_log SET decision = 'released' WHERE seq = 2")
    with io.StringIO() as out:
        export_jsonl(engine, out)
        second = json.loads(out.getvalue().splitlines()[1])
    forged = _recompute(second)
    _tamper(engine, f"UPDATE audit_log SET entry_hash = '{forged}' WHERE seq = 2")
    broken = _broken(engine)
    assert broken.seq == 3
    assert broken.reason == "entry 3: prev_hash does not match entry 2"


def test_deleted_middle_entry_is_named_as_a_gap(engine: Engine) -> None:
    _append_session(engine)
    _tamper(engine, "DELETE FROM audit_log WHERE seq = 3")
    broken = _broken(engine)
    assert broken.seq == 3
    assert broken.reason == "entry 3 is missing: seq jumps from 2 to 4"


def test_deleted_first_entry_is_named_as_a_gap(engine: Engine) -> None:
    _append_session(engine)
    _tamper(engine, "DELETE FROM audit_log WHERE seq = 1")
    assert _broken(engine).reason == "entry 1 is missing: seq jumps from 0 to 2"


def test_renumbered_entries_after_a_deletion_are_detected(engine: Engine) -> None:
    _append_session(engine)
    _tamper(
        engine,
        "DELETE FROM audit_log WHERE seq = 3",
        "UPDATE audit_log SET seq = 3 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = 5",
    )
    assert _broken(engine).reason == "entry 3: hash does not match its contents"


def test_swapped_entries_are_detected(engine: Engine) -> None:
    _append_session(engine)
    # Swap rows 2 and 4 whole, seq aside (a reordering of the log), via a parking spot for row 2.
    _tamper(
        engine,
        "UPDATE audit_log SET seq = 102 WHERE seq = 2",
        "UPDATE audit_log SET seq = 2 WHERE seq = 4",
        "UPDATE audit_log SET seq = 4 WHERE seq = 102",
    )
    broken = _broken(engine)
    assert broken.seq == 2
    assert broken.reason == "entry 2: hash does not match its contents"


def test_swapped_entries_with_hashes_recomputed_break_the_links(engine: Engine) -> None:
    _append_session(engine)
    with io.StringIO() as out:
        export_jsonl(engine, out)
        lines = [json.loads(line) for line in out.getvalue().splitlines()]
    # A forger who swaps the contents of entries 2 and 3 and re-hashes both still cannot make them link.
    # Each keeps its own seq and prev_hash, which is all a forger can do without rewriting the rest.
    two = {**lines[2], "seq": 2, "prev_hash": lines[1]["prev_hash"]}
    three = {**lines[1], "seq": 3, "prev_hash": lines[2]["prev_hash"]}
    with engine.begin() as conn:
        for forged in (two, three):
            forged["entry_hash"] = _recompute(forged)
            assignments = ", ".join(f"{name} = :{name}" for name in forged if name != "seq")
            conn.execute(text(f"UPDATE audit_log SET {assignments} WHERE seq = :seq"), forged)
    broken = _broken(engine)
    assert broken.seq == 3
    assert broken.reason == "entry 3: prev_hash does not match entry 2"


def test_deleted_last_entry_is_caught_by_the_expected_head(engine: Engine) -> None:
    _append_session(engine)
    remembered = head(engine)
    _tamper(engine, "DELETE FROM audit_log WHERE seq = 5")
    assert verify_chain(engine) == 4  # what is left is a valid chain on its own
    broken = _broken(engine, expected_head=remembered)
    assert broken.reason.startswith("log truncated or rewritten: head entry 5")
    assert "the log ends at entry 4" in broken.reason


def test_rewritten_tail_is_caught_by_the_expected_head(engine: Engine) -> None:
    _append_session(engine)
    remembered = head(engine)
    _tamper(engine, "DELETE FROM audit_log WHERE seq = 5")
    append(
        engine,
        principal="cag-chair",
        role="cag-chair",
        via="coordinator",
        method=SUPPLY_MAP,
        parameters={},
        decision="refused: small-count rule",
    )
    assert verify_chain(engine) == 5
    broken = _broken(engine, expected_head=remembered)
    assert broken.seq == 5
    assert broken.reason.startswith("log truncated or rewritten: head entry 5")


def test_expected_head_accepts_a_log_that_has_grown(engine: Engine) -> None:
    _append_session(engine)
    remembered = head(engine)
    append(
        engine,
        principal="cag-chair",
        role="cag-chair",
        via="coordinator",
        method=SUPPLY_MAP,
        parameters={},
        decision="rejected: request expired",
    )
    assert verify_chain(engine, expected_head=remembered) == 6
    assert verify_chain(engine, expected_head=(0, GENESIS_HASH)) == 6


def test_emptied_log_is_caught_by_the_expected_head(engine: Engine) -> None:
    _append_session(engine)
    remembered = head(engine)
    _tamper(engine, "DELETE FROM audit_log")
    assert _broken(engine, expected_head=remembered).reason.startswith("log truncated or rewritten")


def test_a_second_entry_claiming_the_same_predecessor_is_refused_by_the_database(engine: Engine) -> None:
    _append_session(engine)
    with pytest.raises(IntegrityError):
        _tamper(engine, "INSERT INTO audit_log SELECT * FROM audit_log WHERE seq = 5")
    (last,) = entries(engine, since_seq=4)
    fork = (
        "INSERT INTO audit_log (seq, at, principal, role, via, method, parameters, decision, release_digest,"
        " policy_digest, prev_hash, entry_hash) VALUES (6, '2025-04-01T09:31:00.000000+00:00', 'x', 'x', '',"
        f" 'm', '{{}}', 'released', '', '', '{last.prev_hash}', '{'f' * 64}')"
    )
    with pytest.raises(IntegrityError):
        _tamper(engine, fork)
    assert verify_chain(engine) == 5


def _append_concurrently(engines: list[Engine], threads_per_engine: int, per_thread: int) -> None:
    workers_total = len(engines) * threads_per_engine
    barrier = threading.Barrier(workers_total)
    failures: list[BaseException] = []

    def council(engine: Engine, n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                append(
                    engine,
                    principal=f"principal-{n}",
                    role="commissioner",
                    via="coordinator",
                    method=SUPPLY_MAP,
                    parameters={"thread": n, "i": i},
                    decision="released",
                    release_digest=digest_of(f"{n}/{i}".encode()),
                )
        except BaseException as exc:
            failures.append(exc)

    workers = [threading.Thread(target=council, args=(engines[n % len(engines)], n)) for n in range(workers_total)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert failures == []


def _assert_one_unbroken_chain(engine: Engine, total: int) -> None:
    log = entries(engine)
    assert [e.seq for e in log] == list(range(1, total + 1))
    assert len({e.parameters for e in log}) == total
    assert verify_chain(engine, expected_head=head(engine)) == total


def test_concurrent_appends_never_fork_the_chain(engine: Engine) -> None:
    _append_concurrently([engine], threads_per_engine=8, per_thread=25)
    _assert_one_unbroken_chain(engine, 200)


def test_appends_through_separate_engines_are_serialised_by_the_database(engine: Engine, database_url: str) -> None:
    # Each engine has its own process-level lock, so only the database's lock keeps these in turn,
    # as it must for writers in separate processes.
    others = [create_engine(database_url) for _ in range(3)]
    try:
        _append_concurrently([engine, *others], threads_per_engine=2, per_thread=25)
    finally:
        for other in others:
            other.dispose()
    _assert_one_unbroken_chain(engine, 200)


def test_sqlite_engine_that_begins_its_own_transactions_is_still_serialised(tmp_path: Path) -> None:
    # SQLAlchemy's documented pysqlite recipe: the driver's implicit BEGIN is off and every
    # transaction opens with a plain (deferred) BEGIN, so append cannot issue BEGIN IMMEDIATE itself.
    def recipe_engine() -> Engine:
        engine = create_engine(f"sqlite:///{tmp_path}/node.db")

        @event.listens_for(engine, "connect")
        def _no_driver_begin(dbapi_connection: sqlite3.Connection, _record: object) -> None:
            dbapi_connection.isolation_level = None

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN")

        return engine

    engines = [recipe_engine() for _ in range(4)]
    try:
        SQLModel.metadata.create_all(engines[0])
        _append_concurrently(engines, threads_per_engine=2, per_thread=10)
        _assert_one_unbroken_chain(engines[0], 80)
    finally:
        for engine in engines:
            engine.dispose()


def _recompute(record: dict[str, object]) -> str:
    """The entry hash as the module docstring defines it, computed here without shared.audit."""
    body = {name: value for name, value in record.items() if name != "entry_hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def test_export_is_json_lines_that_verify_independently(engine: Engine) -> None:
    _append_session(engine)
    out = io.StringIO()
    assert export_jsonl(engine, out) == 5
    lines = out.getvalue().splitlines()
    assert len(lines) == 5
    records = [json.loads(line) for line in lines]
    expected_fields = {
        "seq",
        "at",
        "principal",
        "role",
        "via",
        "method",
        "parameters",
        "decision",
        "release_digest",
        "policy_digest",
        "prev_hash",
        "entry_hash",
    }
    assert all(set(record) == expected_fields for record in records)

    previous = GENESIS_HASH
    for n, record in enumerate(records, start=1):
        assert record["seq"] == n
        assert record["prev_hash"] == previous
        assert _recompute(record) == record["entry_hash"]
        previous = record["entry_hash"]

    stored = entries(engine)
    assert [r["entry_hash"] for r in records] == [e.entry_hash for e in stored]
    assert records[0]["at"] == "2025-04-01T09:30:00.000000+00:00"
    assert json.loads(records[3]["parameters"])["note"] == "Sévérité — ünïcode"
    assert records[2]["decision"] == "rejected: replayed request"
    assert records[0]["release_digest"] == stored[0].release_digest


def test_export_of_an_empty_log_writes_nothing(engine: Engine) -> None:
    out = io.StringIO()
    assert export_jsonl(engine, out) == 0
    assert out.getvalue() == ""


def test_a_log_in_a_database_of_its_own_holds_only_its_table(database_url: str) -> None:
    """The coordinator's log: `open_log` makes its table and the coordinator's nonces beside it
    (again, harmlessly, on a second open), and the chain, the head and a partial export work there
    as in a node's store."""
    engine = open_log(database_url)
    try:
        assert sorted(inspect(engine).get_table_names()) == [
            "accepted_nonce",
            "alembic_version_audit",
            "alembic_version_nonces",
            "audit_log",
        ]
        _append_session(engine)
        again = open_log(database_url)
        try:
            assert verify_chain(again, expected_head=head(engine)) == 5
        finally:
            again.dispose()
        out = io.StringIO()
        assert export_jsonl(engine, out, since_seq=3) == 2
        assert [json.loads(line)["seq"] for line in out.getvalue().splitlines()] == [4, 5]
    finally:
        engine.dispose()


def test_entries_arriving_together_commit_together_and_one_failing_part_drops_only_itself(engine: Engine) -> None:
    """While one transaction is being written, the entries that arrive wait and go in the next one
    together (one disk sync for the group); each caller returns once its own entry is stored. An
    entry whose `also` fails (a nonce another process stored first) is refused alone: the rest of
    its group is written without it, and the chain has no gap."""
    outcomes: dict[int, BaseException | None] = {}
    seen_by_also: list[int] = []

    def spend(n: int) -> Callable[[Connection], None]:
        def also(conn: Connection) -> None:
            seen_by_also.append(n)
            if n == 2:
                raise ReplayedRequest()

        return also

    def council(n: int) -> None:
        try:
            write(
                engine,
                principal=f"officer-{n}",
                role="commissioner",
                via="coordinator",
                method=SUPPLY_MAP,
                parameters={"request": n},
                decision="released",
                release_digest=digest_of(f"answer {n}".encode()),
                also=spend(n),
            )
            outcomes[n] = None
        except BaseException as exc:
            outcomes[n] = exc

    # Hold the log's write lock, as a transaction being synced would, until all four have queued.
    with _append_lock(engine):
        workers = [threading.Thread(target=council, args=(n,)) for n in range(4)]
        for worker in workers:
            worker.start()
        while len(_committer(engine)._queue) < 4:
            threading.Event().wait(0.005)
    for worker in workers:
        worker.join()

    assert isinstance(outcomes.pop(2), ReplayedRequest)
    assert outcomes == {0: None, 1: None, 3: None}
    log = entries(engine)
    assert [e.seq for e in log] == [1, 2, 3]
    assert sorted(json.loads(e.parameters)["request"] for e in log) == [0, 1, 3]
    assert verify_chain(engine, expected_head=head(engine)) == 3
    # One group: its first attempt stopped at 2's part, then the other three were written together.
    first, again = seen_by_also[:-3], seen_by_also[-3:]
    assert first[-1] == 2 and seen_by_also.count(2) == 1 and sorted(again) == [0, 1, 3]
