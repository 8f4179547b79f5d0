"""Benchmark: the accreditation register's log against a plain append of the same rows.

Builds a log of N signed entries (default 100,000) in the register's store, and the same rows in a
plain table in the same database with the same transactions: the floor is what storing the rows
costs at all, the ratio is what the Merkle tree and the serialised append add. Then, at size N:
single-entry appends (one transaction each, as Submit does) against single plain inserts, the cost
of checking a submitted entry, inclusion and consistency proofs (size, time to build from the
store, time to verify), a checkpoint's root from the store, and a full re-hash of the log.

Run: .venv/bin/python bench/register.py [--entries N] [--database-url URL]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy import BigInteger, Column, LargeBinary, MetaData, String, insert  # noqa: E402
from sqlalchemy import Table as SqlTable  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from cagnet.demo import DEMO  # noqa: E402
from coordinator.register import store  # noqa: E402
from shared import dsse, merkle  # noqa: E402
from shared.accreditation import (  # noqa: E402
    AccreditationEntry,
    Criteria,
    ProviderRef,
    QafLevels,
    entry_bytes,
    open_entry,
    sign_entry,
)
from shared.provider_identity import provider_key  # noqa: E402

plain_metadata = MetaData()
plain_leaf = SqlTable(
    "plain_leaf",
    plain_metadata,
    Column("leaf_index", BigInteger, primary_key=True, autoincrement=False),
    Column("entry", LargeBinary, nullable=False),
    Column("entry_digest", String(64), unique=True, nullable=False),
    Column("authority", String(32), index=True, nullable=False),
    Column("provider_key", String(250), index=True, nullable=False),
    Column("decision", String(16), nullable=False),
    Column("appended_at", String(32), nullable=False),
)
AUTHORITIES = tuple(DEMO["members"])


def make_entries(n: int, key: Ed25519PrivateKey) -> list[store.PreparedEntry]:
    """N distinct signed entries about 2,000 providers, as the coordinator prepares them."""
    prepared = []
    for i in range(n):
        name = f"Provider {i % 2000} Housing Association Ltd"
        charity = str(1_000_000 + i % 2000)
        entry = AccreditationEntry.model_validate(
            {
                "origin": "cagnet.register/bench",
                "authority": AUTHORITIES[i % len(AUTHORITIES)],
                "provider": ProviderRef(
                    key=provider_key(name=name, charity_number=charity), name=name, charity_number=charity
                ),
                "decision": "accredited",
                "criteria": Criteria(**dict.fromkeys(Criteria.model_fields, "met")),
                "qaf": QafLevels(**dict.fromkeys(QafLevels.model_fields, "B")),
                "decided_on": date(2025, 4, 1),
                "valid_from": date(2025, 4, 1),
                "valid_to": date(2028, 4, 1),
                "evidence_sha256": hashlib.sha256(str(i).encode()).hexdigest(),
                "reference": f"ACC-{i:07d}",
            }
        )
        data = entry_bytes(sign_entry(entry, key))
        prepared.append(
            store.PreparedEntry(
                data=data,
                payload_digest=hashlib.sha256(entry.canonical_bytes()).hexdigest(),
                authority=entry.authority,
                provider_keys=entry.provider.keys,
                decision=entry.decision,
            )
        )
    return prepared


def plain_append(engine: Engine, batch: list[store.PreparedEntry], start: int) -> None:
    rows = [
        {
            "leaf_index": start + i,
            "entry": p.data,
            "entry_digest": p.payload_digest,
            "authority": p.authority,
            "provider_key": p.provider_keys[0],
            "decision": p.decision,
            "appended_at": "2025-04-01T00:00:00.000000+00:00",
        }
        for i, p in enumerate(batch)
    ]
    with engine.begin() as conn:
        conn.execute(insert(plain_leaf), rows)


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000, help="entries per transaction while building")
    parser.add_argument("--single", type=int, default=300, help="one-entry appends timed at size N")
    parser.add_argument("--proofs", type=int, default=500)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    console = Console()
    tmp = tempfile.TemporaryDirectory(prefix="cagnet-bench-register-")
    url = args.database_url or f"sqlite:///{tmp.name}/register.db"
    engine = store.open_register(url)
    plain_metadata.drop_all(engine)
    plain_metadata.create_all(engine)
    if store.tree_head(engine)[0]:
        raise SystemExit(f"{url} already holds a register; give an empty database")

    n = args.entries
    with console.status(f"signing {n:,} entries"):
        key = Ed25519PrivateKey.generate()
        entries = make_entries(n + 2 * args.single, key)
    size_bytes = statistics.mean(len(e.data) for e in entries)
    console.print(f"{n:,} signed entries, {size_bytes:,.0f} bytes each on average; database {engine.dialect.name}")

    bulk, extra = entries[:n], entries[n:]
    with console.status("building the log and the plain table in batches"):
        t_log = t_plain = 0.0
        for start in range(0, n, args.batch):
            batch = bulk[start : start + args.batch]
            t_log += timed(lambda b=batch: store.append(engine, b))
            t_plain += timed(lambda b=batch, s=start: plain_append(engine, b, s))

    with console.status("single-entry appends at size N"):
        single_log, single_plain = [], []
        for i in range(args.single):
            single_log.append(timed(lambda e=extra[i]: store.append(engine, [e])))
            single_plain.append(timed(lambda e=extra[i], i=i: plain_append(engine, [e], n + i)))

    with console.status("checking submitted entries"):
        public = key.public_key()
        check = [timed(lambda e=e: dsse.verify(open_entry(e.data)[0], public)) for e in extra[:1000]]

    size, root = store.tree_head(engine)
    rng = random.Random(1)
    leaves_cache: dict[int, bytes] = {}

    def leaf(i: int) -> bytes:
        if i not in leaves_cache:
            leaves_cache[i] = merkle.leaf_hash(store.entries(engine, i, i + 1)[0])
        return leaves_cache[i]

    inc_build, inc_verify, inc_len = [], [], []
    for _ in range(args.proofs):
        i = rng.randrange(size)
        start = time.perf_counter()
        proof = store.inclusion_proof(engine, i, size)
        inc_build.append(time.perf_counter() - start)
        h = leaf(i)
        inc_verify.append(timed(lambda p=proof, h=h, i=i: merkle.verify_inclusion(h, i, size, p, root)))
        inc_len.append(len(proof))
    con_build, con_verify, con_len = [], [], []
    for _ in range(args.proofs):
        first = rng.randrange(1, size)
        first_root = store.root_at(engine, first)
        start = time.perf_counter()
        proof = store.consistency_proof(engine, first, size)
        con_build.append(time.perf_counter() - start)
        con_verify.append(timed(lambda p=proof, f=first, r=first_root: merkle.verify_consistency(f, size, r, root, p)))
        con_len.append(len(proof))
    t_root = timed(lambda: store.root_at(engine, size))
    t_verify_log = timed(lambda: store.verify_log(engine))

    table = Table(title=f"accreditation register at {size:,} entries ({engine.dialect.name})")
    for col in ("measure", "register", "plain append (floor)", "ratio"):
        table.add_column(col, justify="right" if col != "measure" else "left")
    table.add_row(
        f"build, {args.batch:,} entries per transaction",
        f"{n / t_log:,.0f} entries/s",
        f"{n / t_plain:,.0f} rows/s",
        f"{t_log / t_plain:.2f}x",
    )
    p50_log, p50_plain = statistics.median(single_log), statistics.median(single_plain)
    table.add_row(
        "one entry per transaction (p50)",
        f"{p50_log * 1000:.2f} ms ({1 / p50_log:,.0f}/s)",
        f"{p50_plain * 1000:.2f} ms ({1 / p50_plain:,.0f}/s)",
        f"{p50_log / p50_plain:.2f}x",
    )
    table.add_row(
        "checking an entry (canonical form, signature; p50)", f"{statistics.median(check) * 1e6:.0f} µs", "", ""
    )
    table.add_row(
        "inclusion proof: hashes, bytes",
        f"{statistics.mean(inc_len):.1f} (max {max(inc_len)}), {32 * statistics.mean(inc_len):.0f} B",
        "",
        "",
    )
    table.add_row(
        "inclusion proof: build p50 / p95, verify p50",
        f"{statistics.median(inc_build) * 1000:.2f} / {pct(inc_build, 95) * 1000:.2f} ms, "
        f"{statistics.median(inc_verify) * 1e6:.0f} µs",
        "",
        "",
    )
    table.add_row(
        "consistency proof: hashes, bytes",
        f"{statistics.mean(con_len):.1f} (max {max(con_len)}), {32 * statistics.mean(con_len):.0f} B",
        "",
        "",
    )
    table.add_row(
        "consistency proof: build p50 / p95, verify p50",
        f"{statistics.median(con_build) * 1000:.2f} / {pct(con_build, 95) * 1000:.2f} ms, "
        f"{statistics.median(con_verify) * 1e6:.0f} µs",
        "",
        "",
    )
    table.add_row("checkpoint root from the store", f"{t_root * 1000:.2f} ms", "", "")
    table.add_row(
        "verify-log: re-hash everything", f"{t_verify_log:.1f} s ({size / t_verify_log:,.0f} entries/s)", "", ""
    )
    console.print(table)
    console.print(
        f"ratio to the floor: building {t_log / t_plain:.2f}x, single appends {p50_log / p50_plain:.2f}x "
        "(same rows, same database, same transactions)"
    )
    plain_metadata.drop_all(engine)
    engine.dispose()
    tmp.cleanup()


if __name__ == "__main__":
    main()
