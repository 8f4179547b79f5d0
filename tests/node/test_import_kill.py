"""A client-record import killed (kill -9) at each point of its work leaves the store wholly as it
was, and one that runs to the end leaves it wholly new; on SQLite and PostgreSQL.

The import runs in a process of its own (tests/importchild.py) that sends itself SIGKILL at the
point under test: part-way through reading the file, with every row staged, inside the write
transaction with the lock held, and with every row written just before the commit. On SQLite a file
this large is written that way only when no node serves the store; while one does (the test holds
the serving lock as a node does, `node.imports.swap.serving`), it is written by building the
table's next version beside it and swapping it in (`node.imports.swap`), so the import is also
killed part-way through the build and with it built (the store wholly old), and once swapped before
the replaced table is dropped (wholly new); the schema is then byte for byte as it was, and nothing
is left beside it after the next import, which no node serves, and which writes in place.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from node.client_records import ClientRecord, PersonSealer, load_person_key
from node.imports.records import import_client_records, import_outcomes
from node.imports.staging import ALONE, SWAPPED
from node.imports.supply import import_csv
from node.imports.swap import BUILD_PREFIX, RETIRED_PREFIX, SWAP_ROWS, serving
from node.store import ensure_authority, open_store
from node.synthetic.clients import write_client_csvs
from node.synthetic.supply import generate, write_csvs
from shared.errors import ImportError_
from shared.serving import AlreadyServing

ROOT = Path(__file__).resolve().parents[2]
MEDWAY = "E06000035"
OLD_ROWS, NEW_ROWS = 12_000, 25_000  # the new file adds rows and changes some of the old ones
KILL_POINTS = ["rows=10000", "rows=20000", "staged", "locked", "written"]
SERVED_KILL_POINTS = ["rows=10000", "staged", "building", "built", "locked", "written"]  # SQLite, a node serving
ALONE_KILL_POINTS = ["staged", "locked", "written"]  # SQLite, no node serving: written in place


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[tuple[Engine, Path, Path, Path]]:
    """A node store holding OLD_ROWS client records; the path of a file that changes them; its
    person key."""
    engine = open_store(database_url)
    ensure_authority(engine, authority_code=MEDWAY)
    supply = generate(MEDWAY, seed=3)
    for kind, path in write_csvs(supply, tmp_path / "supply").items():
        import_csv(engine, kind=kind, path=path)  # type: ignore[arg-type]
    new = write_client_csvs(supply, tmp_path / "new", count=NEW_ROWS)["client-records"]
    old = tmp_path / "old.csv"
    with new.open(newline="") as f:
        rows = list(csv.reader(f))
    with old.open("w", newline="") as f:
        csv.writer(f).writerows(rows[: OLD_ROWS + 1])
    # Change a column of every tenth old row, so the new import updates as well as inserts.
    column = rows[0].index("referral_source")
    for row in rows[1 : OLD_ROWS + 1 : 10]:
        row[column] = "probation" if row[column] != "probation" else "police"
    with new.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    key = tmp_path / "person.key"
    import_client_records(engine, path=old, sealer=PersonSealer(load_person_key(key)))
    try:
        yield engine, new, key, tmp_path
    finally:
        engine.dispose()


@pytest.fixture
def served(store: tuple[Engine, Path, Path, Path]) -> Iterator[tuple[Engine, Path, Path, Path]]:
    """The store, with its serving lock held as a node serving it holds it: large SQLite imports
    build beside the table and swap it in."""
    with serving(store[0]):
        yield store


def fingerprint(engine: Engine) -> tuple[int, str]:
    """How many client records, and a digest of every stored value but the timestamps."""
    table = ClientRecord.__table__  # type: ignore[attr-defined]
    columns = [c for c in table.c if c.name not in ("id", "created_at", "updated_at")]
    digest = hashlib.sha256()
    rows = 0
    with engine.connect() as conn:
        for row in conn.execute(select(*columns).order_by(table.c.record_ref)):
            digest.update(repr(tuple(row)).encode())
            rows += 1
    return rows, digest.hexdigest()


def run_import(url: str, file: Path, key: Path, action: str, where: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.importchild", url, str(file), str(key), action, where]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, timeout=300, check=False)


def schema(engine: Engine) -> list[tuple[str, str, str, str | None]]:
    """The database's schema as SQLite holds it (every CREATE statement's text), or PostgreSQL's
    tables; and whether any table is left over from a build."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            query = "SELECT type, name, tbl_name, sql FROM sqlite_schema ORDER BY type, name"
        else:
            query = "SELECT 'table', tablename, tablename, NULL FROM pg_tables WHERE schemaname = 'public' ORDER BY 2"
        return [tuple(row) for row in conn.exec_driver_sql(query)]  # type: ignore[misc]


