"""Benchmark: client-record import and the joint movement query, federated against centralised.

Six nodes (SQLite files, as a new network runs them) each get N synthetic client records
(default 1,000,000) and then:
  1. import rate: `cagnet node import ... client-records` (validation, pseudonymisation, one
     transaction) against the floor, a raw executemany of the very same rows, already converted,
     into a fresh database of the same schema with the same 64 MiB page cache;
  2. the joint movement query (six node processes and a coordinator, mTLS and signatures, the
     release path with its ledger and disclosure control; every node restarted before each run so
     nothing is answered from memory) against the same GROUP BY over all 6N rows pooled in one
     SQLite database with the same index (what a user would run with the data centralised);
  3. bytes on the wire for the federated query (every request, response and the bundle) against
     the pooled raw rows (the six client-records CSV files).
Run: .venv/bin/python bench/movement.py [--records N] [--queries Q]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import select  # noqa: E402

from cagnet.demo import (  # noqa: E402
    DEMO,
    free_port,
    join_founding_member,
    processes,
    spawn,
    wait_healthy,
)
from coordinator import network  # noqa: E402
from coordinator.joint.client import CoordinatorClient  # noqa: E402
from node.client_records import ClientRecord, PersonSealer, load_person_key  # noqa: E402
from node.config import load_config  # noqa: E402
from node.imports.records import IMPORT_CACHE_KIB, import_client_records  # noqa: E402
from node.imports.supply import import_csv  # noqa: E402
from node.store import ensure_authority, open_store  # noqa: E402
from node.synthetic.clients import write_client_csvs  # noqa: E402
from node.synthetic.supply import generate, write_csvs  # noqa: E402
from shared.manifest import COORDINATOR  # noqa: E402

console = Console()


def _load_supply(engine: object, directory: Path, code: str, seed: int) -> object:
    supply = generate(code, seed=seed)
    paths = write_csvs(supply, directory)
    for kind in ("providers", "services", "contracts"):
        import_csv(engine, kind=kind, path=paths[kind])  # type: ignore[arg-type]
    return supply


def build(root: Path, records: int) -> tuple[Path, dict[str, Path], list[tuple[str, int, float, float]], int]:
    """The network, six nodes with `records` client records each; per node (code, rows, import
    seconds, floor seconds), and the total bytes of the client-records CSV files."""
    netdir = root / "network"
    network.init_network(netdir, name="Bench CAG", coordinator_endpoint=f"127.0.0.1:{free_port()}")
    nodes: dict[str, Path] = {}
    timings = []
    csv_bytes = 0
    linkage_key: bytes | None = None
    for i, code in enumerate(DEMO["members"]):
        nodedir = root / "nodes" / code
        linkage_key = join_founding_member(
            netdir, nodedir, authority=code, endpoint=f"127.0.0.1:{free_port()}", linkage_key=linkage_key
        )
        config = load_config(nodedir)
        engine = open_store(config.database_url)
        ensure_authority(engine, authority_code=code)
        files = root / "files" / code
        supply = _load_supply(engine, files, code, seed=1 + i)
        with console.status(f"{code}: writing {records:,} synthetic client records"):
            paths = write_client_csvs(supply, files, count=records, members=DEMO["members"])  # type: ignore[arg-type]
        csv_bytes += paths["client-records"].stat().st_size
        sealer = PersonSealer(load_person_key(config.person_key_path))
        with console.status(f"{code}: importing client records"):
            started = time.perf_counter()
            summary = import_client_records(engine, path=paths["client-records"], sealer=sealer)
            imported_s = time.perf_counter() - started
        floor_s = _raw_insert_floor(engine, root / "floor" / code, files, code, seed=1 + i)
        engine.dispose()
        timings.append((code, summary.rows, imported_s, floor_s))
        console.print(
            f"  {code}: {summary.rows:,} rows imported in {imported_s:.1f} s;"
            f" raw insert of the same rows {floor_s:.1f} s"
        )
        nodes[code] = nodedir
    return netdir, nodes, timings, csv_bytes


def _raw_insert_floor(engine: object, floordir: Path, files: Path, code: str, seed: int) -> float:
    """Seconds to executemany the rows the importer wrote, already converted, into a fresh
    database of the same schema (one transaction): no parsing, no checks, no pseudonymising."""
    table = ClientRecord.__table__  # type: ignore[attr-defined]
    columns = [c.name for c in table.columns if c.name != "id"]
    with engine.connect() as conn:  # type: ignore[attr-defined]
        rows = [tuple(r) for r in conn.execute(select(*(table.c[c] for c in columns))).all()]
    floordir.mkdir(parents=True, exist_ok=True)
    fresh = open_store(f"sqlite:///{floordir / 'floor.db'}")
    ensure_authority(fresh, authority_code=code)
    _load_supply(fresh, floordir / "files", code, seed)
    statement = f"INSERT INTO client_record ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})"
    raw = fresh.raw_connection()
    try:
        # The same bound values SQLAlchemy would send: dates and instants as SQLite stores them.
        prepared = [tuple(_bound(v) for v in row) for row in rows]
        cursor = raw.cursor()
        # The same page cache the importer gives itself for an import (node.records_import).
        cursor.execute(f"PRAGMA cache_size = {-IMPORT_CACHE_KIB}")
        started = time.perf_counter()
        cursor.executemany(statement, prepared)
        raw.commit()
        elapsed = time.perf_counter() - started
    finally:
        raw.close()
        fresh.dispose()
    return elapsed


def _bound(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return value


def pooled_database(root: Path, nodes: dict[str, Path]) -> Path:
    """All six nodes' client records in one SQLite file, with a host column and the same index."""
    pooled = root / "pooled.db"
    conn = sqlite3.connect(pooled)
    conn.execute(
        "CREATE TABLE client_record (host TEXT, start_date DATE, client_group INTEGER, previous_authority TEXT)"
    )
    for code, nodedir in nodes.items():
        conn.execute("ATTACH DATABASE ? AS node", (str(nodedir / "node.db"),))
        conn.execute(
            "INSERT INTO client_record SELECT ?, start_date, client_group, previous_authority FROM node.client_record",
            (code,),
        )
        conn.commit()
        conn.execute("DETACH DATABASE node")
    conn.execute("CREATE INDEX ix_pooled ON client_record (start_date, client_group, previous_authority, host)")
    conn.commit()
    conn.close()
    return pooled


