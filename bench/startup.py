"""Benchmark: how long a person waits before any `cagnet` command does anything (issue 24).

Runs each command line N times (default 15) as a fresh process and prints the median wall time:
the bare interpreter, a one-command Typer app's --help (the floor: Typer's own start-up),
`cagnet --help` and `cagnet query supply-map --help`, each with its ratio to the Typer floor.
Heavy libraries (grpc, SQLAlchemy, cryptography, pydantic models, protobuf, plotly) are imported
only inside the commands that use them, so what is left above the floor is the command tree itself.

Run: .venv/bin/python bench/startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent

TYPER_FLOOR = """
import typer
app = typer.Typer()
@app.command()
def hello(name: str = "world") -> None:
    print(name)
app()
"""


def _cagnet() -> list[str]:
    """The installed console script next to this interpreter, else the module."""
    script = Path(sys.executable).parent / "cagnet"
    if script.exists():
        return [str(script)]
    found = shutil.which("cagnet")
    return [found] if found else [sys.executable, "-m", "cagnet"]


def _median_s(argv: list[str], runs: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "100"}
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    cagnet = _cagnet()
    rows = [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("Typer app --help (floor)", [sys.executable, "-c", TYPER_FLOOR, "--help"]),
        ("cagnet --help", [*cagnet, "--help"]),
        ("cagnet query supply-map --help", [*cagnet, "query", "supply-map", "--help"]),
    ]
    medians = {label: _median_s(argv, args.runs) for label, argv in rows}
    floor = medians["Typer app --help (floor)"]
    table = Table(title=f"Start-up, median of {args.runs} runs ({os.cpu_count()} cores)")
    table.add_column("command")
    table.add_column("median ms", justify="right")
    table.add_column("x Typer floor", justify="right")
    for label, _ in rows:
        table.add_row(label, f"{medians[label] * 1000:.0f}", f"{medians[label] / floor:.2f}")
    Console().print(table)


if __name__ == "__main__":
    main()
