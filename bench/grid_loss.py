"""Benchmark: how much of the standard table set each node suppresses, and how long protecting
an edition takes.

Six synthetic member nodes (the demo's authorities and data, SQLite files) each protect their
edition of the default policy's standard table set (`Releaser.prepare_grid`, as after an import).
Printed per node and family (new clients by origin and client group; KPI 2 departures by client
group): the cells of the grid that count anyone, the share suppressed, the floor (the share
suppressed by the threshold alone: counts of 1 to 7, or 1 to 10 for groups 14 and 17), the
secondary suppressions beyond that floor, split by quarter and year and by interior and margin
cells, and the seconds the edition took (the time a node spends after an import, never on a
question). Then the time to read a kept edition back in a new process (a node's start).
Run: .venv/bin/python bench/grid_loss.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from cagnet.demo.scenario import DEMO  # noqa: E402
from node.answers.movement import OUTSIDE  # noqa: E402
from node.grid import SPAN  # noqa: E402
from node.release import Releaser  # noqa: E402
from node.store import ensure_authority, open_store  # noqa: E402
from node.synthetic.supply import load as load_synthetic  # noqa: E402
from shared.authorities import shipped_register  # noqa: E402
from shared.disclosure import TOTAL  # noqa: E402
from shared.policy import default_policy  # noqa: E402

console = Console()
POLICY = default_policy()
SECRET = b"bench-rounding-key" + bytes(16)


def _groups(true: Mapping[tuple[str, str, str], int], cell: tuple[str, str, str], position: int) -> list[int]:
    """The client groups a cell counts: its own, or for a total, every group with people in it."""
    if cell[position] != TOTAL:
        return [int(cell[position])]
    other = 3 - position
    return [
        int(c[position])
        for c, n in true.items()
        if n and c[0] == cell[0] and c[other] == cell[other] and c[position] != TOTAL
    ]


def main() -> None:
    register = shipped_register()
    members = frozenset(DEMO["members"])
    table = Table(title="The standard table set: cells suppressed per node (demo data, default policy)")
    for column in (
        "node",
        "family",
        "cells",
        "suppressed",
        "floor",
        "secondary",
        "of which quarter/year",
        "of which margins",
        "protect s",
        "read back s",
    ):
        table.add_column(column, justify="right")
    totals = {"cells": 0, "suppressed": 0, "floor": 0}
    with tempfile.TemporaryDirectory(prefix="cagnet-grid-") as tmp:
        for i, code in enumerate(DEMO["members"]):
            url = f"sqlite:///{Path(tmp) / code}.db"
            engine = open_store(url)
            ensure_authority(engine, authority_code=code, register=register)
            with console.status(f"{code}: loading synthetic data"):
                load_synthetic(
                    engine,
                    authority_code=code,
                    seed=1 + i,
                    person_key=bytes(64),
                    register=register,
                    members=DEMO["members"],
                )
            releaser = Releaser(engine, code, SECRET, members=lambda: members)
            start = time.perf_counter()
            releaser.prepare_grid(POLICY)
            protect = time.perf_counter() - start
            start = time.perf_counter()
            Releaser(engine, code, SECRET, members=lambda: members).prepare_grid(POLICY)
            read_back = time.perf_counter() - start
            blocks = {(family, year): block for (_d, family, year), (_e, block) in releaser._blocks.items() if block}
            for family in ("movement", "kpi"):
                rule = POLICY.rule(family)
                cells = suppressed = floor = in_quarters = in_margins = 0
                for (name, _year), block in blocks.items():
                    if name != family:
                        continue
                    for cell, n in block.true.items():
                        if not n or (block.year is None and cell[0] != SPAN):
                            continue
                        threshold = rule.threshold_over(_groups(block.true, cell, 1 if family == "kpi" else 2))
                        hidden = block.released[cell] is None
                        cells += 1
                        suppressed += hidden
                        below = n <= threshold
                        floor += below
                        if hidden and not below:
                            in_quarters += "Q" in cell[0]
                            in_margins += TOTAL in cell or OUTSIDE in cell
                table.add_row(
                    code,
                    family,
                    str(cells),
                    f"{suppressed} ({100 * suppressed / max(cells, 1):.0f}%)",
                    f"{floor} ({100 * floor / max(cells, 1):.0f}%)",
                    str(suppressed - floor),
                    f"{in_quarters}/{suppressed - floor - in_quarters}",
                    str(in_margins),
                    f"{protect:.2f}" if family == "movement" else "",
                    f"{read_back:.2f}" if family == "movement" else "",
                )
                totals["cells"] += cells
                totals["suppressed"] += suppressed
                totals["floor"] += floor
            engine.dispose()
    c, s, f = totals["cells"], totals["suppressed"], totals["floor"]
    table.add_row(
        "all", "", str(c), f"{s} ({100 * s / c:.1f}%)", f"{f} ({100 * f / c:.1f}%)", str(s - f), "", "", "", ""
    )
    console.print(table)


if __name__ == "__main__":
    main()
