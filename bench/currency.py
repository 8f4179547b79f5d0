"""Benchmark: what stating the records' currency costs each answer a node signs.

Every answer now reads, in one statement, the latest client-record start, the latest outcome and
the latest write to each table (`node.answers.currency.records_currency`). This prints its median
over Q reads on a node store of Kent's synthetic records (default volume, SQLite) next to the
records fingerprint every movement or KPI answer already reads (`records_version`), with the ratio.
Run: .venv/bin/python bench/currency.py [--queries Q] [--clients N]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlmodel import Session, func, select  # noqa: E402

from node.answers.currency import records_currency  # noqa: E402
from node.answers.movement import records_version  # noqa: E402
from node.client_records import ClientRecord  # noqa: E402
from node.store import open_store  # noqa: E402
from node.synthetic.supply import load  # noqa: E402

KENT = "E10000016"


def _median_ms(run: Callable[[], object], times: int) -> float:
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--clients", type=int, default=None, help="client records (default: Kent's realistic volume)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_store(f"sqlite:///{Path(tmp) / 'node.db'}")
        load(engine, authority_code=KENT, seed=1, person_key=secrets.token_bytes(64), clients=args.clients)
        with Session(engine) as session:
            records = session.exec(select(func.count()).select_from(ClientRecord)).one()
        currency = _median_ms(lambda: records_currency(engine), args.queries)
        fingerprint = _median_ms(lambda: records_version(engine), args.queries)
        engine.dispose()
    table = Table(title=f"One node's read per answer, {records:,} client records, median of {args.queries} (ms)")
    for col in ("read", "ms", "ratio to the fingerprint"):
        table.add_column(col, justify="left" if col == "read" else "right")
    table.add_row("records fingerprint (already read per movement/KPI answer)", f"{fingerprint:.3f}", "1.00x")
    table.add_row("records currency (new, per signed answer)", f"{currency:.3f}", f"{currency / fingerprint:.2f}x")
    Console().print(table)


if __name__ == "__main__":
    main()
