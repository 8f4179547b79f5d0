"""Where the joint query's CPU goes: milliseconds of CPU per query in each of the eight processes.

On a small machine the query's latency follows the CPU all seven servers and the client spend
between them, so this is the number to watch when making it faster; it is also steadier than
wall-clock time when other work shares the machine (take the lowest of a few runs). Builds the
same six-node network as bench/joint_query.py, runs N queries, and reads each process's user+system
time from /proc (Linux only). With --py-spy DIR it also records a sampled profile of each process
(py-spy must be installed; collapsed stacks, one file per process).

Run: .venv/bin/python bench/cpu_per_process.py [--queries N] [--py-spy DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from cagnet.demo import build_network, processes, spawn, wait_healthy  # noqa: E402
from coordinator import network  # noqa: E402
from coordinator.joint.client import CoordinatorClient  # noqa: E402
from shared.manifest import COORDINATOR  # noqa: E402

CLIENT = "client (this process)"


def cpu_ms(pid: int) -> float:
    """User + system CPU time of a process so far, in milliseconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--py-spy", dest="py_spy", type=Path, help="record a py-spy profile of each process here")
    args = parser.parse_args()
    console = Console()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if args.py_spy and not Path(spy).exists():
        parser.error("py-spy is not installed (pip install py-spy)")
    with tempfile.TemporaryDirectory(prefix="cagnet-cpu-") as tmp:
        root = Path(tmp)
        console.print("building six nodes with synthetic data ...")
        netdir, nodes = build_network(root, Console(quiet=True), dial_out=())  # every node listens, as measured before
        manifest = network.read(netdir)
        coordinator = network.coordinator_identity(netdir)
        logdir = root / "logs"
        logdir.mkdir()
        with processes(logdir) as running:
            for code, nodedir in nodes.items():
                running[code] = spawn(["node", "serve", str(nodedir)], logdir / f"{code}.log")
            running[COORDINATOR] = spawn(["coordinator", "serve", str(netdir)], logdir / "coordinator.log")
            for party in manifest.members:
                wait_healthy(party.endpoint, party.id, coordinator)
            wait_healthy(manifest.coordinator_endpoint, COORDINATOR, coordinator)
            pids = {name: proc.pid for name, proc in running.items()} | {CLIENT: os.getpid()}
            with CoordinatorClient(netdir) as client:
                for _ in range(max(10, args.queries // 10)):
                    client.query(kind="supply-map")
                spies = []
                if args.py_spy:
                    args.py_spy.mkdir(parents=True, exist_ok=True)
                    for name, pid in pids.items():
                        out = args.py_spy / f"{name.split()[0]}.txt"
                        command = [spy, "record", "--pid", str(pid), "--format", "raw", "--nonblocking", "-o", str(out)]
                        spies.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
                    time.sleep(2)
                before = {name: cpu_ms(pid) for name, pid in pids.items()}
                samples = []
                for _ in range(args.queries):
                    t0 = time.perf_counter()
                    client.query(kind="supply-map")
                    samples.append((time.perf_counter() - t0) * 1000)
                after = {name: cpu_ms(pid) for name, pid in pids.items()}
                for s in spies:
                    s.terminate()
                    s.wait(timeout=60)

    table = Table(title=f"CPU per joint query, over {args.queries} queries (ms)")
    table.add_column("process")
    table.add_column("CPU ms / query", justify="right")
    total = 0.0
    for name in pids:
        per_query = (after[name] - before[name]) / args.queries
        total += per_query
        table.add_row(name, f"{per_query:.2f}")
    table.add_row("all processes", f"{total:.2f}")
    console.print(table)
    quantiles = statistics.quantiles(samples, n=100)
    console.print(f"joint query p50 {quantiles[49]:.2f} ms, p95 {quantiles[94]:.2f} ms; on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
