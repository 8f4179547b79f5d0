"""Benchmark: the browser console against the command line, in the same run on the same network.

Builds a real network on loopback (tests/netutil.py: N members with synthetic records, gRPC with
mTLS on port 0), exports the CAG chair's kit, and starts `cagnet console` on it. Then, each the
median of Q runs over HTTP to the console (a keep-alive-less request, as a browser's first):
- page loads: the network page, a question's form, a result page with its tables and chart;
- a query's round trip through the console: the form posted (Origin and CSRF checked), the
  joint query asked, verified and tabulated, the result page fetched;
- the same query from the CLI's in-process function (`joint_query`, a fresh channel, as one
  `cagnet query` does), from a kept-open client (what the console holds), and as a person runs it:
  `cagnet query supply-map --kit KIT`, a whole process (start-up included) printing its table;
- the XLSX download of the result.
Ratios are to the CLI function. Run: .venv/bin/python bench/console.py [--queries Q] [--members N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from cagnet.actions.asking import member_asker  # noqa: E402
from cagnet.console.app import TOKEN_HEADER, ConsoleServer  # noqa: E402
from cagnet.console.session import Session  # noqa: E402
from coordinator import kit  # noqa: E402
from coordinator.joint.client import CoordinatorClient, joint_query  # noqa: E402
from shared.manifest import CAG_CHAIR  # noqa: E402
from tests.netutil import make_network, running  # noqa: E402

# Kent, Medway, Brighton & Hove, East Sussex, West Sussex, Surrey, Hampshire
MEMBERS = ("E10000016", "E06000035", "E06000043", "E10000011", "E10000032", "E10000030", "E10000014")


def _median_ms(run: Callable[[], object], times: int) -> float:
    run()  # warm: the first of anything pays for imports and handshakes
    samples = []
    for _ in range(times):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--members", type=int, default=3, help="members of the network (up to 7)")
    parser.add_argument("--clients", type=int, default=2000, help="client records per member")
    args = parser.parse_args()
    members = MEMBERS[: max(1, min(args.members, len(MEMBERS)))]
    with tempfile.TemporaryDirectory() as tmp:
        built = make_network(Path(tmp), members, clients=args.clients)
        with running(built) as net:
            folder = kit.export(net.netdir, CAG_CHAIR, Path(tmp) / "chair-kit")
            with ConsoleServer(Session(folder)) as server:
                rows = _measure(server, folder, args.queries)
    table = Table(title=f"The console and the CLI, {len(members)} members, median of {args.queries} (ms)")
    for col in ("what", "ms", "ratio to the CLI's query"):
        table.add_column(col, justify="left" if col == "what" else "right")
    cli = rows["supply map: CLI in-process function (fresh channel)"]
    for what, ms in rows.items():
        table.add_row(what, f"{ms:.1f}", f"{ms / cli:.2f}")
    Console(width=140).print(table)


def _measure(server: ConsoleServer, folder: Path, times: int) -> dict[str, float]:
    headers = {TOKEN_HEADER: server.session.token}

    def get(path: str) -> bytes:
        with urllib.request.urlopen(urllib.request.Request(server.origin + path, headers=headers)) as response:
            return bytes(response.read())

    def ask_through_console() -> None:
        body = f"csrf={server.session.csrf}&as_at=".encode()
        request = urllib.request.Request(
            server.origin + "/ask/supply-map",
            data=body,
            method="POST",
            headers={**headers, "Origin": server.origin, "Content-Type": "application/x-www-form-urlencoded"},
        )
        with urllib.request.urlopen(request) as response:  # follows the 303 to the result page
            assert b"supply-map: authorities" in response.read()

    held = server.session.ask("supply-map", {})
    rows = {
        "page load: the network page": _median_ms(lambda: get("/"), times),
        "page load: a question's form": _median_ms(lambda: get("/ask/supply-map"), times),
        "page load: a result (tables and chart)": _median_ms(lambda: get(f"/results/{held.id}"), times),
        "supply map: through the console (post, ask, verify, page)": _median_ms(ask_through_console, times),
        "supply map: CLI in-process function (fresh channel)": _median_ms(
            lambda: joint_query(folder, kind="supply-map", member_asker=member_asker), times
        ),
    }
    command = [sys.executable, "-m", "cagnet", "query", "supply-map", "--kit", str(folder)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    rows["supply map: `cagnet query supply-map --kit` (a whole process)"] = _median_ms(
        lambda: subprocess.run(command, env=env, check=True, capture_output=True, timeout=120), times
    )
    with CoordinatorClient(folder) as client:
        rows["supply map: kept-open client (no page)"] = _median_ms(lambda: client.query(kind="supply-map"), times)
    rows["XLSX download of the result"] = _median_ms(lambda: get(f"/results/{held.id}/xlsx"), times)
    return rows


if __name__ == "__main__":
    main()
