"""Benchmark: joint supply maps a minute from many concurrent clients over six nodes.

Builds the demo's six-node network (as bench/joint_query.py does), runs the six node processes and
the coordinator with mTLS and signatures on, then starts C client processes (default 20), each a
principal's own client: one channel to the coordinator, asking the joint supply map again and
again and verifying every bundle it receives (every signature, the recomputed result) before the
next. The run is cut into R rounds of D seconds (default three of 20 s); for each round it prints
the queries completed, the rate a minute, errors (a refusal, a failed verification, a bundle that
does not name all six authorities), p50/p95 latency, and the coordinator's CPU a query and its RSS
at the end of the round, so that a leak shows as RSS growing round after round.

Run: .venv/bin/python bench/throughput.py [--clients C] [--rounds R] [--seconds D]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from bench.scale import cpu_ms, rss_mb  # noqa: E402
from cagnet.demo import build_network, processes, spawn, wait_healthy  # noqa: E402
from coordinator import network  # noqa: E402
from shared.manifest import COORDINATOR  # noqa: E402


def _client(netdir: str, members: int, go: Event, start_at: Any, stop_at: Any, out: Any) -> None:
    """One principal's client: ask, verify, repeat between start_at and stop_at (monotonic)."""
    from coordinator.joint.client import CoordinatorClient

    done: list[tuple[float, float, bool]] = []  # (finished at, latency ms, ok)
    errors: list[str] = []
    with CoordinatorClient(Path(netdir)) as client:
        client.query(kind="supply-map")  # warm: the channel and the caches
        out.put(("ready", None))
        go.wait(timeout=600)
        while time.monotonic() < start_at.value:
            time.sleep(0.005)
        while (now := time.monotonic()) < stop_at.value:
            try:
                bundle, _ = client.query(kind="supply-map", timeout_s=30)
                ok = len(bundle.answered) == members
                if not ok:
                    errors.append(f"{len(bundle.answered)} of {members} answered: {bundle.missing}")
            except Exception as exc:  # every failure is counted and shown, whatever it is
                ok = False
                errors.append(f"{type(exc).__name__}: {exc}")
            finished = time.monotonic()
            done.append((finished, (finished - now) * 1000, ok))
    out.put(("done", (done, errors[:5])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each round")
    args = parser.parse_args()
    console = Console()
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="cagnet-throughput-") as tmp:
        root = Path(tmp)
        console.print("building six nodes with synthetic data ...")
        netdir, nodes = build_network(root, Console(quiet=True), dial_out=())  # every node listens, as measured before
        manifest = network.read(netdir)
        coordinator = network.coordinator_identity(netdir)
        logdir = root / "logs"
        logdir.mkdir()
        workers: list[Any] = []
        with processes(logdir) as running:
            try:
                for code, nodedir in nodes.items():
                    running[code] = spawn(["node", "serve", str(nodedir)], logdir / f"{code}.log")
                running[COORDINATOR] = spawn(["coordinator", "serve", str(netdir)], logdir / "coordinator.log")
                for party in manifest.members:
                    wait_healthy(party.endpoint, party.id, coordinator, timeout_s=600)
                wait_healthy(manifest.coordinator_endpoint, COORDINATOR, coordinator, timeout_s=600)
                go, out = ctx.Event(), ctx.Queue()
                start_at, stop_at = ctx.Value("d", 0.0), ctx.Value("d", 0.0)
                console.print(f"starting {args.clients} client processes ...")
                for _ in range(args.clients):
                    w = ctx.Process(
                        target=_client, args=(str(netdir), len(nodes), go, start_at, stop_at, out), daemon=True
                    )
                    w.start()
                    workers.append(w)
                for _ in range(args.clients):
                    kind, _ = out.get(timeout=600)
                    assert kind == "ready"
                t0 = time.monotonic() + 1.0
                start_at.value, stop_at.value = t0, t0 + args.rounds * args.seconds
                pid = running[COORDINATOR].pid
                go.set()
                cpu, rss = [], []
                cpu_start = 0.0
                for i in range(args.rounds + 1):
                    time.sleep(max(0.0, t0 + i * args.seconds - time.monotonic()))
                    if i == 0:
                        cpu_start = cpu_ms(pid)
                        rss.append(rss_mb(pid))
                    else:
                        cpu.append(cpu_ms(pid) - cpu_start - sum(cpu))
                        rss.append(rss_mb(pid))
                        console.print(f"round {i}: coordinator RSS {rss[-1]:.1f} MB")
                results = [out.get(timeout=120) for _ in workers]
            finally:
                for w in workers:
                    w.join(timeout=30)
                    if w.is_alive():
                        w.terminate()
    samples = [s for _, (done, _) in results for s in done]
    errors = [e for _, (_, errs) in results for e in errs]
    table = Table(
        title=f"Joint supply maps over six nodes, {args.clients} concurrent clients, "
        f"{args.rounds} rounds of {args.seconds:.0f} s"
    )
    for col in ("round", "queries", "a minute", "errors", "p50 ms", "p95 ms", "coordinator CPU ms/query", "RSS MB"):
        table.add_column(col, justify="right")
    table.add_row("start", "", "", "", "", "", "", f"{rss[0]:.1f}")
    for i in range(args.rounds):
        lo, hi = t0 + i * args.seconds, t0 + (i + 1) * args.seconds
        window = [s for s in samples if lo <= s[0] < hi]
        lat = sorted(s[1] for s in window if s[2])
        bad = sum(1 for s in window if not s[2])
        n = len(window)
        table.add_row(
            str(i + 1),
            str(n),
            f"{n * 60 / args.seconds:,.0f}",
            str(bad),
            f"{statistics.median(lat):.0f}" if lat else "-",
            f"{lat[min(len(lat) - 1, round(0.95 * (len(lat) - 1)))]:.0f}" if lat else "-",
            f"{cpu[i] / n:.1f}" if n else "-",
            f"{rss[i + 1]:.1f}",
        )
    console.print(table)
    total = sum(1 for s in samples if t0 <= s[0] < t0 + args.rounds * args.seconds)
    console.print(
        f"{total * 60 / (args.rounds * args.seconds):,.0f} joint supply maps a minute overall, "
        f"{sum(1 for s in samples if not s[2])} errors; coordinator RSS {rss[1]:.1f} -> {rss[-1]:.1f} MB "
        "over the rounds"
    )
    for e in errors[:5]:
        console.print(f"  error: {e}")


if __name__ == "__main__":
    main()
