"""Benchmark: what keeping seen nonces in the node's database costs per request.

A node checks each request's nonce, and each principal query it answers per method, against its
`seen_nonce` table as well as memory (`node.ledger.PersistentNonceCache`), so that a replay is
refused across a restart. This times N fresh nonces through the in-memory cache alone (the floor)
and through the persistent cache on an SQLite file and, if CAGNET_TEST_POSTGRES_URL (or
--postgres URL) names a server, a fresh PostgreSQL database, and prints the median and p95 per
check and the ratio to the floor. Run: .venv/bin/python bench/nonces.py [--checks N]
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from node.ledger import PersistentNonceCache  # noqa: E402
from node.store import open_store  # noqa: E402
from shared.auth import NonceCache, now_ms  # noqa: E402

console = Console()


def _time(check: Callable[[bytes, int, int], None], n: int) -> list[float]:
    timings = []
    for _ in range(n):
        nonce = secrets.token_bytes(16)
        now = now_ms()
        started = time.perf_counter()
        check(nonce, now + 60_000, now)
        timings.append(time.perf_counter() - started)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checks", type=int, default=2000)
    parser.add_argument("--postgres", default=os.environ.get("CAGNET_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()
    rows: list[tuple[str, list[float]]] = [("in memory (floor)", _time(NonceCache().check_and_add, args.checks))]
    with tempfile.TemporaryDirectory(prefix="cagnet-bench-") as tmp:
        engine = open_store(f"sqlite:///{tmp}/node.db")
        rows.append(("memory + SQLite file", _time(PersistentNonceCache(engine).check_and_add, args.checks)))
        engine.dispose()
    if args.postgres:
        name = f"cagnet_bench_{uuid.uuid4().hex[:12]}"
        admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            engine = open_store(make_url(args.postgres).set(database=name).render_as_string(hide_password=False))
            rows.append(("memory + PostgreSQL", _time(PersistentNonceCache(engine).check_and_add, args.checks)))
            engine.dispose()
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    floor = statistics.median(rows[0][1])
    table = Table(title=f"{args.checks:,} fresh nonces checked")
    for column in ("cache", "median µs", "p95 µs", "× floor"):
        table.add_column(column, justify="left" if column == "cache" else "right")
    for name, timings in rows:
        median = statistics.median(timings)
        p95 = statistics.quantiles(timings, n=20)[-1]
        table.add_row(name, f"{median * 1e6:,.1f}", f"{p95 * 1e6:,.1f}", f"{median / floor:,.0f}")
    console.print(table)


if __name__ == "__main__":
    main()
