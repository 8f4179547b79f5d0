"""Benchmark: a large client-record import, its rate against raw executemany, its peak memory, and
how long the rest of the node waits to write while it runs.

One node store (SQLite, as a new node runs it) with synthetic supply; for each size (default
100,000 and 1,000,000 records) a fresh copy of it imports a synthetic client-records.csv in a
process of its own, which reports its peak resident memory (flat memory: the two sizes should
need about the same). The floor is `bench/movement.py`'s: a raw executemany of the very same
rows, already converted, into a fresh database. While the largest import runs, a writer in
another process appends one small row every 20 ms, as a node's audit log, ledger and nonces do
while it answers; its longest wait for the write lock is what a query waits during an import.
Run: .venv/bin/python bench/imports.py [--records 100000 1000000]
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from movement import _load_supply, _raw_insert_floor  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from cagnet.demo import DEMO  # noqa: E402
from node.store import ensure_authority, open_store  # noqa: E402
from node.synthetic.clients import write_client_csvs  # noqa: E402

console = Console()
SEED = 1


def _import_child(url: str, csv_path: str, key_path: str, out: Any) -> None:
    from node.client_records import PersonSealer, load_person_key
    from node.imports.records import import_client_records

    engine = open_store(url)
    sealer = PersonSealer(load_person_key(Path(key_path)))
    started = time.perf_counter()
    summary = import_client_records(engine, path=Path(csv_path), sealer=sealer)
    elapsed = time.perf_counter() - started
    engine.dispose()
    out.put((summary.rows, elapsed, _peak_kib()))


def _peak_kib() -> int:
    """This process's own peak resident memory. Linux's ru_maxrss would include the parent's at the
    moment it started this process (it is kept across exec), so VmHWM is read where there is one."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _writer_child(db_path: str, stop: Any, out: Any) -> None:
    """Appends a row every 20 ms as an answering node does; reports the longest wait and count."""
    conn = sqlite3.connect(db_path, timeout=120, isolation_level=None)
    conn.execute("CREATE TABLE IF NOT EXISTS bench_answer (id INTEGER PRIMARY KEY, at REAL)")
    longest, writes = 0.0, 0
    while not stop.is_set():
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO bench_answer (at) VALUES (?)", (time.time(),))
        conn.execute("COMMIT")
        longest = max(longest, time.perf_counter() - started)
        writes += 1
        time.sleep(0.02)
    conn.execute("DROP TABLE bench_answer")
    conn.close()
    out.put((longest, writes))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, nargs="+", default=[100_000, 1_000_000])
    args = parser.parse_args()
    code = DEMO["members"][0]
    spawn = multiprocessing.get_context("spawn")
    results = []
    with tempfile.TemporaryDirectory(prefix="cagnet-bench-imports-") as tmp:
        root = Path(tmp)
        base = root / "base.db"
        engine = open_store(f"sqlite:///{base}")
        ensure_authority(engine, authority_code=code)
        supply = _load_supply(engine, root / "files", code, seed=SEED)
        engine.dispose()
        key_path = root / "person.key"
        for count in sorted(args.records):
            with console.status(f"writing {count:,} synthetic client records"):
                paths = write_client_csvs(supply, root / f"files-{count}", count=count, members=DEMO["members"])  # type: ignore[arg-type]
            db = root / f"node-{count}.db"
            shutil.copy(base, db)
            url = f"sqlite:///{db}"
            queue = spawn.Queue()
            importer = spawn.Process(
                target=_import_child, args=(url, str(paths["client-records"]), str(key_path), queue)
            )
            stop = spawn.Event()
            writer_queue = spawn.Queue()
            writer = spawn.Process(target=_writer_child, args=(str(db), stop, writer_queue))
            with console.status(f"importing {count:,} client records (and a writer alongside)"):
                writer.start()
                importer.start()
                rows, elapsed, peak_kib = queue.get()
                importer.join()
                stop.set()
                longest_wait, writes = writer_queue.get()
                writer.join()
            with console.status("raw executemany of the same rows"):
                engine = open_store(url)
                floor_s = _raw_insert_floor(engine, root / f"floor-{count}", root / "files", code, seed=SEED)
                engine.dispose()
            size_mib = paths["client-records"].stat().st_size / 2**20
            results.append((count, rows, elapsed, floor_s, peak_kib, longest_wait, writes, size_mib))
            console.print(
                f"  {rows:,} rows in {elapsed:.1f} s; raw insert {floor_s:.1f} s; peak {peak_kib / 1024:.0f} MiB"
            )

    table = Table(title="Client-record import, CSV (SQLite)")
    for name in ("records", "file MiB", "rows/s", "raw executemany rows/s", "ratio (goal ≥ 0.33)",
                 "peak RSS MiB", "longest wait of another writer, s", "writes meanwhile"):  # fmt: skip
        table.add_column(name, justify="right")
    for count, rows, elapsed, floor_s, peak_kib, longest_wait, writes, size_mib in results:
        table.add_row(
            f"{count:,}",
            f"{size_mib:,.0f}",
            f"{rows / elapsed:,.0f}",
            f"{rows / floor_s:,.0f}",
            f"{floor_s / elapsed:.2f}",
            f"{peak_kib / 1024:,.0f}",
            f"{longest_wait:.2f}",
            f"{writes:,}",
        )
    console.print(table)
    if len(results) > 1:
        small, large = results[0], results[-1]
        console.print(
            f"peak memory {large[4] / 1024:,.0f} MiB for {large[0]:,} records against {small[4] / 1024:,.0f} MiB "
            f"for {small[0]:,}: x{large[4] / small[4]:.2f} for x{large[0] / small[0]:.0f} the rows"
        )


if __name__ == "__main__":
    main()
