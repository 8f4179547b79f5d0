"""Periods and data currency through a real network (three nodes, a coordinator, port 0, mTLS):
every node states in its signed answer the month its client records run to and its last import;
the bundle lists them per authority, `cagnet verify` rejects a bundle whose list was altered, and
the command line names each authority from the register beside every table."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import Session, select
from typer.testing import CliRunner

from cagnet.cli import app
from coordinator import network
from coordinator.feeds.client import publish
from coordinator.feeds.snapshot import snapshot_csv, verify_snapshot
from coordinator.joint import bundle as bundle_mod
from coordinator.joint.client import joint_query
from node.answers.currency import month_end
from node.client_records import ClientRecord, Outcome
from node.config import load_config
from node.store import open_store
from shared import dsse
from shared.authorities import shipped_register
from shared.errors import BundleMismatch
from shared.identity import Identity
from shared.kinds.records import JointKpi, JointNetFlow, JointNonLocalServices, RepeatMovers
from tests.netutil import THREE, LiveNetwork, make_network, running


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNetwork]:
    built = make_network(tmp_path_factory.mktemp("currency"), clients=1500)
    with running(built) as live:
        yield live


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output + str(result.exception or "")
    return result.output


def test_movement_by_year_shows_one_column_per_year_and_names_its_span(net: LiveNetwork) -> None:
    # Asked first: the release ledger would refuse a different span of the same records later.
    shown = _cli("query", "movement", "--network", str(net.netdir))  # --period year is the default
    latest = max(_records_to(net, code) for code in THREE)
    flat = " ".join(shown.split())  # titles wrap to their table's width
    assert f"all client groups, all records to {latest}, every period together" in flat
    assert "per financial year" in flat and "the whole period" not in flat
    heads = _heads(shown)
    years = heads[2:]
    assert years and all(len(y) == 7 and y[4] == "-" for y in years)  # "2008-09": a column a year
    assert years == sorted(years) and years[-1] == f"{int(latest[:4]) - 1}-{latest[2:4]}"


def test_movement_by_quarter_shows_one_column_per_quarter(tmp_path: Path) -> None:
    with running(make_network(tmp_path, clients=1500)) as fresh:
        netdir = str(fresh.netdir)
        year = ("--from", "2009-04-01", "--to", "2010-03-31")
        shown = _cli("query", "movement", "--network", netdir, "--period", "quarter", *year)
    flat = " ".join(shown.split())
    assert "2009-04-01 to 2010-03-31, every period together" in flat and "per financial quarter" in flat
    heads = _heads(shown)
    assert heads[2:] == ["2009-10", "Q1", "2009-10", "Q2", "2009-10", "Q3", "2009-10", "Q4"]


def _heads(shown: str) -> list[str]:
    """The column heads of the per-period table (its first column is "client group")."""
    return next(line for line in shown.splitlines() if re.match(r"client group {2,}\S", line)).split()


def _records_to(net: LiveNetwork, code: str) -> str:
    """From inside the node (as only a test may): the month end of its latest record date."""
    engine = open_store(load_config(net.nodedirs[code]).database_url)
    try:
        with Session(engine) as session:
            started = session.exec(select(func.max(ClientRecord.start_date))).one()
            ended = session.exec(select(func.max(Outcome.end_date))).one()
    finally:
        engine.dispose()
    return month_end(max(d for d in (started, ended) if d is not None)).isoformat()


@pytest.mark.parametrize(
    "kind", ["supply-map", "movement", "kpi", "non-local-services", "plan", "repeat-movers", "vfm"]
)
def test_every_kind_states_each_authoritys_records_currency(net: LiveNetwork, kind: str) -> None:
    question: dict[str, object] = {"supply-map": {}, "vfm": {}, "movement": {"period": "year"}}.get(
        kind, {"period": "all"}
    )
    if kind == "plan":
        question = {"from_date": "2008-04-01", "to_date": "2009-03-31"}
    if kind == "non-local-services":
        question = {"period": "all", "min_share_percent": 50}
    bundle, _ = joint_query(net.netdir, kind=kind, **question)  # type: ignore[arg-type]
    assert tuple(c.authority for c in bundle.currency) == bundle.answered == tuple(sorted(THREE))
    now = datetime.now(UTC)
    for c in bundle.currency:
        assert c.records_to == _records_to(net, c.authority)
        assert date.fromisoformat(c.records_to).day > 27  # a month's last day, never a client's own date
        imported = datetime.strptime(c.last_import, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        assert (now - imported).total_seconds() > 0  # loaded when the network was built


def test_a_bundle_whose_currency_was_altered_does_not_verify(net: LiveNetwork, tmp_path: Path) -> None:
    bundle, envelope = joint_query(net.netdir, kind="net-flow", period="all")
    manifest = network.read(net.netdir)
    assert bundle_mod.verify_bundle(envelope, manifest).currency == bundle.currency
    saved = tmp_path / "flows.json"
    bundle_mod.save(saved, envelope, network_dir=net.netdir)
    checked = " ".join(_cli("verify", str(saved)).split())
    assert f"Kent: records to {_records_to(net, THREE[0])}, last import" in checked
    coordinator = Identity.load(net.netdir / "coordinator")
    for forge in (
        lambda doc: doc["currency"][0].update(records_to="2026-11-30"),  # fresher than the node said
        lambda doc: doc.update(currency=doc["currency"][1:]),  # an authority's statement dropped
    ):
        doc = json.loads(bundle.payload())
        forge(doc)
        forged = dsse.sign(bundle_mod.BUNDLE_PAYLOAD_TYPE, json.dumps(doc).encode(), coordinator.signing_key)
        with pytest.raises(BundleMismatch):
            bundle_mod.verify_bundle(forged, manifest)


def test_the_command_line_names_each_authority_and_its_records_currency(net: LiveNetwork) -> None:
    shown = _cli("query", "kpi", "--network", str(net.netdir))
    register = shipped_register()
    for code in THREE:
        assert f"{register.authority(code).name}: records to {_records_to(net, code)}, last import" in " ".join(
            shown.split()
        )


def test_feed_rows_carry_their_period_and_the_snapshot_each_authoritys_currency(net: LiveNetwork) -> None:
    snapshot = publish(net.netdir)  # every record: the span ends where the latest records do
    # The periods are recomputed from the full bundles too, for a reader allowed them.
    assert net.coordinator is not None
    [(_, envelope)] = net.coordinator.feeds.since(snapshot.sequence, limit=1)
    bundles = net.coordinator.feeds.bundles(snapshot.sequence)
    assert verify_snapshot(envelope, network.read(net.netdir), bundles=bundles) == snapshot
    latest = max(_records_to(net, code) for code in THREE)
    assert {r.period for r in snapshot.kpi2} == {r.period for r in snapshot.flows} == {f"../{latest}"}
    assert {r.period for r in snapshot.supply} == {snapshot.published_at[:10]}
    assert tuple(c.authority for c in snapshot.currency) == tuple(sorted(THREE))
    table = list(csv.reader(io.StringIO(snapshot_csv(snapshot))))
    assert table[0][-3:] == ["complete", "period", "note"]
    assert all(row[-2] for row in table[1:])  # every row names its period
    rows = [",".join(row) for row in table]
    for code in THREE:
        assert f"records_to {code},{_records_to(net, code)}" in "\n".join(rows)


def test_every_row_of_a_records_answer_names_its_period(net: LiveNetwork) -> None:
    """In the JSON a chair saves, each row says the span of records it covers; an open end is the
    month the answering authorities' records run to."""
    span = f"../{max(_records_to(net, code) for code in THREE)}"
    flows, _ = joint_query(net.netdir, kind="net-flow", period="all")
    assert isinstance(flows.result, JointNetFlow)
    assert {r.period for r in flows.result.rows} == {s.period for s in flows.result.shares} == {span}
    kpi, _ = joint_query(net.netdir, kind="kpi", period="all")
    assert isinstance(kpi.result, JointKpi) and {r.period for r in kpi.result.rows} == {span}
    services, _ = joint_query(net.netdir, kind="non-local-services", period="all", min_share_percent=50)
    assert isinstance(services.result, JointNonLocalServices) and services.result.services
    assert {h.period for h in services.result.services} == {span}
    movers, _ = joint_query(net.netdir, kind="repeat-movers", period="all")
    assert isinstance(movers.result, RepeatMovers) and movers.result.period == span
    document = json.loads(flows.payload())
    assert all(row["period"] == span for row in document["result"]["rows"])


def test_the_published_snapshot_shows_its_periods_and_each_authoritys_currency(net: LiveNetwork) -> None:
    shown = " ".join(_cli("feed", "publish", "--network", str(net.netdir)).split())
    latest = max(_records_to(net, code) for code in THREE)
    said = (
        f"periods: supply as at (\\d{{4}}-\\d\\d-\\d\\d); flows all records to {latest}; KPI 2 all records to {latest}"
    )
    found = re.search(said, shown)
    assert found is not None, shown
    assert abs((date.fromisoformat(found[1]) - datetime.now(UTC).date()).days) <= 1  # the day it was published
    for code in THREE:
        assert f"{shipped_register().authority(code).name}: records to {_records_to(net, code)}" in shown
