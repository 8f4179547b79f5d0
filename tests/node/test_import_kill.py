"""A client-record import killed (kill -9) at each point of its work leaves the store wholly as it
was, and one that runs to the end leaves it wholly new; on SQLite and PostgreSQL.

The import runs in a process of its own (tests/importchild.py) that sends itself SIGKILL at the
point under test: part-way through reading the file, with every row staged, inside the write
transaction with the lock held, and with every row written just before the commit.
"""

from __future__ import annotations

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
from node.imports.records import import_client_records
from node.imports.supply import import_csv
from node.store import ensure_authority, open_store
from node.synthetic.clients import write_client_csvs
from node.synthetic.supply import generate, write_csvs

ROOT = Path(__file__).resolve().parents[2]
MEDWAY = "E06000035"
OLD_ROWS, NEW_ROWS = 12_000, 25_000  # the new file adds rows and changes some of the old ones
KILL_POINTS = ["rows=10000", "rows=20000", "staged", "locked", "written"]


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


def test_an_import_killed_anywhere_leaves_the_store_wholly_old_or_wholly_new(
    store: tuple[Engine, Path, Path, Path], database_url: str
) -> None:
    engine, new, key, _ = store
    old = fingerprint(engine)
    assert old[0] == OLD_ROWS
    for point in KILL_POINTS:
        done = run_import(database_url, new, key, "kill", point)
        assert done.returncode == -signal.SIGKILL, (point, done.stderr.decode()[-2000:])
        assert fingerprint(engine) == old, f"killed at {point}: the store is not as it was"
    done = run_import(database_url, new, key, "kill", "never")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    after = fingerprint(engine)
    assert after != old and after[0] == NEW_ROWS
    # The whole new state is the file's: importing it again in this process changes nothing.
    summary = import_client_records(engine, path=new, sealer=PersonSealer(load_person_key(key)))
    assert (summary.inserted, summary.updated) == (0, 0)
    assert fingerprint(engine) == after


def test_a_reimport_counts_what_it_inserts_and_updates(store: tuple[Engine, Path, Path, Path]) -> None:
    engine, new, key, _ = store
    summary = import_client_records(engine, path=new, sealer=PersonSealer(load_person_key(key)))
    assert summary.rows == NEW_ROWS
    assert summary.inserted == NEW_ROWS - OLD_ROWS
    assert summary.updated == len(range(0, OLD_ROWS, 10))