POOLED_QUERY = """
SELECT host, previous_authority, client_group,
       CAST(STRFTIME('%Y', start_date) AS INTEGER), CAST(STRFTIME('%m', start_date) AS INTEGER), count(*)
FROM client_record GROUP BY host, previous_authority, client_group,
       CAST(STRFTIME('%Y', start_date) AS INTEGER), CAST(STRFTIME('%m', start_date) AS INTEGER)
"""


def time_pooled(pooled: Path, queries: int) -> list[float]:
    times = []
    for _ in range(queries):
        conn = sqlite3.connect(pooled)
        started = time.perf_counter()
        conn.execute(POOLED_QUERY).fetchall()
        times.append(time.perf_counter() - started)
        conn.close()
    return times


def time_federated(root: Path, netdir: Path, nodes: dict[str, Path], queries: int) -> tuple[list[float], int]:
    logdir = root / "logs"
    logdir.mkdir(exist_ok=True)
    manifest = network.read(netdir)
    coordinator = network.coordinator_identity(netdir)
    times: list[float] = []
    wire = 0
    with processes(logdir) as running:
        running[COORDINATOR] = spawn(["coordinator", "serve", str(netdir)], logdir / "coordinator.log")
        wait_healthy(manifest.coordinator_endpoint, COORDINATOR, coordinator)
        with CoordinatorClient(netdir) as client:
            for q in range(queries):
                # Fresh node processes each time: the answer is worked out, not remembered.
                for code, nodedir in nodes.items():
                    if code in running:
                        running[code].terminate()
                        running[code].wait(timeout=30)
                    running[code] = spawn(["node", "serve", str(nodedir)], logdir / f"{code}.{q}.log")
                for party in manifest.members:
                    wait_healthy(party.endpoint, party.id, coordinator)
                started = time.perf_counter()
                bundle, envelope = client.query(kind="movement", period="year", node_deadline_ms=30000, timeout_s=120)
                times.append(time.perf_counter() - started)
                if len(bundle.answered) != len(nodes):
                    raise SystemExit(f"only {bundle.answered} answered: {bundle.missing}")
                wire = _wire_bytes(bundle, envelope)
    return times, wire


