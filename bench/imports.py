"""Benchmark: a large client-record import from CSV and from Excel, its rate against raw
executemany, its peak memory, and how long the rest of the node waits to write while it runs;
with no node serving the store and with one serving it.

One node store (SQLite, as a new node runs it) with synthetic supply; for each size (default
100,000 and 1,000,000 records) a fresh copy of it imports a synthetic client-records.csv, and the
same rows as an .xlsx workbook (written with openpyxl's write-only mode, numbers and dates typed as
Excel holds them; a sheet holds at most 1,048,575 data rows), each in a process of its own, which
reports its peak resident memory (flat memory: the two sizes should need about the same). The floor
is `bench/movement.py`'s: a raw executemany of the very same rows, already converted, into a fresh
database.

Each file is imported twice. With no node serving the store (the first load before `cagnet node
serve`, a node stopped for maintenance) the import writes in place in one transaction: that is the
rate issue 20 measures against raw executemany (goal: at least a third). With a node serving it
(this script holds the lock a serving node holds beside the store, `node.imports.swap.serving`),
a large import builds the table beside the live one and swaps it in, so the node keeps answering;
meanwhile a writer in another process appends one small row every 20 ms, as a node's audit log,
ledger and nonces do while it answers, and its longest wait for the write lock is what a query waits
during an import. The import reports how long its last transaction held the write lock, and the
table how large SQLite's log file (`-wal`) grew meanwhile.
Run: .venv/bin/python bench/imports.py [--records 100000 1000000] [--xlsx 100000] [--paths alone serving]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import multiprocessing
import resource
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import openpyxl  # noqa: E402
from movement import _load_supply, _raw_insert_floor  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import create_engine  # noqa: E402

from cagnet.demo import DEMO  # noqa: E402
from node.imports.swap import serving  # noqa: E402
from node.store import ensure_authority, open_store  # noqa: E402
from node.synthetic.clients import write_client_csvs  # noqa: E402

console = Console()
SEED = 1


def _import_child(url: str, path: str, key_path: str, out: Any) -> None:
    from node.client_records import PersonSealer, load_person_key
    from node.imports.records import import_client_records

    engine = open_store(url)
    sealer = PersonSealer(load_person_key(Path(key_path)))
    marks: dict[str, float] = {}

    def on_phase(phase: str) -> None:
        marks.setdefault(phase, time.perf_counter())

    started = time.perf_counter()
    summary = import_client_records(engine, path=Path(path), sealer=sealer, on_phase=on_phase)
    ended = time.perf_counter()
    engine.dispose()
    # From the moment the last transaction had the write lock to the swap's commit (to the import's
    # return when it wrote in place: an upper bound on how long it held it, its commit included).
    locked_s = marks.get("swapped", ended) - marks["locked"]
    out.put((summary.rows, ended - started, _peak_kib(), locked_s, summary.written))


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
    """Appends a row every 20 ms as an answering node does; reports its longest write, the longest
    of those waits for the write lock alone (BEGIN IMMEDIATE; the rest is its own commit: an fsync,
    and a checkpoint when the log has grown), and how many it made."""
    conn = sqlite3.connect(db_path, timeout=600, isolation_level=None)
    conn.execute("CREATE TABLE IF NOT EXISTS bench_answer (id INTEGER PRIMARY KEY, at REAL)")
    longest, longest_lock, writes = 0.0, 0.0, 0
    while not stop.is_set():
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        longest_lock = max(longest_lock, time.perf_counter() - started)
        conn.execute("INSERT INTO bench_answer (at) VALUES (?)", (time.time(),))
        conn.execute("COMMIT")
        longest = max(longest, time.perf_counter() - started)
        writes += 1
        time.sleep(0.02)
    conn.execute("DROP TABLE bench_answer")
    conn.close()
    out.put((longest, writes, longest_lock))


def _write_xlsx(csv_path: Path, xlsx_path: Path) -> None:
    """The CSV's rows as an Excel workbook would hold them: openpyxl's write-only mode (streamed, so
    a million rows need no more memory than ten), numbers as numbers and dates as dates."""
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("client records")
    with csv_path.open(newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        header = next(rows)
        sheet.append(header)
        dates = [i for i, name in enumerate(header) if name in ("start_date", "date_of_birth")]
        numbers = [i for i, name in enumerate(header) if name == "client_group"]
        for row in rows:
            cells: list[Any] = list(row)
            for i in dates:
                if cells[i]:
                    cells[i] = date.fromisoformat(cells[i])
            for i in numbers:
                cells[i] = int(cells[i])
            sheet.append(cells)
    workbook.save(xlsx_path)


def _import(
    spawn: Any, db: Path, path: Path, key_path: Path, served: bool
) -> tuple[int, float, int, float, str, str, int, float]:
    """Import `path` into `db` in a process of its own; with `served`, holding the serving lock as a
    node does, with a writer alongside. (rows, seconds, peak KiB, seconds the last transaction held
    the lock, how the import says it wrote, another writer's longest write (and the longest it
    waited for the lock), its writes, the largest SQLite's log file grew in MiB)."""
    with contextlib.ExitStack() as stack:
        if served:
            # An engine that never connects: the serving lock is a file beside the database, and
            # this process should hold nothing in the database itself.
            engine = create_engine(f"sqlite:///{db}")
            stack.callback(engine.dispose)
            stack.enter_context(serving(engine))
        return _run_import(spawn, db, path, key_path, served)


