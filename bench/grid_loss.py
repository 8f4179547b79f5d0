"""Benchmark: how much of the standard table set each node suppresses, and how long protecting
an edition takes.

Six synthetic member nodes (the demo's authorities and data, SQLite files) each protect their
edition of the default policy's standard table set (`Releaser.prepare_grid`, as after an import).
Printed per node and family (new clients by origin and client group; KPI 2 departures by client
group): the cells of the grid that count anyone, the share suppressed, the floor (those of 1 to
the threshold: 1-7, or 1-10 for groups 14 and 17, which any protection hides), the secondary
suppressions beyond it in quarters and in years, the share of the people in the interior cells of
quarters and of years that sit in a suppressed cell, and the seconds the edition took (spent after
an import, never while a question waits) and to read it back (a node's start).
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
    table = Table(title="The standard table set: what each node suppresses (demo data, default policy)")
    for column in ("node", "family", "cells", "suppressed", "floor", "secondary Q/Y", "people hidden Q/Y", "protect s"):
        table.add_column(column, justify="right")
    totals = [0, 0, 0, 0, 0, 0, 0]  # cells, suppressed, floor, people in quarter leaves, hidden, in year leaves, hidden
    with tempfile.TemporaryDirectory(prefix="cagnet-grid-") as tmp:
        for i, code in enumerate(DEMO["members"]):
            engine = open_store(f"sqlite:///{Path(tmp) / code}.db")
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
            Releaser(engine, code, SECRET, members=lambda: members).prepare_grid(POLICY)  # a restart
            read_back = time.perf_counter() - start
            blocks = [(family, block) for (_d, family, _y), (_e, block) in releaser._blocks.items() if block]
            for family in ("movement", "kpi"):
                rule = POLICY.rule(family)
                n = [0, 0, 0, 0, 0, 0, 0]
                secondary = {"Q": 0, "Y": 0}
                for name, block in blocks:
                    if name != family:
                        continue
                    for cell, count in block.true.items():
                        if not count or (block.year is None and cell[0] != SPAN):
                            continue
                        threshold = rule.threshold_over(_groups(block.true, cell, 1 if family == "kpi" else 2))
                        hidden = block.released[cell] is None
                        below = count <= threshold
                        n[0], n[1], n[2] = n[0] + 1, n[1] + hidden, n[2] + below
                        grain = "Q" if "Q" in cell[0] else "Y"
                        secondary[grain] += hidden and not below
                        if TOTAL not in cell and OUTSIDE not in cell and cell[0] != SPAN:
                            at = 3 if grain == "Q" else 5
                            n[at], n[at + 1] = n[at] + count, n[at + 1] + count * hidden
                table.add_row(
                    code,
                    family,
                    str(n[0]),
                    _share(n[1], n[0]),
                    _share(n[2], n[0]),
                    f"{secondary['Q']}/{secondary['Y']}",
                    f"{_pct(n[4], n[3])}/{_pct(n[6], n[5])}",
                    f"{protect:.2f} (read back {read_back:.2f})" if family == "movement" else "",
                )
                totals = [a + b for a, b in zip(totals, n, strict=True)]
            engine.dispose()
    c, s, f, q, qh, y, yh = totals
    table.add_row("all", "", str(c), _share(s, c), _share(f, c), str(s - f), f"{_pct(qh, q)}/{_pct(yh, y)}", "")
    console.print(table)
    console.print(
        "cells: the grid's cells that count anyone; floor: those of 1 to the threshold, which any protection hides; "
        "secondary: hidden to protect them; people hidden: the share of the people in the interior cells "
        "(origin x client group, or client group x departure) of quarters / years that are in a suppressed cell."
    )


def _share(part: int, whole: int) -> str:
    return f"{part} ({_pct(part, whole)})"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / max(whole, 1):.0f}%"


if __name__ == "__main__":
    main()
