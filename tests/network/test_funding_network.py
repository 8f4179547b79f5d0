"""Designated services and fair shares, need beside supply, and grant beside spend, end to end
over real mTLS on SQLite and on PostgreSQL stores: every released band checked against the truth
counted straight from the node stores with plain SQL, the reference data changed by a member's
proposal and a quorum over signed gRPC, and each bundle re-checked offline with `cagnet verify`.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from cagnet.cli import app
from coordinator import network
from coordinator.joint.client import joint_query
from node.client_records import SEXES
from node.config import load_config
from node.fair_shares import share_band_of
from shared import places
from shared.disclosure import intake_band
from shared.kinds.fair_shares import FEW, OUTSIDE, JointFairShares
from shared.kinds.records import JointPlan
from shared.policy import default_policy
from shared.reference import parse_reference
from tests.netutil import LiveNetwork, make_network, running

KENT, MEDWAY, BRIGHTON = MEMBERS = ("E10000016", "E06000035", "E06000043")
FROM, TO = "2008-04-01", "2010-03-31"
YEAR_FROM = "2009-04-01"  # spend: the financial year 2009-10
DEMO_REFERENCE = Path(__file__).parents[2] / "cagnet" / "demo-reference.csv"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def net(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveNetwork]:
    urls = None
    if request.param == "postgres":
        make: Callable[[int], list[str]] = request.getfixturevalue("postgres_databases")
        urls = dict(zip(MEMBERS, make(len(MEMBERS)), strict=True))
    built = make_network(tmp_path, MEMBERS, seed=3, database_urls=urls)
    network.set_reference(built.netdir, DEMO_REFERENCE.read_text(), source=DEMO_REFERENCE.name)
    with running(built):
        yield built


def _cli(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})
    output = result.output + (str(result.exception) if result.exception else "")
    assert (result.exit_code == 0) == ok, output
    return output


def _json(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, [*args, "--json"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def _designated_truth(net: LiveNetwork) -> dict[tuple[str, str], tuple[int, int, dict[str, int]]]:
    """(host, service name) -> (client group, units, intake by origin), from the stores with SQL."""
    register = network.read_register(net.netdir)

    def origin(previous: str | None) -> str:
        if not previous:
            return "unknown"
        try:
            upper = places.upper_tier(previous, register)
        except KeyError:
            return "unknown"
        return upper if upper in MEMBERS else OUTSIDE

    truth: dict[tuple[str, str], tuple[int, int, dict[str, int]]] = {}
    for code, nodedir in net.nodedirs.items():
        engine = create_engine(load_config(nodedir).database_url)
        with engine.connect() as conn:
            services = conn.execute(
                text("SELECT id, name, client_group, units FROM service WHERE designated = :yes"), {"yes": True}
            ).all()
            for sid, name, group, units in services:
                counts: dict[str, int] = defaultdict(int)
                rows = conn.execute(
                    text(
                        "SELECT previous_authority, COUNT(*) FROM client_record WHERE service_id = :sid"
                        " AND start_date >= :a AND start_date <= :b GROUP BY previous_authority"
                    ),
                    {"sid": sid, "a": FROM, "b": TO},
                )
                for previous, n in rows:
                    counts[origin(previous)] += int(n)
                truth[(code, str(name))] = (int(group), int(units), dict(counts))
        engine.dispose()
    return truth


def _spend_truth(net: LiveNetwork) -> dict[tuple[str, int, str], tuple[int, float, int]]:
    """(authority, client group, service type) -> (units, contract value a year, new clients) as the
    services and their latest contracts stood on the period's last day, counted with SQL."""
    truth: dict[tuple[str, int, str], tuple[int, float, int]] = {}
    for code, nodedir in net.nodedirs.items():
        engine = create_engine(load_config(nodedir).database_url)
        with engine.connect() as conn:
            running_then = conn.execute(
                text(
                    "SELECT id, client_group, service_type, units FROM service WHERE"
                    " (start_date IS NULL OR start_date <= :b) AND (end_date IS NULL OR end_date >= :b)"
                ),
                {"b": TO},
            ).all()
            latest: dict[int, tuple[str, str, float]] = {}
            contracts = conn.execute(
                text("SELECT service_id, start_date, contract_ref, annual_value FROM contract WHERE start_date <= :b"),
                {"b": TO},
            )
            for sid, start, ref, value in contracts:
                if sid not in latest or (str(start), ref) > latest[sid][:2]:
                    latest[sid] = (str(start), ref, float(value))
            clients = dict.fromkeys(((g, t) for _i, g, t, _u in running_then), 0)
            started = conn.execute(
                text(
                    "SELECT s.client_group, s.service_type, COUNT(*) FROM client_record r"
                    " JOIN service s ON s.id = r.service_id WHERE r.start_date >= :a AND r.start_date <= :b"
                    " GROUP BY s.client_group, s.service_type"
                ),
                {"a": YEAR_FROM, "b": TO},
            )
            for group, stype, n in started:
                clients[(group, stype)] = int(n)
            for sid, group, stype, units in running_then:
                was = truth.get((code, int(group), stype), (0, 0.0, clients.get((group, stype), 0)))
                value = latest[sid][2] if sid in latest else 0.0
                truth[(code, int(group), stype)] = (was[0] + int(units), was[1] + value, was[2])
        engine.dispose()
    return truth


