"""Benchmark: how the joint supply-map query grows with the number of member nodes.

For each network size N (default 6, 24, 48, 96 and 152: every upper-tier English authority) it
builds a network of N authorities taken evenly across the register (any English authorities work:
members come from the manifest), loads each node with synthetic supply scaled by its population
(no client records: the supply map does not read them), runs one node process per member and a
coordinator process on loopback with mTLS and signatures on, as in the demo, and times Q joint
supply-map queries over one channel. For each N it prints p50 and p95 latency, the coordinator's
CPU per query, the coordinator's RSS after the queries, and the nodes' mean and largest RSS; then
how p50 and coordinator CPU grow against N (a ratio near N/6 is linear in the number of nodes),
and the coordinator CPU each node beyond the smallest network adds to a query. Every query must
be answered by every node, or the run stops. Every process it starts is stopped when it ends,
however it ends (node and coordinator processes also die with it if it is killed). Linux only.

Run: .venv/bin/python bench/scale.py [--sizes 6,24,48,96,152] [--queries Q]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from cagnet.demo import join_founding_member, processes, wait_healthy  # noqa: E402
from coordinator import network  # noqa: E402
from coordinator.joint.client import CoordinatorClient  # noqa: E402
from node.config import load_config  # noqa: E402
from node.store import open_store  # noqa: E402
from node.synthetic.supply import load as load_synthetic  # noqa: E402
from shared.manifest import COORDINATOR  # noqa: E402

console = Console()


def cpu_ms(pid: int) -> float:
    """User + system CPU time of a process so far, in milliseconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # In the child before exec: the kernel sends SIGTERM if this bench dies, even by SIGKILL.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """`cagnet ARGS` as a process bound to this one (152 nodes must not outlive a failed run)."""
    with log.open("wb") as f:
        return subprocess.Popen(
            [sys.executable, "-m", "cagnet", *args],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            preexec_fn=_die_with_parent,
        )


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def members(n: int, register_codes: list[str]) -> list[str]:
    """N authorities spread evenly over the register's codes (every kind, every region)."""
    step = len(register_codes) / n
    return [register_codes[int(i * step)] for i in range(n)]