@pytest.mark.faults
def test_an_import_killed_anywhere_leaves_the_store_wholly_old_or_wholly_new(
    store: tuple[Engine, Path, Path, Path], database_url: str
) -> None:
    engine, new, key, _ = store
    old = fingerprint(engine)
    assert old[0] == OLD_ROWS
    tables = schema(engine)
    assert NEW_ROWS >= SWAP_ROWS  # so that SQLite builds and swaps
    sqlite = engine.dialect.name == "sqlite"

    def killed(point: str) -> None:
        done = run_import(database_url, new, key, "kill", point)
        assert done.returncode == -signal.SIGKILL, (point, done.stderr.decode()[-2000:])
        assert fingerprint(engine) == old, f"killed at {point}: the store is not as it was"

    for point in ALONE_KILL_POINTS if sqlite else KILL_POINTS:
        killed(point)
    if sqlite:
        with serving(engine):  # as a serving node holds it: the import builds beside and swaps
            for point in SERVED_KILL_POINTS:
                killed(point)
            # The last build killed part-way is still there, read by nothing.
            assert any(name.startswith(BUILD_PREFIX) for _, name, _, _ in schema(engine))
            # Killed once the swap has committed, before the replaced table is emptied: wholly new.
            done = run_import(database_url, new, key, "kill", "swapped")
            assert done.returncode == -signal.SIGKILL, done.stderr.decode()[-2000:]
        swapped = fingerprint(engine)
        assert swapped != old and swapped[0] == NEW_ROWS
        assert any(name.startswith(RETIRED_PREFIX) for _, name, _, _ in schema(engine))
    # No node serving: written in place, and the retired table left by the kill is dropped first.
    done = run_import(database_url, new, key, "kill", "never")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    after = fingerprint(engine)
    assert after != old and after[0] == NEW_ROWS
    assert schema(engine) == tables  # the same statements, and nothing left beside them
    if sqlite:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").all() == [("ok",)]
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    # The whole new state is the file's: importing it again in this process changes nothing.
    summary = import_client_records(engine, path=new, sealer=PersonSealer(load_person_key(key)))
    assert (summary.inserted, summary.updated) == (0, 0)
    assert summary.written == (ALONE if sqlite else "")
    assert fingerprint(engine) == after