def test_fair_shares_need_and_grant_over_mtls(net: LiveNetwork, tmp_path: Path) -> None:
    rule = default_policy().rule("fair-shares")

    # --- before asking: the plan covers the new kind, releasing nothing ---------------------------------
    plan, _ = joint_query(net.netdir, kind="plan", from_date="2009-04-01", to_date="2010-03-31", node_deadline_ms=20000)
    assert isinstance(plan.result, JointPlan)
    rows = [r for r in plan.result.rows if r.kind == "fair-shares"]
    assert rows and all(r.answerable_at for r in rows)

    # --- designated services and fair shares, against the stores --------------------------------
    bundle, _ = joint_query(net.netdir, kind="fair-shares", from_date=FROM, to_date=TO, node_deadline_ms=20000)
    result = bundle.result
    assert isinstance(result, JointFairShares)
    assert bundle.answered == tuple(sorted(MEMBERS)) and result.authorities == tuple(sorted(MEMBERS))
    truth = _designated_truth(net)
    assert len(result.services) == len(truth) > 0
    assert result.units == sum(units for _g, units, _c in truth.values())
    described = 0
    dv_seen = 0
    for hosted in result.services:
        s = hosted.service
        threshold = rule.threshold_for(s.client_group)
        if s.client_group == 14:
            dv_seen += 1
            assert (s.provider, s.name, s.district) == ("(withheld)", "(withheld: DV service)", "")
            continue  # no name to match a DV service to the store by: checked in bulk below
        group, units, counts = truth[(hosted.host, s.name)]
        assert (s.client_group, s.units) == (group, units)
        intake = sum(counts.values())
        known = intake - counts.get("unknown", 0)
        if intake <= threshold or known <= threshold:
            assert not s.shares and s.withheld and not s.intake_band
            continue
        described += 1
        assert s.intake_band == intake_band(intake, rule, client_group=group)
        assert set(s.shares) == {*MEMBERS, OUTSIDE}
        for origin, band in s.shares.items():
            count = counts.get(origin, 0)
            assert band == share_band_of(count, known, threshold)
            assert (band == FEW) == (count <= threshold)  # a small count, or none, is never shown as a share
    assert described > 0 and result.described >= described
    dv_truth = [k for k, v in truth.items() if v[0] == 14]
    assert dv_seen == len(dv_truth)

    saved = tmp_path / "fair-shares.json"
    _cli("query", "fair-shares", "--network", str(net.netdir), "--from", FROM, "--to", TO, "--out", str(saved))
    verified = " ".join(_cli("verify", str(saved), "--network", str(net.netdir)).split())
    assert "verified: fair-shares bundle" in verified and "result recomputed and identical" in verified

    # --- reference data by a member's proposal and a quorum --------------------------------------------
    netdir, nodes = net.netdir, net.nodedirs

    def member(*args: str, node: str, ok: bool = True, grpc: bool = False) -> str:
        # Over signed gRPC to the coordinator from the member's node folder, or on the network folder.
        where = () if grpc else ("--network", str(netdir))
        return _cli("network", *args, "--node", str(nodes[node]), *where, ok=ok)

    def proposal(output: str) -> str:
        found = re.search(r"proposal (\w+):", " ".join(output.split()))
        assert found, output
        return found.group(1)

    charter = proposal(member("charter", node=KENT))
    for code in (MEDWAY, BRIGHTON):
        member("approve", charter, "--yes", node=code)
    version = network.read(netdir).version
    proposals = sorted((netdir / "proposals").glob("*.json"))
    bad = tmp_path / "bad.csv"
    bad.write_text(f"authority,year,indicator,value\n{MEDWAY},2010,dv_incidents,5100\n{MEDWAY},2010,dv_incidnts,9\n")
    refused = " ".join(member("propose-reference", str(bad), node=KENT, ok=False).split())
    assert f"{bad}, row 3, column indicator" in refused
    assert sorted((netdir / "proposals").glob("*.json")) == proposals and network.read(netdir).version == version
    good = tmp_path / "need-2010.csv"
    rows_2010 = [f"{code},2010,dv_incidents,{n}" for code, n in ((KENT, 21900), (MEDWAY, 5100), (BRIGHTON, 6000))]
    # With them, residents by sex (2011 census, rounded): the equality profile's population column.
    residents = {KENT: (709_000, 680_300), MEDWAY: (133_400, 130_500), BRIGHTON: (136_800, 136_600)}
    rows_2010 += [
        f"{code},2011,population:sex:{sex},{n}"
        for code, pair in residents.items()
        for sex, n in zip(SEXES, pair, strict=True)
    ]
    good.write_text("authority,year,indicator,value\n" + "\n".join(rows_2010) + "\n")
    pid = proposal(member("propose-reference", str(good), node=KENT, grpc=True))
    shown = " ".join(member("proposals", node=MEDWAY, grpc=True).split())
    assert "reference data: 9 figures (dv_incidents, population:sex:female, population:sex:male)" in shown
    assert network.read_reference(netdir).value(MEDWAY, 2010, "dv_incidents") is None  # not yet: one of two
    member("approve", pid, "--yes", node=MEDWAY, grpc=True)
    assert network.read(netdir).version == version + 1
    assert network.read_reference(netdir).value(MEDWAY, 2010, "dv_incidents") == 5100

    # --- the equality profile beside the population the members agreed ------------------------------
    profile = _cli("query", "equality", "--network", str(netdir), "--deadline-ms", "20000")
    female = 100 * sum(f for f, _m in residents.values()) / sum(f + m for f, m in residents.values())
    line = next(x for x in profile.splitlines() if x.split()[:1] == ["female"])
    assert line.split()[-1] == f"{female:.0f}%", line
    assert "signed reference data (2011)" in " ".join(profile.split())
    # Age bands have no rows: the column says so instead of inventing a figure.
    line = next(x for x in profile.splitlines() if x.split()[:2] == ["18", "24"])
    assert line.split()[-1] == "none", line

    # --- need beside supply: from the released map and the signed reference data ----------------------
    document = _json("query", "supply-map", "--network", str(netdir), "--need", "dv_incidents")
    need, supply = document["need"], document["bundle"]["result"]
    assert need["year"] == 2010 and need["client_groups"] == [14]
    units = {
        code: sum(g["units"][code] for g in supply["client_groups"] if g["client_group"] == 14) for code in MEMBERS
    }
    reference = parse_reference(good.read_text())
    total_units, total_need = sum(units.values()), sum(reference.value(c, 2010, "dv_incidents") or 0 for c in MEMBERS)
    for row in need["rows"]:
        code = row["authority"]
        dv = reference.value(code, 2010, "dv_incidents")
        assert dv is not None and row["need"] == dv
        assert row["per_1000_need"] == round(units[code] * 1000 / dv, 3)
        assert row["gap_need"] == round(total_units * dv / total_need - units[code])
    assert need["cag_per_1000_need"] == round(total_units * 1000 / total_need, 3)
    table = " ".join(_cli("query", "supply-map", "--network", str(netdir), "--need", "dv_incidents").split())
    assert "per 1,000 need" in table and "gap (need)" in table
    wrong = " ".join(_cli("query", "supply-map", "--network", str(netdir), "--need", "sp_grant", ok=False).split())
    assert "not a need indicator" in wrong

    # --- grant beside spend, and a projected grant scenario --------------------------------------------
    saved = tmp_path / "grant-supply.json"
    document = _json(
        "query", "grant", "--network", str(netdir), "--grant-change", f"{MEDWAY}=-100", "--out", str(saved)
    )
    grant, supply = document["grant"], document["bundle"]["result"]
    demo = parse_reference(DEMO_REFERENCE.read_text())
    assert grant["year"] == 2009
    spend = {a["authority"]: a["annual_value"] for a in supply["authorities"]}
    for row in grant["authorities"]:
        code = row["authority"]
        assert row["grant"] == demo.value(code, 2009, "sp_grant") and row["spend"] == spend[code]
        assert row["projected_grant"] == (0 if code == MEDWAY else row["grant"])
    for g in grant["groups"]:
        # Medway's grant gone: every group it spends on and that was not already below falls below.
        expected = (
            g["authority"] == MEDWAY and not g["below_now"] and bool(g["per_1000"]) and bool(g["cag_lower_quartile"])
        )
        assert g["falls_below"] == expected, g
    assert any(g["falls_below"] for g in grant["groups"])
    verified = " ".join(_cli("verify", str(saved), "--network", str(netdir)).split())
    assert "verified: supply-map bundle" in verified

    # --- spend per unit and per new client, against the stores --------------------------------------
    spend = _json("query", "spend", "--network", str(netdir), "--year", "2009")["result"]
    truth = _spend_truth(net)
    threshold = default_policy().rule("spend")
    checked = 0
    for row in spend["rows"]:
        if not row["authority"] or not row["service_type"]:
            continue
        units, value, clients = truth[(row["authority"], row["client_group"], row["service_type"])]
        assert row["units"] == units
        if row["annual_value"] is not None:
            assert row["annual_value"] == round(value)
            checked += 1
        if row["clients"] is not None:
            assert abs(row["clients"] - clients) < 5 and row["clients"] % 5 == 0  # keyed rounding to 5
        elif clients >= 1:
            assert row["withheld"]
        if 1 <= clients <= threshold.threshold_for(row["client_group"]):
            assert row["clients"] is None  # a small count is never released
        if row["per_client"] is not None:
            assert row["per_client"] == round(row["annual_value"] / row["clients"], 2)
    assert checked > 0
    table = " ".join(_cli("query", "spend", "--network", str(netdir), "--year", "2009").split())
    assert "beside the SP grant" in table and "£31,086,000" in table  # Kent's 2009 grant in the demo data

    # --- the chair's report carries the three sections ------------------------------------------------
    from coordinator.report import write_report

    page = write_report(netdir, tmp_path / "report.html").read_text()
    sections = ("Supply beside need", "Grant and spend", "Spend per unit and per new client")
    for title in (*sections, "Designated services and fair shares"):
        assert f"<h2>{title}</h2>" in page
    # The sex shares are in the command's table; the report's chart draws ethnicity and age, for
    # which the network holds no population rows.
    assert "holds no <code>population:</code> rows" in page
    # The utilisation section puts the cost per occupied unit beside the cost per unit, from the
    # spend section's answer; waiting lists and refused referrals have a section of their own.
    assert "<h3>Cost per occupied unit a week (spend 2009-04-01/2010-03-31" in page
    assert "<h2>Waiting lists and refused referrals</h2>" in page and 'id="unmet-demand"' in page
    assert "domestic abuse incidents reported to police (2010)" in page and "SP grant 2009" in page
    assert "Across the CAG, 2009-04-01/2010-03-31" in page  # the same spend question, answered again
