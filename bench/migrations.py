"""Benchmark: what schema migrations cost a store's open, and what revisions 0002 and 0007 buy.

  1. opening a node store: an empty SQLite database made by the migrations (what `open_store` does
     now) against `metadata.create_all` (what it did before), and reopening a current one (one read
     of each version table) against an engine that checks nothing;
  2. the records' edition (`node.answers.movement.records_version`), read before every movement or
     KPI answer, over N client records: the fingerprint as it was at revision 0001 (count and both
     max() in one SELECT, no index on updated_at) against the newest revision's (since 0007 one
     read of the records' write stamp, `node.stamps`);
  3. `cagnet node upgrade` from 0001 to the newest revision on that database.
Run: .venv/bin/python bench/migrations.py [--records N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402
from sqlmodel import SQLModel  # noqa: E402

from node import migrations  # noqa: E402
from node.answers.movement import records_version  # noqa: E402
from node.client_records import ClientRecord  # noqa: E402
from node.store import Service, add_provider, ensure_authority, open_store, store_engine  # noqa: E402
from shared import migrate  # noqa: E402
from shared.migrations.audit import SCHEMA as AUDIT  # noqa: E402
from shared.vocabulary import ServiceType, Term  # noqa: E402

console = Console()
KENT = "E10000016"


def _median_ms(run: Callable[[], object], times: int) -> float:
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def bench_open(folder: Path, times: int) -> list[tuple[str, float, float]]:
    counter = iter(range(10**6))

    def fresh_migrated() -> None:
        open_store(f"sqlite:///{folder}/m{next(counter)}.db").dispose()

    def fresh_create_all() -> None:
        engine = store_engine(f"sqlite:///{folder}/c{next(counter)}.db")
        SQLModel.metadata.create_all(engine)
        engine.dispose()

    current = f"sqlite:///{folder}/current.db"
    open_store(current).dispose()

    def reopen_checked() -> None:
        open_store(current).dispose()

    def reopen_unchecked() -> None:
        engine = store_engine(current)
        with engine.connect():
            pass
        engine.dispose()

    fresh_migrated(), fresh_create_all()  # imports and caches warmed
    return [
        ("open an empty store", _median_ms(fresh_migrated, times), _median_ms(fresh_create_all, times)),
        ("reopen a current store", _median_ms(reopen_checked, times), _median_ms(reopen_unchecked, times)),
    ]


def _at_0001(url: str) -> Engine:
    engine = store_engine(url)
    for schema in (AUDIT, migrations.SCHEMA):
        config = Config()
        config.set_main_option("script_location", str(schema.directory))
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0001")
    return engine


def _fill(engine: Engine, records: int) -> None:
    ensure_authority(engine, authority_code=KENT)
    add_provider(engine, provider_ref="KCC-P0001", name="Porchlight", charity_number="254109")
    start = datetime(2008, 4, 1, 9, tzinfo=UTC)
    # The service as revision 0001 holds it: today's model has columns 0001 had not (start and end
    # dates, revision 0004), so the row is written with 0001's columns alone.
    with engine.begin() as conn:
        conn.execute(
            insert(Service.__table__),  # type: ignore[attr-defined]
            {
                "service_ref": "KCC-S00001",
                "provider_id": 1,
                "name": "Fairfield House hostel",
                "district_code": "E07000106",
                "service_type": ServiceType.ACCOMMODATION_BASED.value,
                "client_group": 7,
                "units": 24,
                "unit_type": "bed-spaces",
                "contracted_hours": None,
                "designated": False,
                "term": Term.SHORT.value,
                "created_at": start,
                "updated_at": start,
            },
        )
    table = ClientRecord.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        for first in range(0, records, 50_000):
            rows = []
            for n in range(first, min(records, first + 50_000)):
                at = start + timedelta(minutes=n)
                rows.append(
                    {
                        "record_ref": f"KCC-R{n:08d}",
                        "service_id": 1,
                        "start_date": date(2008, 4, 1) + timedelta(days=n % 730),
                        "client_group": 1 + n % 21,
                        "secondary_groups": "",
                        "age_band": "25-34",
                        "sex": "female",
                        "ethnicity": "A",
                        "economic_status": "unemployed",
                        "referral_source": "self",
                        "accommodation_before": "private-rented",
                        "previous_authority": KENT,
                        "person": os.urandom(48),
                        "created_at": at,
                        "updated_at": at,
                    }
                )
            conn.execute(insert(table), rows)


def _version_at_0001(engine: Engine) -> tuple[object, ...]:
    # The fingerprint's query as it was before revision 0002: count and both max() in one SELECT.
    parts = []
    for name in ("client_record", "outcome"):
        table = SQLModel.metadata.tables[name]
        parts.append(select(func.count(), func.max(table.c.id), func.max(table.c.updated_at)).select_from(table))
    with engine.connect() as conn:
        return tuple(value for query in parts for value in conn.execute(query).one())


def bench_fingerprint(folder: Path, records: int, times: int) -> tuple[float, float, float]:
    url = f"sqlite:///{folder}/records.db"
    engine = _at_0001(url)
    _fill(engine, records)
    before = _median_ms(lambda: _version_at_0001(engine), times)
    start = time.perf_counter()
    migrate.upgrade(engine, migrations.STORE)
    upgrade_s = time.perf_counter() - start
    assert records_version(engine)[0] is not None  # the upgrade stamped the records (0007)
    after = _median_ms(lambda: records_version(engine), times)
    engine.dispose()
    return before, after, upgrade_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--times", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cagnet-bench-") as tmp:
        folder = Path(tmp)
        opens = bench_open(folder, args.times)
        before, after, upgrade_s = bench_fingerprint(folder, args.records, args.times)

    table = Table(title=f"Schema migrations (SQLite, medians of {args.times}; {args.records:,} client records)")
    table.add_column("what")
    table.add_column("with migrations", justify="right")
    table.add_column("without", justify="right")
    table.add_column("ratio", justify="right")
    for what, migrated, plain in opens:
        table.add_row(what, f"{migrated:.1f} ms", f"{plain:.1f} ms", f"{migrated / plain:.2f}x")
    table.add_row(
        "records edition", f"{after:.2f} ms (newest)", f"{before:.2f} ms (0001)", f"{before / after:.1f}x faster"
    )
    table.add_row("node upgrade 0001 → newest", f"{upgrade_s:.2f} s", "", "")
    console.print(table)


if __name__ == "__main__":
    main()
