"""KPI 1 and utilisation through a real network: three nodes with synthetic supply and quarterly
returns, a coordinator on port 0, mTLS and signed envelopes, on SQLite and on PostgreSQL stores.
Every released figure is checked against the truth summed straight from the stores with plain SQL;
shares are given only from whole parts; small domestic-violence cells are withheld at their
stricter threshold; the plan covers both kinds; the CLI's bundles verify offline.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from cagnet.cli import app
from coordinator import network
from coordinator.joint import bundle as bundle_mod
from coordinator.joint.client import joint_query
from node.config import load_config
from shared.kinds.records import JointPlan, Tally
from shared.kinds.returns import CAG, JointKpi1, JointUnmetDemand, JointUtilisation
from shared.policy import default_policy
from tests.netutil import LiveNetwork, make_network, running

MEMBERS = ("E10000016", "E06000035", "E10000030")  # Kent, Medway, Surrey
FROM, TO = "2009-04-01", "2010-03-31"  # the four quarters of 2009-10
RULE = default_policy().rule("kpi1")
BASE = RULE.rounding_base


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def net(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveNetwork]:
    urls = None
    if request.param == "postgres":
        make: Callable[[int], list[str]] = request.getfixturevalue("postgres_databases")
        urls = dict(zip(MEMBERS, make(len(MEMBERS)), strict=True))
    built = make_network(tmp_path, MEMBERS, seed=1, clients=200, database_urls=urls)
    with running(built):
        yield built


def _truth(net: LiveNetwork, query: str, first: str = FROM, last: str = "2010-01-01") -> dict[tuple[object, ...], int]:
    """Sums by (authority, ...) from every node's store, for the quarters of 2009-10 (or those
    starting from `first` to `last`)."""
    truth: dict[tuple[object, ...], int] = defaultdict(int)
    for code, nodedir in net.nodedirs.items():
        engine = create_engine(load_config(nodedir).database_url)
        with engine.connect() as conn:
            for *key, n in conn.execute(text(query), {"a": first, "b": last}):
                truth[(code, *key)] += int(n or 0)
        engine.dispose()
    return truth


def _close(released: Tally, true: int, parts: int = 1) -> None:
    """A whole released count is its true value rounded (each part by less than the base)."""
    assert released.complete
    assert abs(released.count - true) < BASE * parts, (released, true)


def test_kpi1_is_released_against_the_truth_and_verifies_offline(net: LiveNetwork, tmp_path: Path) -> None:
    bundle, envelope = joint_query(net.netdir, kind="kpi1", from_date=FROM, to_date=TO)
    result = bundle.result
    assert isinstance(result, JointKpi1) and bundle.answered == tuple(sorted(MEMBERS))
    saved = tmp_path / "kpi1.json"
    bundle_mod.save(saved, envelope, network_dir=net.netdir)
    bundle_mod.verify_bundle(bundle_mod.load(saved)[0], network.read(net.netdir))

    users = _truth(
        net,
        "SELECT s.client_group, SUM(r.service_users) FROM kpi1_return r JOIN service s ON s.id = r.service_id"
        " WHERE s.term = 'long' AND r.quarter_start >= :a AND r.quarter_start <= :b GROUP BY s.client_group",
    )
    kept = _truth(
        net,
        "SELECT s.client_group, SUM(r.maintaining) FROM kpi1_return r JOIN service s ON s.id = r.service_id"
        " WHERE s.term = 'long' AND r.quarter_start >= :a AND r.quarter_start <= :b GROUP BY s.client_group",
    )
    for code in MEMBERS:
        users[(code, 0)] = sum(n for (c, _g), n in list(users.items()) if c == code)
        kept[(code, 0)] = sum(n for (c, g), n in list(kept.items()) if c == code and g != 0)
    shown = 0
    for row in result.rows:
        if row.authority == CAG:
            continue
        true_users, true_kept = users[(row.authority, row.client_group)], kept[(row.authority, row.client_group)]
        if row.service_users.complete:
            _close(row.service_users, true_users)
        else:
            assert true_users > 0  # only a count of someone is ever suppressed
        if row.maintaining.complete:
            _close(row.maintaining, true_kept)
        if row.percent_maintaining is not None:
            shown += 1
            assert row.maintaining.complete and row.service_users.complete
            assert row.percent_maintaining == round(100 * row.maintaining.count / row.service_users.count, 1)
        else:
            assert row.reason  # withheld says why
    assert shown >= 6, "most authorities' KPI 1 figures are released"
    # The CAG figure: the sum of the authorities' released parts, whole only when every part is.
    every = [r for r in result.rows if r.client_group == 0]
    cag = next(r for r in every if r.authority == CAG)
    parts = [r for r in every if r.authority != CAG]
    assert cag.service_users.count == sum(r.service_users.count for r in parts if r.service_users.complete)
    assert cag.service_users.complete == all(r.service_users.complete for r in parts)
    if cag.percent_maintaining is not None:
        assert 94 <= cag.percent_maintaining <= 99  # long-term services keep most users independent
        _close(cag.service_users, sum(users[(c, 0)] for c in MEMBERS), parts=len(MEMBERS))


def test_utilisation_is_released_against_the_truth_and_protects_refuges(net: LiveNetwork) -> None:
    bundle, _ = joint_query(net.netdir, kind="utilisation", from_date=FROM, to_date=TO)
    result = bundle.result
    assert isinstance(result, JointUtilisation)
    query = (
        "SELECT s.client_group, s.service_type, SUM(r.units_occupied), SUM(r.voids) FROM occupancy_return r"
        " JOIN service s ON s.id = r.service_id WHERE r.quarter_start >= :a AND r.quarter_start <= :b"
        " GROUP BY s.client_group, s.service_type"
    )
    occupied = _truth(net, query.replace(", SUM(r.voids)", ""))
    voids = _truth(net, query.replace("SUM(r.units_occupied), ", ""))
    by_type: dict[tuple[object, ...], list[int]] = defaultdict(lambda: [0, 0])
    for (code, group, service_type), n in occupied.items():
        by_type[(code, 0, service_type)][0] += n
        by_type[(code, group, service_type)][0] += n
    for (code, group, service_type), n in voids.items():
        by_type[(code, 0, service_type)][1] += n
        by_type[(code, group, service_type)][1] += n
    rates = []
    for row in result.rows:
        if row.authority == CAG or not row.service_type:
            continue
        true_occupied, true_void = by_type[(row.authority, row.client_group, row.service_type)]
        for released, true in ((row.occupied, true_occupied), (row.void, true_void)):
            if released.complete:
                _close(released, true)
            # Refuges: a count of 1 to 10 is never released (the stricter threshold of group 14).
            if row.client_group == 14 and 1 <= true <= RULE.threshold_for(14):
                assert not released.complete
        if row.percent_occupied is not None:
            rates.append(row.percent_occupied)
            assert row.percent_occupied == round(100 * row.occupied.count / (row.occupied.count + row.void.count), 1)
    assert rates and 80 <= sorted(rates)[len(rates) // 2] <= 99, rates  # typical occupancy 85-97%
    cag_types = [r for r in result.rows if r.authority == CAG and r.client_group == 0 and r.service_type]
    assert {r.service_type for r in cag_types} >= {"accommodation-based", "floating-support"}
    for row in cag_types:
        if row.percent_occupied is not None:
            parts = [
                r
                for r in result.rows
                if r.authority != CAG and (r.client_group, r.service_type) == (0, row.service_type)
            ]
            assert row.occupied.count == sum(r.occupied.count for r in parts)

    # Waiting lists and refused referrals: people, in a table of their own, against the stores.
    demand, _ = joint_query(net.netdir, kind="unmet-demand", from_date=FROM, to_date=TO)
    assert isinstance(demand.result, JointUnmetDemand)
    people = (
        "SELECT s.client_group, s.service_type, SUM(r.waiting_list), SUM(r.referrals_refused) FROM occupancy_return r"
        " JOIN service s ON s.id = r.service_id WHERE r.quarter_start >= :a AND r.quarter_start <= :b"
        " GROUP BY s.client_group, s.service_type"
    )
    waiting = _truth(net, people.replace(", SUM(r.referrals_refused)", ""))
    refused = _truth(net, people.replace("SUM(r.waiting_list), ", ""))
    rule = default_policy().rule("unmet-demand")
    released = 0
    for row in demand.result.rows:
        if row.authority == CAG or not row.service_type or not row.client_group:
            continue
        key = (row.authority, row.client_group, row.service_type)
        for tally, true in ((row.waiting, waiting.get(key, 0)), (row.refused, refused.get(key, 0))):
            if tally.complete:
                released += 1
                _close(tally, true)
            if 1 <= true <= rule.threshold_for(row.client_group):
                assert not tally.complete and "suppressed" in row.reason  # never a small count of people
    assert released > 10
    for row in demand.result.rows:
        if row.authority == CAG and row.client_group == 0 and row.service_type and row.waiting.complete:
            parts = [
                r
                for r in demand.result.rows
                if r.authority != CAG and (r.client_group, r.service_type) == (0, row.service_type)
            ]
            assert row.waiting.count == sum(r.waiting.count for r in parts)

    # The cost per occupied unit beside the cost per unit: the spend question for the same dates
    # (money under the minimum-contributor, dominance and p% rules) over this occupancy.
    asked = ["query", "utilisation", "--network", str(net.netdir), "--from", FROM, "--to", TO, "--cost"]
    shown = CliRunner().invoke(app, [*asked, "--json"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output + str(shown.exception or "")
    document = json.loads(shown.stdout)
    assert document["bundle"]["result"] == result.model_dump(mode="json")  # the same answer, repeated
    spend = {
        (r["authority"] or CAG, r["client_group"], r["service_type"]): r for r in document["spend"]["result"]["rows"]
    }
    costs = document["cost"]["rows"]
    given, by_type_rows = 0, 0
    for cost in costs:
        key = (cost["authority"], cost["client_group"], cost["service_type"])
        used = next(r for r in result.rows if (r.authority, r.client_group, r.service_type) == key)
        paid = spend.get(key)
        if paid is None:  # a service type over every group: its groups' released values and units added
            by_type_rows += 1
            groups = [r for (a, g, t), r in spend.items() if a == key[0] and g and t == key[2]]
            values = [r["annual_value"] for r in groups]
            units = sum(r["units"] for r in groups)
            value = None if None in values else sum(values)
            per_week = round(value / (units * 52), 2) if value is not None and units else None
            paid = {"annual_value": value, "per_unit_week": per_week}
        assert cost["per_unit_week"] == paid["per_unit_week"] and cost["percent_occupied"] == used.percent_occupied
        if cost["authority"] != CAG and used.percent_occupied is not None and key[2]:
            true_occupied, true_void = by_type[key]
            # Each count is rounded by less than the base: the share moves by at most that much.
            slack = 100 * 2 * BASE / (true_occupied + true_void) + 0.1
            assert abs(used.percent_occupied - 100 * true_occupied / (true_occupied + true_void)) <= slack
        if paid["annual_value"] is None:
            assert cost["per_occupied_unit_week"] is None and "spend" in cost["reason"]  # withheld money stays so
        if cost["per_occupied_unit_week"] is not None:
            given += 1
            expected = round(paid["per_unit_week"] * 100 / used.percent_occupied, 2)
            assert cost["per_occupied_unit_week"] == expected >= paid["per_unit_week"]
    assert given > 0 and by_type_rows > 0 and any(c["per_occupied_unit_week"] is None for c in costs)
    table = " ".join(CliRunner().invoke(app, asked, env={"COLUMNS": "200"}).output.split())
    assert "Cost per occupied unit a week by service type" in table
    csv_text = CliRunner().invoke(app, [*asked, "--format", "csv"], env={"COLUMNS": "200"}).output
    assert "cost per occupied unit: rows" in csv_text and "per occupied unit week" in csv_text


def test_the_plan_covers_kpi1_utilisation_and_unmet_demand(net: LiveNetwork) -> None:
    # A year and its quarters of every planned kind at each node: on a loaded machine, more than 5 s.
    bundle, _ = joint_query(net.netdir, kind="plan", from_date=FROM, to_date=TO, node_deadline_ms=20_000)
    assert isinstance(bundle.result, JointPlan)
    planned = {(row.kind, row.period, row.from_date) for row in bundle.result.rows}
    for kind in ("kpi1", "utilisation", "unmet-demand"):
        assert (kind, "year", FROM) in planned and (kind, "quarter", "2009-10-01") in planned
    answered = {row.kind for row in bundle.result.rows if row.answered}
    assert {"kpi1", "utilisation", "unmet-demand"} <= answered
    # KPI 1 is on the standard table set: the year and every quarter of it are answered, each
    # within rounding of the truth summed from the stores, and asked again with the same figures.
    assert all(r.answered for r in bundle.result.rows if r.kind == "kpi1" and not r.client_groups)
    quarters = [("2009-04-01", "2009-06-30"), ("2009-07-01", "2009-09-30")]
    quarters += [("2009-10-01", "2009-12-31"), ("2010-01-01", "2010-03-31")]
    for first, last in [*quarters, quarters[0]]:
        answer, _ = joint_query(net.netdir, kind="kpi1", from_date=first, to_date=last, node_deadline_ms=20_000)
        assert isinstance(answer.result, JointKpi1)
        users = _truth(
            net,
            "SELECT SUM(r.service_users) FROM kpi1_return r JOIN service s ON s.id = r.service_id"
            " WHERE s.term = 'long' AND r.quarter_start >= :a AND r.quarter_start <= :b",
            first,
            first,
        )
        for row in answer.result.rows:
            if row.authority != CAG and row.client_group == 0:
                _close(row.service_users, users[(row.authority,)])
        if (first, last) == quarters[0]:
            repeated = answer.result
    assert answer.result == repeated
    # Unmet demand is on it too: its year and a quarter, each service type's people waiting and
    # referrals refused within rounding of the stores' sums (no figure adds the two), repeatable.
    assert all(r.answered for r in bundle.result.rows if r.kind == "unmet-demand" and not r.client_groups)
    years: list[JointUnmetDemand] = []
    for first, last, final in [(FROM, TO, "2010-01-01"), (*quarters[1], quarters[1][0]), (FROM, TO, "2010-01-01")]:
        demand, _ = joint_query(net.netdir, kind="unmet-demand", from_date=first, to_date=last, node_deadline_ms=20_000)
        assert isinstance(demand.result, JointUnmetDemand)
        waiting = _truth(
            net,
            "SELECT s.service_type, SUM(r.waiting_list) FROM occupancy_return r"
            " JOIN service s ON s.id = r.service_id WHERE r.quarter_start >= :a AND r.quarter_start <= :b"
            " GROUP BY s.service_type",
            first,
            final,
        )
        refused = _truth(
            net,
            "SELECT s.service_type, SUM(r.referrals_refused) FROM occupancy_return r"
            " JOIN service s ON s.id = r.service_id WHERE r.quarter_start >= :a AND r.quarter_start <= :b"
            " GROUP BY s.service_type",
            first,
            final,
        )
        checked = 0
        for row in demand.result.rows:
            if row.authority == CAG or row.client_group or not row.service_type:
                continue
            key = (row.authority, row.service_type)
            for tally, true in ((row.waiting, waiting.get(key, 0)), (row.refused, refused.get(key, 0))):
                if tally.complete:
                    checked += 1
                    _close(tally, true)
        assert checked > 3
        if (first, last) == (FROM, TO):
            years.append(demand.result)
    assert len(years) == 2 and years[0] == years[1]  # the year asked again: the same figures


def test_the_cli_prints_and_saves_bundles_that_verify(net: LiveNetwork, tmp_path: Path) -> None:
    runner = CliRunner()
    for kind, title in (
        ("kpi1", "KPI 1"),
        ("unmet-demand", "Waiting list / referrals refused by service type"),
        ("utilisation", "Occupancy by service type"),
    ):
        saved = tmp_path / f"{kind}.json"
        shown = runner.invoke(
            app,
            ["query", kind, "--network", str(net.netdir), "--from", FROM, "--to", TO, "--out", str(saved)],
            env={"COLUMNS": "200"},
        )
        assert shown.exit_code == 0, shown.output + str(shown.exception or "")
        assert title in shown.output
        checked = runner.invoke(app, ["verify", str(saved), "--network", str(net.netdir)], env={"COLUMNS": "200"})
        assert checked.exit_code == 0, checked.output
        assert f"verified: {kind} bundle" in " ".join(checked.output.split())
    assert "CAG units" in shown.output  # utilisation shows the supply map's units beside
