"""The register's log on SQLite and PostgreSQL: proofs from the stored tree match the reference,
appends are atomic and serialised, a crash mid-append leaves a consistent log, and an entry edited
behind the log's back is caught."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from coordinator.register import store
from shared import merkle
from shared.errors import InconsistentLog, NotFound, ReplayedRequest


def _entry(i: int, tag: str = "") -> store.PreparedEntry:
    data = f'{{"entry":{i},"tag":"{tag}"}}'.encode()
    return store.PreparedEntry(
        data=data,
        payload_digest=hashlib.sha256(data).hexdigest(),
        authority="E10000016" if i % 2 else "E06000035",
        provider_keys=(f"charity:{1000000 + i % 5}", f"name:provider {i % 5}"),
        decision="accredited",
    )


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = store.open_register(database_url)
    yield engine
    engine.dispose()


def test_proofs_from_the_store_match_the_reference(engine: Engine) -> None:
    entries = [_entry(i) for i in range(37)]
    # One at a time, then in batches: both paths build the same tree.
    for e in entries[:10]:
        store.append(engine, [e])
    assert store.append(engine, entries[10:30]) == list(range(10, 30))
    store.append(engine, entries[30:])
    leaves = [merkle.leaf_hash(e.data) for e in entries]
    assert store.tree_head(engine) == (37, merkle.root_of(leaves))
    for size in (1, 2, 3, 8, 13, 16, 31, 37):
        assert store.root_at(engine, size) == merkle.root_of(leaves[:size])
        for index in range(size):
            assert store.inclusion_proof(engine, index, size) == merkle.inclusion_proof(leaves, index, size)
        for first in range(size + 1):
            assert store.consistency_proof(engine, first, size) == merkle.consistency_proof(leaves, first, size)
    assert store.entries(engine, 5, 9) == [e.data for e in entries[5:9]]
    assert store.leaf_indexes_for(engine, "name:provider 3") == [3, 8, 13, 18, 23, 28, 33]
    assert store.leaf_indexes_for(engine, "charity:1000003", below=10) == [3, 8]
    assert store.verify_log(engine) == 37
    with pytest.raises(NotFound):
        store.inclusion_proof(engine, 0, 38)


def test_an_entry_is_logged_once_and_a_batch_is_all_or_nothing(engine: Engine) -> None:
    store.append(engine, [_entry(0), _entry(1)])
    with pytest.raises(ReplayedRequest):
        store.append(engine, [_entry(1)])
    with pytest.raises(ReplayedRequest):
        store.append(engine, [_entry(2), _entry(3), _entry(0)])
    with pytest.raises(ReplayedRequest):
        store.append(engine, [_entry(4), _entry(4)])
    assert store.tree_head(engine)[0] == 2
    assert store.append(engine, [_entry(2)]) == [2]
    assert store.verify_log(engine) == 3


def test_an_exception_before_commit_leaves_the_log_as_it_was(engine: Engine) -> None:
    store.append(engine, [_entry(0)])
    before = store.tree_head(engine)

    def fail() -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        store.append(engine, [_entry(1), _entry(2)], on_written=fail)
    assert store.tree_head(engine) == before
    assert store.verify_log(engine) == 1
    assert store.append(engine, [_entry(1)]) == [1]


CRASH = """
import hashlib, os, signal, sys
from coordinator.register import store
engine = store.open_register(sys.argv[1])
data = b'{"entry":"in flight"}'
prepared = store.PreparedEntry(data, hashlib.sha256(data).hexdigest(), "E10000016", ("name:x",), "accredited")
store.append(engine, [prepared], on_written=lambda: os.kill(os.getpid(), signal.SIGKILL))
"""


def test_a_crash_in_the_middle_of_an_append_leaves_a_consistent_log(engine: Engine, database_url: str) -> None:
    store.append(engine, [_entry(i) for i in range(5)])
    before = store.tree_head(engine)
    # Another process writes every row of an append, then dies before it commits.
    done = subprocess.run([sys.executable, "-c", CRASH, database_url], capture_output=True, timeout=60)
    assert done.returncode == -9, done.stderr
    assert store.tree_head(engine) == before
    assert store.verify_log(engine) == 5
    assert store.append(engine, [_entry(5)]) == [5]
    assert store.verify_log(engine) == 6


def test_appends_from_several_writers_are_serialised(database_url: str) -> None:
    # Separate engines stand for separate coordinator processes: only the database lock orders them.
    engines = [store.open_register(database_url) for _ in range(4)]
    got: list[int] = []
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for i in range(8):
                got.extend(store.append(engines[w], [_entry(w * 100 + i)]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        assert sorted(got) == list(range(32))
        assert store.verify_log(engines[0]) == 32
    finally:
        for e in engines:
            e.dispose()


def test_an_entry_edited_behind_the_logs_back_is_detected(engine: Engine) -> None:
    store.append(engine, [_entry(i) for i in range(9)])
    size, root = store.tree_head(engine)
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE register_leaf SET entry = :e WHERE leaf_index = 4"), {"e": b'{"entry":4,"tag":"forged"}'}
        )
    with pytest.raises(InconsistentLog, match="leaf 4"):
        store.verify_log(engine)
    # Whoever reads it with its proof sees it too: the bytes no longer hash to the leaf.
    (data,) = store.entries(engine, 4, 5)
    with pytest.raises(InconsistentLog):
        merkle.verify_inclusion(merkle.leaf_hash(data), 4, size, store.inclusion_proof(engine, 4, size), root)


def test_a_subtree_or_head_edited_behind_the_logs_back_is_detected(engine: Engine) -> None:
    store.append(engine, [_entry(i) for i in range(9)])
    with engine.begin() as conn:
        conn.execute(text("UPDATE register_node SET hash = :h WHERE node_id = :n"), {"h": b"\0" * 32, "n": 1 << 48})
    with pytest.raises(InconsistentLog, match="subtree"):
        store.verify_log(engine)


def test_a_rewritten_head_is_detected(engine: Engine) -> None:
    store.append(engine, [_entry(i) for i in range(3)])
    with engine.begin() as conn:
        conn.execute(text("UPDATE register_tree SET root = :r"), {"r": b"\1" * 32})
    with pytest.raises(InconsistentLog, match="head"):
        store.verify_log(engine)