def _wire_bytes(bundle: object, envelope: object) -> int:
    """Every message of one federated query: the principal's query, the coordinator's six requests
    and the nodes' six signed responses, and the signed bundle that comes back."""
    from shared import dsse

    def size(doc: dict[str, object]) -> int:
        env = dsse.Envelope.from_json(doc)
        return len(env.payload) + len(env.payload_type) + sum(len(s.sig) + len(s.keyid) for s in env.signatures)

    total = size(bundle.query)  # type: ignore[attr-defined]
    for c in bundle.contributions:  # type: ignore[attr-defined]
        total += size(c.request) + size(c.response)
    total += len(envelope.payload) + sum(len(s.sig) for s in envelope.signatures)  # type: ignore[attr-defined]
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1_000_000, help="client records per node")
    parser.add_argument("--queries", type=int, default=5, help="timed runs of each query")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cagnet-bench-movement-") as tmp:
        root = Path(tmp)
        console.print(f"Building six nodes with {args.records:,} client records each (SQLite):")
        netdir, nodes, timings, csv_bytes = build(root, args.records)
        with console.status("pooling every node's records into one database"):
            pooled = pooled_database(root, nodes)
        with console.status("pooled GROUP BY"):
            pooled_times = time_pooled(pooled, args.queries)
        with console.status("joint movement query over six nodes"):
            federated_times, wire = time_federated(root, netdir, nodes, args.queries)

    rows = sum(t[1] for t in timings)
    import_rate = rows / sum(t[2] for t in timings)
    floor_rate = rows / sum(t[3] for t in timings)
    table = Table(title=f"Client records: six nodes x {args.records:,} (SQLite, {args.queries} runs)")
    table.add_column("measure")
    table.add_column("cagnet", justify="right")
    table.add_column("floor / centralised", justify="right")
    table.add_column("ratio", justify="right")
    table.add_column("target", justify="right")
    table.add_row(
        "import, rows/s",
        f"{import_rate:,.0f}",
        f"{floor_rate:,.0f} (raw insert)",
        f"{import_rate / floor_rate:.2f}",
        "≥ 0.33",
    )
    fed_p50, pool_p50 = statistics.median(federated_times), statistics.median(pooled_times)
    table.add_row(
        "movement query p50, s",
        f"{fed_p50:.2f} (joint, six nodes)",
        f"{pool_p50:.2f} (pooled GROUP BY)",
        f"{fed_p50 / pool_p50:.2f}",
        "≤ 1.00",
    )
    table.add_row(
        "bytes moved",
        f"{wire:,} (one joint query)",
        f"{csv_bytes:,} (raw rows, CSV)",
        f"1/{csv_bytes / wire:,.0f}",
        "< 1/1000",
    )
    console.print(table)
    console.print(
        f"joint query runs (s): {', '.join(f'{t:.2f}' for t in federated_times)}; "
        f"pooled runs (s): {', '.join(f'{t:.2f}' for t in pooled_times)}"
    )


if __name__ == "__main__":
    main()
