"""Benchmark: a CAG chair's year of questions, with and without the standard table set.

Six synthetic member nodes (the demo's authorities and data, SQLite files) answer, in process and
through each node's own release gate (`node.release.Releaser`: the policy, the query-set
restriction, the release ledger, the standard table set), the 59 questions a chair preparing
quarterly meetings asks most: for each client-record kind on the standard table set (movement, net
flow, KPI 2, non-local services, outcomes, KPI 1) each financial year 2005-06 to 2009-10 and each
quarter of 2009-10, and five by client group (domestic violence, refugees, homeless people). A
report (every kind over the whole records) and a feed snapshot (movement and KPI 2 over the whole
records) are asked at random points in between, and 24 questions off the grid (a calendar year,
April to February, two years, two client groups at once). The order is shuffled for each seed. A
joint question is answered when at least the policy's minimum number of authorities answer it, as
the coordinator requires.
Printed: the share of grid and of off-grid questions answered, today (the ledger alone) and with
the standard table set. Every seed starts from fresh copies of the same six stores.
Run: .venv/bin/python bench/chairs_year.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from cagnet.demo.scenario import DEMO  # noqa: E402
from node.answers.movement import Question  # noqa: E402
from node.release import Releaser  # noqa: E402
from node.store import ensure_authority, open_store  # noqa: E402
from node.synthetic.supply import load as load_synthetic  # noqa: E402
from shared.authorities import shipped_register  # noqa: E402
from shared.errors import DisclosureRefused  # noqa: E402
from shared.policy import Policy, default_policy, default_policy_toml, parse_policy  # noqa: E402

console = Console()
KINDS = ("movement", "net-flow", "kpi", "non-local-services", "outcomes", "kpi1")
CHAIR = ("cag-chair",)
DV, REFUGEES, HOMELESS = 14, 17, 7
WITH_GRID = default_policy()
# Before the standard table set: the same policy without it, the release ledger alone.
TODAY = parse_policy(default_policy_toml(grid=False))

Asked = tuple[str, Question, bool]  # kind, question, on the grid


def _q(start: str, end: str, period: str = "year", groups: tuple[int, ...] = ()) -> Question:
    return Question(date.fromisoformat(start), date.fromisoformat(end), period, groups, 50)


def chairs_questions() -> list[Asked]:
    """The 59 grid questions and 24 off the grid."""
    asked: list[Asked] = []
    for kind in KINDS:
        for year in range(2005, 2010):
            asked.append((kind, _q(f"{year}-04-01", f"{year + 1}-03-31", "quarter"), True))
        for start, end in (("04-01", "06-30"), ("07-01", "09-30"), ("10-01", "12-31")):
            asked.append((kind, _q(f"2009-{start}", f"2009-{end}"), True))
        asked.append((kind, _q("2010-01-01", "2010-03-31"), True))
    asked.append(("movement", _q("2009-04-01", "2010-03-31", groups=(DV,)), True))
    asked.append(("movement", _q("2009-04-01", "2010-03-31", groups=(REFUGEES,)), True))
    asked.append(("kpi", _q("2009-04-01", "2010-03-31", groups=(DV,)), True))
    asked.append(("net-flow", _q("2009-04-01", "2010-03-31", groups=(HOMELESS,)), True))
    asked.append(("outcomes", _q("2009-04-01", "2010-03-31", groups=(DV,)), True))
    for kind in KINDS:
        asked.append((kind, _q("2009-01-01", "2009-12-31"), False))
        asked.append((kind, _q("2009-04-01", "2010-02-28"), False))
        asked.append((kind, _q("2008-04-01", "2010-03-31"), False))
        asked.append((kind, _q("2009-04-01", "2010-03-31", groups=(DV, REFUGEES)), False))
    return asked


def build(root: Path) -> dict[str, Path]:
    register = shipped_register()
    stores = {}
    for i, code in enumerate(DEMO["members"]):
        path = root / f"{code}.db"
        engine = open_store(f"sqlite:///{path}")
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
        engine.dispose()
        stores[code] = path
    return stores


def _ask(releaser: Releaser, policy: Policy, kind: str, question: Question) -> bool:
    ask: Callable[..., object] = {
        "movement": releaser.movement,
        "net-flow": releaser.net_flow,
        "kpi": releaser.kpi,
        "non-local-services": releaser.non_local_services,
        "outcomes": releaser.outcomes,
        "kpi1": releaser.kpi1,
    }[kind]
    try:
        ask(policy, roles=CHAIR, question=question)
    except DisclosureRefused:
        return False
    return True


def run(stores: dict[str, Path], workdir: Path, policy: Policy, seed: int) -> tuple[int, int, int, int]:
    """(grid answered, grid asked, off-grid answered, off-grid asked) for one seed's year."""
    members = frozenset(stores)
    releasers = []
    for code, path in stores.items():
        copy = workdir / f"{seed}-{code}.db"
        shutil.copy(path, copy)
        engine = open_store(f"sqlite:///{copy}")
        releasers.append(Releaser(engine, code, b"bench-rounding-key-%d" % seed + bytes(16), members=lambda: members))
    rng = random.Random(seed)
    order = chairs_questions()
    rng.shuffle(order)
    whole = Question(None, None, "year", (), 50)
    extras: list[tuple[str, Question, bool | None]] = [(k, whole, None) for k in KINDS]  # the report
    extras += [("movement", whole, None), ("kpi", whole, None)]  # the feed snapshot
    sequence: list[tuple[str, Question, bool | None]] = list(order)
    report = len(KINDS)
    for at, item in zip(sorted(rng.sample(range(len(sequence)), 2)), (extras[:report], extras[report:]), strict=True):
        sequence[at:at] = item
    counts = [0, 0, 0, 0]
    for kind, question, on_grid in sequence:
        answered = sum(_ask(r, policy, kind, question) for r in releasers)
        if on_grid is None:
            continue
        ok = answered >= policy.rule(kind).min_authorities
        slot = 0 if on_grid else 2
        counts[slot] += ok
        counts[slot + 1] += 1
    for r in releasers:
        r.engine.dispose()
    return counts[0], counts[1], counts[2], counts[3]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cagnet-chair-") as tmp:
        root = Path(tmp)
        stores = build(root)
        table = Table(title=f"A chair's year: {len(chairs_questions())} questions, six authorities, {args.seeds} seeds")
        for column in ("seed", "policy", "grid answered", "off-grid answered"):
            table.add_column(column, justify="right")
        totals: dict[str, list[int]] = {"ledger alone": [0, 0, 0, 0], "standard tables": [0, 0, 0, 0]}
        for seed in range(1, args.seeds + 1):
            for name, policy in (("ledger alone", TODAY), ("standard tables", WITH_GRID)):
                with console.status(f"seed {seed}: {name}"):
                    result = run(stores, root, policy, seed)
                totals[name] = [a + b for a, b in zip(totals[name], result, strict=True)]
                g, gn, o, on = result
                table.add_row(str(seed), name, f"{g}/{gn}", f"{o}/{on}")
        for name, (g, gn, o, on) in totals.items():
            table.add_row("all", name, f"{g}/{gn} ({100 * g / gn:.0f}%)", f"{o}/{on} ({100 * o / on:.0f}%)")
        console.print(table)


if __name__ == "__main__":
    main()
