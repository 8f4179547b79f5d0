"""Benchmark: how long a large client-record import holds SQLite's write lock, written in place in one
transaction (as before `node.imports.swap`) and built beside the table and swapped in (as now).

For each size (default 100,000 and 1,000,000 records), on the same machine and the same files, each
way of writing imports the file into a fresh node store (an empty client_record table), then
imports it again with every tenth row changed (a store already holding that many records: the swap
then also retires and empties a table that size). Each import runs in a process of its own while a writer in
another process appends one small row every 20 ms, as a node's audit log, ledger and nonces do while
it answers. Printed: the import's time, how long its last transaction held the write lock (from the
moment it had the lock to the swap's commit; written in place, to the import's return, an upper
bound), and the other writer's longest write, which is what an answer waits during the import (the
build's transactions and the emptying of the replaced table included), with the longest it waited
for the lock alone (the rest is its own commit: an fsync, and a checkpoint when the log has grown).
The node's deadline in a joint query is 5 s.
Run: .venv/bin/python bench/import_lock.py [--records 100000 1000000] [--ways "build and swap"]
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from imports import _writer_child  # noqa: E402
from movement import _load_supply  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from cagnet.demo import DEMO  # noqa: E402
from node.store import ensure_authority, open_store  # noqa: E402
from node.synthetic.clients import write_client_csvs  # noqa: E402

console = Console()
SEED = 1
WAYS = ("in place", "build and swap")


def _import_child(url: str, path: str, key_path: str, in_place: bool, out: Any) -> None:
    import node.imports.staging
    from node.client_records import PersonSealer, load_person_key
    from node.imports.records import import_client_records

    if in_place:  # the write as it was before the swap: every file in one transaction
        node.imports.staging.SWAP_ROWS = 1 << 62
    engine = open_store(url)
    sealer = PersonSealer(load_person_key(Path(key_path)))
    marks: dict[str, float] = {}

    def on_phase(phase: str) -> None:
        marks.setdefault(phase, time.perf_counter())

    started = time.perf_counter()
    summary = import_client_records(engine, path=Path(path), sealer=sealer, on_phase=on_phase)
    ended = time.perf_counter()
    engine.dispose()
    out.put((summary.inserted, summary.updated, ended - started, marks.get("swapped", ended) - marks["locked"]))


def _changed(path: Path, out: Path) -> None:
    """`path` with the referral source of every tenth row changed."""
    with path.open(newline="", encoding="utf-8") as f, out.open("w", newline="", encoding="utf-8") as g:
        rows, writer = csv.reader(f), csv.writer(g)
        header = next(rows)
        writer.writerow(header)
        column = header.index("referral_source")
        for i, row in enumerate(rows):
            if i % 10 == 0:
                row[column] = "probation" if row[column] != "probation" else "police"
            writer.writerow(row)


def _import(spawn: Any, db: Path, path: Path, key_path: Path, in_place: bool) -> tuple[int, int, float, float, str]:
    queue = spawn.Queue()
    importer = spawn.Process(target=_import_child, args=(f"sqlite:///{db}", str(path), str(key_path), in_place, queue))
    stop = spawn.Event()
    writer_queue = spawn.Queue()
    writer = spawn.Process(target=_writer_child, args=(str(db), stop, writer_queue))
    writer.start()
    importer.start()
    inserted, updated, elapsed, locked_s = queue.get()
    importer.join()
    stop.set()
    longest_wait, _writes, lock_wait = writer_queue.get()
    writer.join()
    return inserted, updated, elapsed, locked_s, f"{longest_wait:.2f} ({lock_wait:.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--ways", nargs="+", choices=WAYS, default=list(WAYS), help="which ways of writing to time")
    args = parser.parse_args()
    code = DEMO["members"][0]
    spawn = multiprocessing.get_context("spawn")
    results = []
    with tempfile.TemporaryDirectory(prefix="cagnet-bench-import-lock-") as tmp:
        root = Path(tmp)
        base = root / "base.db"
        engine = open_store(f"sqlite:///{base}")
        ensure_authority(engine, authority_code=code)
        supply = _load_supply(engine, root / "files", code, seed=SEED)
        engine.dispose()
        key_path = root / "person.key"
        for count in sorted(args.records):
            with console.status(f"writing {count:,} synthetic client records, and again with a tenth changed"):
                files = write_client_csvs(supply, root / f"files-{count}", count=count, members=DEMO["members"])  # type: ignore[arg-type]
                first = files["client-records"]
                again = root / f"files-{count}" / "changed.csv"
                _changed(first, again)
            for way in args.ways:
                db = root / f"node-{count}.db"
                shutil.copy(base, db)
                for label, path in (("into an empty table", first), (f"again, {count:,} stored", again)):
                    with console.status(f"{way}: importing {count:,} records {label}"):
                        inserted, updated, elapsed, locked_s, wait = _import(spawn, db, path, key_path, way == WAYS[0])
                    results.append((count, way, label, inserted, updated, elapsed, locked_s, wait))
                    console.print(
                        f"  {count:,} {way}, {label}: {elapsed:.1f} s; lock held {locked_s:.2f} s; "
                        f"another writer's longest write {wait} s (waiting for the lock)"
                    )
                for side in ("", "-wal", "-shm", "-import.lock"):
                    Path(f"{db}{side}").unlink(missing_ok=True)

    table = Table(title="How long a client-record import holds SQLite's write lock")
    for name in ("records", "written", "import", "inserted", "updated", "import s", "lock held by the last "
                 "transaction, s", "another writer's longest write, s (lock wait)"):  # fmt: skip
        table.add_column(name, justify="right")
    for count, way, label, inserted, updated, elapsed, locked_s, wait in results:
        table.add_row(
            f"{count:,}",
            way,
            label,
            f"{inserted:,}",
            f"{updated:,}",
            f"{elapsed:.1f}",
            f"{locked_s:.2f}",
            wait,
        )
    console.print(table)


if __name__ == "__main__":
    main()
