"""Benchmark: the time a demo-sized node takes to protect one edition of the standard table set
(`Releaser.prepare_grid`, run after each import), with the default grid's kinds and with one kind
left out, so that a kind's share of the build shows (the equality profile by default: its tables
are rows of movement's block).

One synthetic member node (the demo's first authority and data, a SQLite file) is built once;
each run protects a fresh copy of it. Printed: seconds per build for each set of kinds, and the
ratio.
Run: .venv/bin/python bench/edition_build.py [--without equality] [--runs 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from cagnet.demo.scenario import DEMO  # noqa: E402
from node.release import Releaser  # noqa: E402
from node.store import ensure_authority, open_store  # noqa: E402
from node.synthetic.supply import load as load_synthetic  # noqa: E402
from shared.authorities import shipped_register  # noqa: E402
from shared.policy import Policy, default_policy, default_policy_toml, parse_policy  # noqa: E402

console = Console()


def _without(kind: str) -> Policy:
    grid = default_policy().grid
    assert grid is not None and kind in grid.kinds
    listed = ", ".join(f'"{k}"' for k in grid.kinds)
    kept = ", ".join(f'"{k}"' for k in grid.kinds if k != kind)
    return parse_policy(default_policy_toml().replace(f"kinds = [{listed}]".encode(), f"kinds = [{kept}]".encode()))


def _build(path: Path, code: str, policy: Policy) -> float:
    engine = open_store(f"sqlite:///{path}")
    try:
        releaser = Releaser(
            engine, code, b"bench-rounding-key-0123456789abcdef", members=lambda: frozenset(DEMO["members"])
        )
        began = time.perf_counter()
        assert releaser.prepare_grid(policy)
        return time.perf_counter() - began
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--without", default="equality", help="the grid kind left out of the second set")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    code = DEMO["members"][0]
    policies = {"default grid": default_policy(), f"without {args.without}": _without(args.without)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = root / "node.db"
        engine = open_store(f"sqlite:///{store}")
        ensure_authority(engine, authority_code=code, register=shipped_register())
        with console.status(f"{code}: loading synthetic data"):
            load_synthetic(
                engine,
                authority_code=code,
                seed=1,
                person_key=bytes(64),
                register=shipped_register(),
                members=DEMO["members"],
            )
        engine.dispose()
        seconds: dict[str, list[float]] = {name: [] for name in policies}
        for run in range(args.runs):
            for name, policy in policies.items():
                copy = root / f"run{run}-{len(seconds[name])}-{name.replace(' ', '-')}.db"
                shutil.copyfile(store, copy)
                seconds[name].append(_build(copy, code, policy))
    table = Table(title=f"One edition of the standard table set, {code} (demo data), {args.runs} runs")
    table.add_column("kinds")
    table.add_column("best s", justify="right")
    table.add_column("median s", justify="right")
    for name, times in seconds.items():
        ordered = sorted(times)
        table.add_row(name, f"{ordered[0]:.2f}", f"{ordered[len(ordered) // 2]:.2f}")
    console.print(table)
    base, full = (sorted(seconds[n])[0] for n in reversed(list(policies)))
    console.print(f"default / without {args.without}: {full / base:.2f}x")


if __name__ == "__main__":
    main()