def listen_ports() -> Iterator[int]:
    """Free loopback ports below the kernel's ephemeral range, downwards. A port picked with bind(0)
    lies inside that range, so between its pick and its node's start an outgoing connection may be
    given it: at 152 nodes one node found its port taken and the run waited for it in vain."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in range(low - 1, 1024, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        yield port


def build(root: Path, n: int) -> tuple[Path, dict[str, Path]]:
    netdir = root / "network"
    ports = listen_ports()
    network.init_network(netdir, name=f"Bench network of {n}", coordinator_endpoint=f"127.0.0.1:{next(ports)}")
    register = network.read_register(netdir)
    codes = members(n, list(register.authorities))
    nodes: dict[str, Path] = {}
    linkage_key: bytes | None = None
    with console.status(f"N={n}: making nodes and synthetic supply") as status:
        for i, code in enumerate(codes):
            status.update(f"N={n}: node {i + 1} of {n} ({register.authority(code).name})")
            nodedir = root / "nodes" / code
            linkage_key = join_founding_member(
                netdir, nodedir, authority=code, endpoint=f"127.0.0.1:{next(ports)}", linkage_key=linkage_key
            )
            engine = open_store(load_config(nodedir).database_url)
            load_synthetic(engine, authority_code=code, seed=1 + i, with_clients=False, register=register)
            engine.dispose()
            nodes[code] = nodedir
    return netdir, nodes


def measure(n: int, queries: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"cagnet-scale-{n}-") as tmp:
        root = Path(tmp)
        netdir, nodes = build(root, n)
        manifest = network.read(netdir)
        coordinator = network.coordinator_identity(netdir)
        logdir = root / "logs"
        logdir.mkdir()
        with processes(logdir) as running:
            for code, nodedir in nodes.items():
                running[code] = spawn(["node", "serve", str(nodedir)], logdir / f"{code}.log")
            running[COORDINATOR] = spawn(["coordinator", "serve", str(netdir)], logdir / "coordinator.log")
            with console.status(f"N={n}: waiting for {n} nodes and the coordinator"):
                for party in manifest.members:
                    wait_healthy(party.endpoint, party.id, coordinator, timeout_s=600)
                wait_healthy(manifest.coordinator_endpoint, COORDINATOR, coordinator, timeout_s=600)
            with CoordinatorClient(netdir) as client, console.status(f"N={n}: {queries} joint supply maps"):
                # Warm: the first query opens n TLS channels and has every node work its map out from
                # its store; on a loaded machine some miss the deadline then. Warm until all answer.
                for _ in range(5):
                    bundle, _ = client.query(kind="supply-map")
                    if len(bundle.answered) == n:
                        break
                else:
                    raise SystemExit(f"N={n}: {len(bundle.answered)} answered the warm-up; missing {bundle.missing}")
                coordinator_pid = running[COORDINATOR].pid
                cpu_before = cpu_ms(coordinator_pid)
                times = []
                for _ in range(queries):
                    started = time.perf_counter()
                    bundle, _ = client.query(kind="supply-map")
                    times.append((time.perf_counter() - started) * 1000)
                    if len(bundle.answered) != n:
                        raise SystemExit(f"N={n}: {len(bundle.answered)} answered; missing {bundle.missing}")
                cpu_per_query = (cpu_ms(coordinator_pid) - cpu_before) / queries
            node_rss = [rss_mb(running[code].pid) for code in nodes]
            times.sort()
            return {
                "p50": statistics.median(times),
                "p95": times[min(len(times) - 1, round(0.95 * (len(times) - 1)))],
                "coordinator_cpu": cpu_per_query,
                "coordinator_rss": rss_mb(coordinator_pid),
                "node_rss_mean": statistics.fmean(node_rss),
                "node_rss_max": max(node_rss),
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="6,24,48,96,152", help="network sizes, comma-separated (2 to 152)")
    parser.add_argument("--queries", type=int, default=30)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if any(not 2 <= n <= 152 for n in sizes):
        parser.error("each size must be 2 to 152")
    # SIGTERM unwinds like Ctrl-C, so that every process started is stopped on the way out.
    signal.signal(signal.SIGTERM, _interrupt)
    results = {}
    for n in sizes:
        results[n] = measure(n, args.queries)
        r = results[n]
        console.print(f"N={n}: p50 {r['p50']:.0f} ms, coordinator {r['coordinator_cpu']:.0f} ms CPU a query")

    table = Table(title=f"Joint supply map by network size, {args.queries} queries each")
    for col in (
        "nodes",
        "p50 ms",
        "p95 ms",
        "coordinator CPU ms/query",
        "coordinator RSS MB",
        "node RSS MB mean / max",
        "p50 / smallest",
        "CPU / smallest",
        "N / smallest",
        "CPU ms per node added",
    ):
        table.add_column(col, justify="right")
    first = results[sizes[0]]
    for n in sizes:
        r = results[n]
        table.add_row(
            str(n),
            f"{r['p50']:.0f}",
            f"{r['p95']:.0f}",
            f"{r['coordinator_cpu']:.1f}",
            f"{r['coordinator_rss']:.0f}",
            f"{r['node_rss_mean']:.0f} / {r['node_rss_max']:.0f}",
            f"{r['p50'] / first['p50']:.2f}",
            f"{r['coordinator_cpu'] / first['coordinator_cpu']:.2f}",
            f"{n / sizes[0]:.2f}",
            f"{(r['coordinator_cpu'] - first['coordinator_cpu']) / (n - sizes[0]):.2f}" if n != sizes[0] else "",
        )
    console.print(table)
    console.print(
        "Every node answered every query at every size. On a machine with fewer cores than nodes, latency"
        " follows the CPU every process spends, so expect p50 to grow about linearly with N; the coordinator's"
        " CPU per node added is the figure it alone controls."
    )


if __name__ == "__main__":
    main()
