"""Benchmark: the dial-out transport against the listening one, in the same run (issue 24: at most
1.2x).

Two six-node networks are built from the same seeds, so their stores hold the same synthetic
records: in one every node listens and the coordinator connects to it; in the other every node
opens no port and answers on the stream it holds to the coordinator (`coordinator.relay`). Both
run at once, each node and each coordinator a `cagnet ... serve` process on loopback, and the CAG
chair's joint supply map is asked of each in turn, one of each, so that whatever else the machine
is doing weighs on both alike. Prints p50/p95 for each and the p50 ratio.
Run: .venv/bin/python bench/dialout.py [--queries N]
"""

from __future__ import annotations

import argparse
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

from cagnet.demo import build_network, processes, spawn, wait_healthy  # noqa: E402
from cagnet.demo.scenario import DEMO  # noqa: E402
from coordinator import network  # noqa: E402
from coordinator.joint.client import CoordinatorClient  # noqa: E402
from shared.manifest import COORDINATOR  # noqa: E402
from shared.relay import attached_service  # noqa: E402


def _interleaved(calls: list[Callable[[], None]], n: int) -> list[list[float]]:
    """Each call in turn, n rounds (after a warm-up), so that the machine's load falls on all alike."""
    for _ in range(max(5, n // 10)):
        for call in calls:
            call()
    samples: list[list[float]] = [[] for _ in calls]
    for _ in range(n):
        for call, times in zip(calls, samples, strict=True):
            t0 = time.perf_counter()
            call()
            times.append((time.perf_counter() - t0) * 1000)
    return samples


def _pct(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100)[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="cagnet-bench-") as tmp:
        root = Path(tmp)
        console.print("building two six-node networks with the same synthetic data ...")
        listening = build_network(root / "listen", Console(quiet=True), dial_out=())
        dialling = build_network(root / "dial-out", Console(quiet=True), dial_out=DEMO["members"])
        logdir = root / "logs"
        logdir.mkdir()
        with processes(logdir) as running:
            for label, (netdir, nodes) in (("listen", listening), ("dial-out", dialling)):
                for code, nodedir in nodes.items():
                    running[f"{label}-{code}"] = spawn(["node", "serve", str(nodedir)], logdir / f"{label}-{code}.log")
                running[f"{label}-{COORDINATOR}"] = spawn(
                    ["coordinator", "serve", str(netdir)], logdir / f"{label}-coordinator.log"
                )
            for netdir, _ in (listening, dialling):
                manifest = network.read(netdir)
                coordinator = network.coordinator_identity(netdir)
                wait_healthy(manifest.coordinator_endpoint, COORDINATOR, coordinator)
                for party in manifest.members:
                    if party.dials_out:
                        service = attached_service(party.id)
                        wait_healthy(manifest.coordinator_endpoint, COORDINATOR, coordinator, service=service)
                    else:
                        wait_healthy(party.endpoint, party.id, coordinator)
            with CoordinatorClient(listening[0]) as to_listening, CoordinatorClient(dialling[0]) as to_dialling:

                def ask(client: CoordinatorClient) -> Callable[[], None]:
                    def query() -> None:
                        bundle, _ = client.query(kind="supply-map")
                        assert len(bundle.answered) == 6, bundle.missing

                    return query

                console.print(f"the joint supply map of each network in turn, {args.queries} rounds ...")
                listen, dial = _interleaved([ask(to_listening), ask(to_dialling)], args.queries)

    table = Table(title=f"Joint supply-map query, six nodes, {args.queries} queries each, asked in turn (ms)")
    for col in ("transport", "p50", "p95", "p50 ratio to listening"):
        table.add_column(col, justify="right" if col != "transport" else "left")
    for name, samples in [
        ("listen: the coordinator connects to each node", listen),
        ("dial-out: each node holds a stream to the coordinator", dial),
    ]:
        table.add_row(
            name, f"{_pct(samples, 50):.2f}", f"{_pct(samples, 95):.2f}", f"{_pct(samples, 50) / _pct(listen, 50):.2f}x"
        )
    console.print(table)
    ratio = _pct(dial, 50) / _pct(listen, 50)
    console.print(f"dial-out p50 at {ratio:.2f}x the listening transport's (target at most 1.20x)")


if __name__ == "__main__":
    main()
