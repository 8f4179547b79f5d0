"""Every figure a joint answer releases, checked against the truth counted straight from the node
stores with plain SQL: a figure shown whole is within what rounding of its parts allows, capacity
is exact, and a figure built from a suppressed ("at least") part is withheld or bounded and says so.

The network is the one issue 26 was found on: Kent, Medway and Surrey with synthetic seeds 1-3,
asked for 2009-04-01 to 2010-03-31, on SQLite and on PostgreSQL stores.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from coordinator import network
from coordinator.joint.client import joint_query
from node.config import load_config
from shared import places
from shared.authorities import Register
from shared.kinds.records import JointKpi, JointNetFlow
from shared.kinds.supply import JointSupplyMap
from shared.policy import AggregateRule
from tests.netutil import LiveNetwork, make_network, running

MEMBERS = ("E10000016", "E06000035", "E10000030")  # Kent, Medway, Surrey
FROM, TO = "2009-04-01", "2010-03-31"
ALL = 0  # client group 0: every client group


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def net(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveNetwork]:
    urls = None
    if request.param == "postgres":
        make: Callable[[int], list[str]] = request.getfixturevalue("postgres_databases")
        urls = dict(zip(MEMBERS, make(len(MEMBERS)), strict=True))
    built = make_network(tmp_path, MEMBERS, seed=1, database_urls=urls)
    with running(built):
        yield built


# --- the truth, from the stores ---------------------------------------------------------------------


@dataclass
class Truth:
    """True counts by (authority, client group); group 0 is every group."""

    # (host, origin, group) -> new clients; origin is a member's code, "outside" or "unknown"
    arrivals: dict[tuple[str, str, int], int] = field(default_factory=lambda: defaultdict(int))
    departures: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    planned: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    units: dict[tuple[str, int], int] = field(default_factory=lambda: defaultdict(int))
    services: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    population: dict[str, int] = field(default_factory=dict)


def _origin(previous: str | None, register: Register) -> str:
    if not previous:
        return "unknown"
    try:
        upper = places.upper_tier(previous, register)
    except KeyError:
        return "unknown"
    return upper if upper in MEMBERS else "outside"


def truth_from_stores(net: LiveNetwork) -> Truth:
    register = network.read_register(net.netdir)
    truth = Truth()
    for code, nodedir in net.nodedirs.items():
        engine = create_engine(load_config(nodedir).database_url)
        with engine.connect() as conn:
            arrivals = conn.execute(
                text(
                    "SELECT previous_authority, client_group, COUNT(*) FROM client_record"
                    " WHERE start_date >= :a AND start_date <= :b GROUP BY previous_authority, client_group"
                ),
                {"a": FROM, "b": TO},
            )
            for previous, group, n in arrivals:
                for g in (int(group), ALL):
                    truth.arrivals[(code, _origin(previous, register), g)] += int(n)
            leaving = conn.execute(
                text(
                    "SELECT r.client_group, o.departure, COUNT(*) FROM outcome o"
                    " JOIN client_record r ON r.id = o.client_record_id JOIN service s ON s.id = r.service_id"
                    " WHERE s.term = 'short' AND o.end_date >= :a AND o.end_date <= :b"
                    " GROUP BY r.client_group, o.departure"
                ),
                {"a": FROM, "b": TO},
            )
            for group, departure, n in leaving:
                for g in (int(group), ALL):
                    truth.departures[(code, g)] += int(n)
                    if departure == "planned":
                        truth.planned[(code, g)] += int(n)
            supply = conn.execute(
                text(
                    "SELECT s.client_group, SUM(s.units), COUNT(*) FROM service s"
                    " JOIN district d ON d.code = s.district_code WHERE d.authority_code = :code"
                    " GROUP BY s.client_group"
                ),
                {"code": code},
            )
            for group, units, n in supply:
                truth.units[(code, int(group))] += int(units)
                truth.services[code] += int(n)
            truth.population[code] = int(
                conn.execute(text("SELECT population FROM authority WHERE code = :code"), {"code": code}).scalar_one()
            )
        engine.dispose()
    return truth


def _imports(truth: Truth, a: str, g: int) -> list[int]:
    return [
        n
        for (host, origin, group), n in truth.arrivals.items()
        if (host, group) == (a, g) and origin not in (a, "unknown")
    ]


def _exports(truth: Truth, a: str, g: int) -> list[int]:
    return [n for (host, origin, group), n in truth.arrivals.items() if host != a and (origin, group) == (a, g)]


def _within(truth: Truth, g: int) -> list[int]:
    return [
        n for (host, origin, group), n in truth.arrivals.items() if group == g and origin in MEMBERS and origin != host
    ]


# --- what rounding allows ------------------------------------------------------------------------------


def per_cell(rule: AggregateRule) -> int:
    """The most one released (rounded, unsuppressed) count can differ from its true count."""
    if rule.rounding_mode == "keyed":  # down or up to a multiple of the base
        return rule.rounding_base - 1
    assert rule.rounding_mode == "nearest", "the test network uses the default policy"
    return rule.rounding_base // 2


def allowance(parts: list[int], cell: int) -> int:
    """A sum of released cells is within `cell` of the truth per non-zero cell (0 is released as 0)."""
    return cell * sum(1 for n in parts if n)


def ratio_range(top: list[int], bottom: list[int], cell: int) -> tuple[float, float]:
    """The ratios a released top/bottom can take when each part is within rounding of its truth."""
    t, b = sum(top), sum(bottom)
    dt, db = allowance(top, cell), allowance(bottom, cell)
    low = max(t - dt, 0) / (b + db) if b + db else 0.0
    high = (t + dt) / max(b - db, 1)
    return low, high


def test_every_released_figure_is_within_rounding_of_the_truth(net: LiveNetwork) -> None:
    policy = network.read_policy(net.netdir)
    truth = truth_from_stores(net)
    wrong: list[str] = []

    # Net flows and the share of movement within the CAG (issue 26's case).
    flows, _ = joint_query(net.netdir, kind="net-flow", from_date=FROM, to_date=TO)
    nf = flows.result
    assert isinstance(nf, JointNetFlow)
    cell = per_cell(policy.rule("net-flow"))
    bounded = withheld = whole = 0
    for row in nf.rows:
        a, g = row.authority, row.client_group
        imp, exp = _imports(truth, a, g), _exports(truth, a, g)
        true_net, slack = sum(imp) - sum(exp), allowance(imp, cell) + allowance(exp, cell)
        where = f"net flow {a} group {g}: shown {row.net} ({getattr(row, 'status', 'whole')}), true {true_net:+}"
        for part, t, parts in (("imported", row.imported, imp), ("exported", row.exported, exp)):
            if t.complete and abs(t.count - sum(parts)) > allowance(parts, cell):
                wrong.append(f"{where}: {part} {t.count} is not within rounding of {sum(parts)}")
            if not t.complete and t.count > sum(parts) + allowance(parts, cell):
                wrong.append(f"{where}: {part} 'at least' {t.count} exceeds the truth {sum(parts)}")
        status = getattr(row, "status", "whole")  # before issue 26 every net flow was shown whole
        if status == "whole":
            whole += 1
            if abs(row.net - true_net) > slack:  # type: ignore[operator]
                wrong.append(f"{where}: outside what rounding of its parts allows (±{slack})")
            if row.net_importer != (row.net > 0):  # type: ignore[operator]
                wrong.append(f"{where}: net_importer {row.net_importer}")
            if not (row.imported.complete and row.exported.complete):
                wrong.append(f"{where}: shown whole from a suppressed part")
        elif status == "at least":
            bounded += 1
            if row.net is None or true_net < row.net - slack or not row.reason or row.net_importer is not None:
                wrong.append(f"{where}: a lower bound must hold, say why and classify nothing ({row.reason!r})")
        elif status == "at most":
            bounded += 1
            if row.net is None or true_net > row.net + slack or not row.reason or row.net_importer is not None:
                wrong.append(f"{where}: an upper bound must hold, say why and classify nothing ({row.reason!r})")
        else:
            withheld += 1
            if status != "withheld" or row.net is not None or not row.reason or row.net_importer is not None:
                wrong.append(f"{where}: a withheld figure carries no number and says why ({row.reason!r})")
    for share in nf.shares:
        g = share.client_group
        within, movers = _within(truth, g), [n for a in MEMBERS for n in _imports(truth, a, g)]
        true_share = sum(within) / sum(movers) if sum(movers) else None
        where = f"share within the CAG, group {g}: shown {share.share_within_cag}, true {true_share}"
        if share.share_within_cag is not None:
            low, high = ratio_range(within, movers, cell)
            if not (low - 0.0005 <= share.share_within_cag <= high + 0.0005):
                wrong.append(f"{where}: outside what rounding of its parts allows ({low:.3f} to {high:.3f})")
            if not (share.within_cag.complete and share.movers.complete):
                wrong.append(f"{where}: shown from a suppressed part")
        elif share.movers.count and not getattr(share, "reason", ""):
            wrong.append(f"{where}: withheld without a reason")

    # KPI 2 at each authority and across the CAG.
    kpi_bundle, _ = joint_query(net.netdir, kind="kpi", from_date=FROM, to_date=TO)
    kpi = kpi_bundle.result
    assert isinstance(kpi, JointKpi)
    cell = per_cell(policy.rule("kpi"))
    for k in kpi.rows:
        codes = MEMBERS if k.authority == "CAG" else (k.authority,)
        planned = [truth.planned[(c, k.client_group)] for c in codes]
        leaving = [truth.departures[(c, k.client_group)] for c in codes]
        where = f"KPI 2 {k.authority} group {k.client_group}: shown {k.percent_planned}, true {planned} of {leaving}"
        if k.percent_planned is not None:
            low, high = ratio_range(planned, leaving, cell)
            if not (100 * low - 0.05 <= k.percent_planned <= 100 * high + 0.05):
                wrong.append(f"{where}: outside what rounding of its parts allows")
        elif sum(leaving) and not getattr(k, "reason", ""):
            wrong.append(f"{where}: withheld without a reason")

    # The supply map: capacity exact, rates and gaps from it, CAG totals whole or withheld with why.
    supply_bundle, _ = joint_query(net.netdir, kind="supply-map")
    supply = supply_bundle.result
    assert isinstance(supply, JointSupplyMap)
    population = sum(truth.population.values())
    assert supply.population == population
    assert supply.units == sum(truth.units.values())
    for row in supply.client_groups:
        units = {c: truth.units[(c, row.client_group)] for c in MEMBERS}
        cag_units = sum(units.values())
        assert row.units == units and row.cag_units == cag_units, f"capacity in group {row.client_group}"
        assert row.cag_rate == round(cag_units * 1000 / population, 3)
        assert row.rates == {c: round(units[c] * 1000 / truth.population[c], 3) for c in MEMBERS}
        assert row.shortfall == {c: round(cag_units * truth.population[c] / population - units[c]) for c in MEMBERS}
    cell = per_cell(policy.rule("supply-map"))
    for a in supply.authorities:
        if a.services is not None and abs(a.services - truth.services[a.authority]) > cell:
            wrong.append(f"services at {a.authority}: {a.services}, true {truth.services[a.authority]}")
    if supply.services is None:
        if "services" not in getattr(supply, "withheld", {}):
            wrong.append("the CAG's service count is withheld without a reason")
    elif abs(supply.services - sum(truth.services.values())) > cell * len(MEMBERS):
        wrong.append(f"CAG services {supply.services}, true {sum(truth.services.values())}")

    assert not wrong, "\n".join(wrong)
    # The case is one where suppression matters: some figures are withheld or bounded, some whole.
    assert withheld + bounded and whole, (withheld, bounded, whole)


# --- how a bound or withheld figure is shown ------------------------------------------------------------


def test_a_figure_with_a_suppressed_part_says_so_on_screen_in_the_report_and_the_feed(tmp_path: Path) -> None:
    from rich.console import Console

    from cagnet.cli.query import render_supply_map
    from cagnet.cli.records import place_label, render_kpi, render_net_flow
    from coordinator.feeds.client import publish
    from coordinator.feeds.snapshot import snapshot_csv
    from coordinator.report import net_flow_chart

    built = make_network(tmp_path, MEMBERS, seed=1)
    with running(built):
        snapshot = publish(built.netdir, from_date=FROM, to_date=TO)
        flows, _ = joint_query(built.netdir, kind="net-flow", from_date=FROM, to_date=TO)
        kpi, _ = joint_query(built.netdir, kind="kpi", from_date=FROM, to_date=TO)
        supply, _ = joint_query(built.netdir, kind="supply-map")
    nf, k, sm = flows.result, kpi.result, supply.result
    assert isinstance(nf, JointNetFlow) and isinstance(k, JointKpi) and isinstance(sm, JointSupplyMap)

    console = Console(record=True, width=200)
    render_net_flow(flows, console)
    lines = {line.split("  ")[0].strip(): line for line in console.export_text().splitlines()}
    short = [row for row in nf.rows if row.client_group == ALL and row.status != "whole"]
    assert short, "the case has a net flow with a suppressed part"
    for row in nf.rows:
        if row.client_group != ALL:
            continue
        line = lines[place_label(row.authority)]
        if row.status == "whole":
            assert f"{row.net:+,}" in line and any(w in line for w in ("importer", "exporter", "balanced")), line
        else:
            assert row.reason in line and not any(w in line for w in ("importer", "exporter", "balanced")), line
            assert ("withheld" if row.net is None else f"{row.status} {row.net:+,}") in line, line

    console = Console(record=True, width=200)
    render_kpi(kpi, console)
    text = console.export_text()
    for row in k.rows:
        if row.authority == "CAG" and row.percent_planned is None and row.reason:
            assert row.reason in text

    console = Console(record=True, width=200)
    render_supply_map(supply, console)
    text = console.export_text()
    for name, reason in sm.withheld.items():
        assert reason in text and getattr(sm, name) is None

    html = net_flow_chart(flows)
    for row in short:
        assert row.reason in html

    # The feed's CSV: every figure that is not whole says why, and a withheld percentage has no value.
    rows = list(csv.reader(io.StringIO(snapshot_csv(snapshot))))[1:]
    assert any(r[6] == "False" for r in rows)
    for r in rows:
        assert (r[6] == "True") == (r[8] == ""), r  # the note: empty only beside a whole figure
        if r[4] == "percent_planned" and r[6] == "False":
            assert r[5] == "", r