def _run_import(
    spawn: Any, db: Path, path: Path, key_path: Path, served: bool
) -> tuple[int, float, int, float, str, str, int, float]:
    largest = [0]
    done = threading.Event()

    def watch() -> None:
        # Looked at while the import runs: the last connection to close removes the log file.
        wal = Path(f"{db}-wal")
        while not done.wait(0.05):
            with contextlib.suppress(OSError):  # not made yet, or removed
                largest[0] = max(largest[0], wal.stat().st_size)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    queue = spawn.Queue()
    importer = spawn.Process(target=_import_child, args=(f"sqlite:///{db}", str(path), str(key_path), queue))
    stop = spawn.Event()
    writer_queue = spawn.Queue()
    writer = spawn.Process(target=_writer_child, args=(str(db), stop, writer_queue))
    if served:  # no node, nothing answering: nobody else writes
        writer.start()
    importer.start()
    rows, elapsed, peak_kib, locked_s, written = queue.get()
    importer.join()
    stop.set()
    waited, writes = "-", 0
    if served:
        longest_wait, writes, lock_wait = writer_queue.get()
        writer.join()
        waited = f"{longest_wait:.2f} ({lock_wait:.2f})"
    done.set()
    watcher.join()
    return rows, elapsed, peak_kib, locked_s, written, waited, writes, largest[0] / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument(
        "--xlsx",
        type=int,
        nargs="*",
        default=None,
        help="sizes also imported as .xlsx (default: the same as --records; none: CSV only)",
    )
    parser.add_argument(
        "--paths",
        nargs="+",
        choices=("alone", "serving"),
        default=["alone", "serving"],
        help="import with no node serving the store (alone), with one serving it, or both",
    )
    args = parser.parse_args()
    if any(n < 1 for n in [*args.records, *(args.xlsx or [])]):
        # A size of 0 would time nothing and divide by it; CSV only is `--xlsx` with no sizes.
        parser.error("a size is a number of records, at least 1 (for CSV only, give --xlsx with no sizes)")
    xlsx_sizes = set(args.records if args.xlsx is None else args.xlsx)
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
        for count in sorted(set(args.records) | xlsx_sizes):
            with console.status(f"writing {count:,} synthetic client records"):
                paths = write_client_csvs(supply, root / f"files-{count}", count=count, members=DEMO["members"])  # type: ignore[arg-type]
            files = [("CSV", paths["client-records"])]
            if count in xlsx_sizes:
                xlsx = paths["client-records"].with_suffix(".xlsx")
                with console.status(f"writing {count:,} client records as .xlsx (openpyxl, write-only)"):
                    _write_xlsx(paths["client-records"], xlsx)
                files.append(("XLSX", xlsx))
            floor_s = None
            for (form, path), way in [(f, w) for f in files for w in args.paths]:
                db = root / f"node-{count}-{form}.db"
                shutil.copy(base, db)
                served = way == "serving"
                doing = "a node serving, a writer alongside" if served else "no node serving"
                with console.status(f"importing {count:,} client records from {form} ({doing})"):
                    rows, elapsed, peak_kib, locked_s, written, longest_wait, writes, log_mib = _import(
                        spawn, db, path, key_path, served
                    )
                if floor_s is None:
                    with console.status("raw executemany of the same rows"):
                        engine = open_store(f"sqlite:///{db}")
                        floor_s = _raw_insert_floor(engine, root / f"floor-{count}", root / "files", code, seed=SEED)
                        engine.dispose()
                size_mib = path.stat().st_size / 2**20
                results.append(
                    (form, count, way, rows, elapsed, floor_s, peak_kib, locked_s, longest_wait, writes, size_mib,
                     log_mib)
                )  # fmt: skip
                console.print(
                    f"  {form} {rows:,} rows, {way}: {written or 'written in one transaction'}, in {elapsed:.1f} s; "
                    f"raw insert {floor_s:.1f} s; peak "
                    f"{peak_kib / 1024:.0f} MiB; last transaction held the lock {locked_s:.2f} s; another writer's "
                    f"longest write {longest_wait} s (waiting for the lock)"
                )
                db.unlink()

    table = Table(title="Client-record import into SQLite: CSV and XLSX against raw executemany")
    for name in ("file", "records", "node serving?", "file MiB", "rows/s", "raw executemany rows/s",
                 "ratio (CSV, no node: goal ≥ 0.33)",
                 "peak RSS MiB", "lock held by the last transaction, s",
                 "another writer's longest write, s (lock wait)",
                 "writes meanwhile", "log file MiB"):  # fmt: skip
        table.add_column(name, justify="right")
    for (
        form,
        count,
        way,
        rows,
        elapsed,
        floor_s,
        peak_kib,
        locked_s,
        longest_wait,
        writes,
        size_mib,
        log_mib,
    ) in results:
        table.add_row(
            form,
            f"{count:,}",
            "no: in place" if way == "alone" else "yes: build, swap",
            f"{size_mib:,.0f}",
            f"{rows / elapsed:,.0f}",
            f"{rows / floor_s:,.0f}",
            f"{floor_s / elapsed:.2f}",
            f"{peak_kib / 1024:,.0f}",
            f"{locked_s:.2f}",
            longest_wait,
            f"{writes:,}",
            f"{log_mib:,.0f}",
        )
    console.print(table)
    for form in ("CSV", "XLSX"):
        sizes = [r for r in results if r[0] == form and r[2] == args.paths[0]]
        if len(sizes) > 1:
            small, large = sizes[0], sizes[-1]
            console.print(
                f"{form}: peak memory {large[6] / 1024:,.0f} MiB for {large[1]:,} records against "
                f"{small[6] / 1024:,.0f} MiB for {small[1]:,}: x{large[6] / small[6]:.2f} for "
                f"x{large[1] / small[1]:.0f} the rows"
            )


if __name__ == "__main__":
    main()