@pytest.mark.parametrize("served", [False, True], ids=["no node serving", "a node serving"])
def test_a_large_import_says_how_it_wrote_and_is_all_or_nothing_either_way(
    store: tuple[Engine, Path, Path, Path], served: bool
) -> None:
    """With no node serving the store, a large SQLite import writes in place in one transaction;
    with one serving it, it builds beside the table and swaps it in. Either way a bad row mid-file,
    or a failure with every row written just before the commit, leaves the store as it was; and
    the summary says which way it went, and why. PostgreSQL writes in place and says nothing."""
    engine, new, key, tmp_path = store
    sealer = PersonSealer(load_person_key(key))
    before = fingerprint(engine)
    with new.open(newline="") as f:
        rows = list(csv.reader(f))
    bad = [list(row) for row in rows]
    bad[NEW_ROWS // 2][rows[0].index("start_date")] = "31/02/2009"
    broken = tmp_path / "broken.csv"
    with broken.open("w", newline="") as f:
        csv.writer(f).writerows(bad)

    refused: list[str] = []

    def fail(phase: str) -> None:
        if phase == "locked" and sqlite and not served:
            # The store's write lock is held for the whole file now: a node starting is refused
            # (it would wait on that lock and miss its first answers) rather than kept waiting.
            with (
                pytest.raises(AlreadyServing, match=r"an import is writing into .* in one transaction"),
                serving(engine),
            ):
                pass
            refused.append(phase)
        if phase == "written":
            raise RuntimeError("stopped with every row written")

    sqlite = engine.dialect.name == "sqlite"
    with serving(engine) if served else contextlib.nullcontext():
        with pytest.raises(ImportError_, match=f"row {NEW_ROWS // 2 + 1}"):
            import_client_records(engine, path=broken, sealer=sealer)
        assert fingerprint(engine) == before
        with pytest.raises(RuntimeError, match="every row written"):
            import_client_records(engine, path=new, sealer=sealer, on_phase=fail)
        assert fingerprint(engine) == before
        assert refused == (["locked"] if sqlite and not served else [])
        summary = import_client_records(engine, path=new, sealer=sealer)
    assert summary.written == ("" if not sqlite else SWAPPED if served else ALONE)
    assert str(summary).endswith(f"({summary.written})" if sqlite else "unchanged")
    assert fingerprint(engine)[0] == NEW_ROWS
    assert not any(name.startswith((BUILD_PREFIX, RETIRED_PREFIX)) for _, name, _, _ in schema(engine))


def test_a_reimport_counts_what_it_inserts_and_updates(store: tuple[Engine, Path, Path, Path]) -> None:
    engine, new, key, _ = store
    before = fingerprint(engine)
    # A dry run counts the same without writing (on SQLite, without building anything).
    checked = import_client_records(engine, path=new, sealer=PersonSealer(load_person_key(key)), dry_run=True)
    assert fingerprint(engine) == before
    summary = import_client_records(engine, path=new, sealer=PersonSealer(load_person_key(key)))
    assert (checked.inserted, checked.updated) == (summary.inserted, summary.updated)
    assert summary.rows == NEW_ROWS
    assert summary.inserted == NEW_ROWS - OLD_ROWS
    assert summary.updated == len(range(0, OLD_ROWS, 10))


def test_outcomes_keep_their_client_records_when_the_table_is_swapped(
    served: tuple[Engine, Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every stored record keeps its id through a build and swap (SQLite), so the outcomes that
    point at records still point at the same ones, and a changed row is counted as updated. Every
    import here builds and swaps, the outcomes' too (their file is smaller than SWAP_ROWS)."""
    monkeypatch.setattr("node.imports.staging.SWAP_ROWS", 1)
    engine, new, key, tmp_path = served
    sealer = PersonSealer(load_person_key(key))
    import_client_records(engine, path=new, sealer=sealer)
    outcomes = tmp_path / "new" / "outcomes.csv"
    assert import_records_outcomes(engine, outcomes) > 0
    linked = outcome_links(engine)
    assert import_records_outcomes(engine, outcomes) == 0
    assert outcome_links(engine) == linked
    with new.open(newline="") as f:
        rows = list(csv.reader(f))
    column = rows[0].index("referral_source")
    for row in rows[1::7]:
        row[column] = "probation" if row[column] != "probation" else "police"
    changed = tmp_path / "changed.csv"
    with changed.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    summary = import_client_records(engine, path=changed, sealer=sealer)
    assert (summary.inserted, summary.updated) == (0, len(rows[1::7]))
    assert outcome_links(engine) == linked
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []


def import_records_outcomes(engine: Engine, path: Path) -> int:
    return import_outcomes(engine, path=path).inserted


def outcome_links(engine: Engine) -> list[tuple[str, str]]:
    """(record_ref, end_date) of every outcome, through its client record's id."""
    with engine.connect() as conn:
        query = (
            "SELECT c.record_ref, o.end_date FROM outcome AS o JOIN client_record AS c "
            "ON c.id = o.client_record_id ORDER BY c.record_ref"
        )
        return [(str(ref), str(end)) for ref, end in conn.exec_driver_sql(query)]


def test_a_build_leaves_its_connection_as_durable_as_it_found_it(
    served: tuple[Engine, Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A build commits unsynced and without checkpoints (`node.imports.swap._unsynced`), and its
    pauses may shorten the busy timeout to start the log afresh; the connection goes back to the
    pool, and the node's next writes on it (audit entries, ledger) must be synced and wait as long
    as ever: checked after an import that swapped and after one refused part-way."""
    engine, new, key, tmp_path = served
    # Every pause starts the log afresh, as one past 64 MiB does in a million-record build.
    monkeypatch.setattr("node.imports.swap.LOG_PAGES", 0)
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL writes in place: nothing to put back")

    def settings() -> tuple[int, int, int, int]:
        assert engine.pool.checkedin() == 1  # type: ignore[attr-defined]  # the import's own connection
        with engine.connect() as conn:
            synchronous = conn.exec_driver_sql("PRAGMA synchronous").scalar_one()
            checkpoint = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
            timeout = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()
        assert mode == "wal"
        return int(synchronous), int(checkpoint), int(timeout), engine.pool.checkedin()  # type: ignore[attr-defined]

    before = settings()
    assert before[:3] == (2, 1000, 30_000)  # FULL, SQLite's own checkpoint every 1,000 pages, the store's 30 s
    summary = import_client_records(engine, path=new, sealer=PersonSealer(load_person_key(key)))
    assert summary.inserted == NEW_ROWS - OLD_ROWS
    assert settings() == before
    # Stopped in the middle of the build by a store that changed underneath: put back all the same.
    with new.open(newline="") as f:
        rows = list(csv.reader(f))
    column = rows[0].index("referral_source")
    for row in rows[1::3]:
        row[column] = "probation" if row[column] != "probation" else "police"
    changed = tmp_path / "changed-again.csv"
    with changed.open("w", newline="") as f:
        csv.writer(f).writerows(rows)

    def refuse(phase: str) -> None:
        if phase == "building":
            raise RuntimeError("stopped while building")

    with pytest.raises(RuntimeError, match="stopped while building"):
        import_client_records(engine, path=changed, sealer=PersonSealer(load_person_key(key)), on_phase=refuse)
    assert settings() == before
    assert not any(name.startswith(BUILD_PREFIX) for _, name, _, _ in schema(engine))
