"""The joint supply map as at a day, over a real network (mTLS, signed envelopes): a service a
re-import changed counts as it stood on the day asked, a service that has ended drops out, the
day travels in the signed query and the bundle verifies; `cagnet query supply-map --year` asks
once per financial year; a day on any other kind of query is refused."""

from __future__ import annotations

import csv
import json

import grpc
import pytest
from typer.testing import CliRunner

from cagnet.cli import app
from cagnet.cli.query import supply_map_day
from coordinator import network
from coordinator.joint import bundle as bundle_mod
from coordinator.joint.client import Refused, joint_query
from node.config import load_config
from node.imports.supply import import_csv
from node.store import open_store
from node.synthetic.supply import generate, write_csvs
from tests.netutil import LiveNetwork, make_network, running

MEDWAY, BRIGHTON = "E06000035", "E06000043"


def _medway_units(bundle: object) -> int:
    return next(a.units for a in bundle.result.authorities if a.authority == MEDWAY)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[LiveNetwork, int, int]:
    """Two members; Medway's services re-imported with one hostel grown by 12 units from
    2009-04-01 and another service ended on 2008-03-31. Returns the network, the growth and the
    ended service's units."""
    root = tmp_path_factory.mktemp("over-time")
    net = make_network(root / "net", (MEDWAY, BRIGHTON), clients=200)
    services = write_csvs(generate(MEDWAY, seed=7), root / "files")["services"]
    with services.open(newline="") as f:
        rows = list(csv.DictReader(f))
    fieldnames = [*rows[0].keys(), "end_date", "changed_on"]
    grown, ended = rows[0], rows[1]
    grown["units"] = str(int(grown["units"]) + 12)
    grown["changed_on"] = "2009-04-01"
    ended["end_date"] = "2008-03-31"
    changed = root / "services-2009.csv"
    with changed.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    engine = open_store(load_config(net.nodedirs[MEDWAY]).database_url)
    try:
        summary = import_csv(engine, kind="services", path=changed)
    finally:
        engine.dispose()
    assert summary.updated == 2
    return net, 12, int(ended["units"])


@pytest.fixture
def net(built: tuple[LiveNetwork, int, int]) -> LiveNetwork:
    with running(LiveNetwork(built[0].netdir, built[0].nodedirs)) as live:
        yield live


def test_the_map_as_at_a_day(net: LiveNetwork, built: tuple[LiveNetwork, int, int]) -> None:
    _, growth, _ = built
    before, envelope = joint_query(net.netdir, kind="supply-map", as_at="2009-03-31")
    after, _ = joint_query(net.netdir, kind="supply-map", as_at="2009-04-01")
    earlier, _ = joint_query(net.netdir, kind="supply-map", as_at="2008-03-31")
    assert before.answered == after.answered == (MEDWAY, BRIGHTON)
    assert _medway_units(after) - _medway_units(before) == growth
    # The day before the ended service closed, Medway's map has one service more in one cell than
    # the maps it has released: the disclosure layer's differencing guard spans days, so it refuses
    # rather than show that one service (units alone move freely: they are capacity, not people).
    (refused,) = earlier.missing
    assert refused.authority == MEDWAY and "differencing" in refused.reason
    assert supply_map_day(before) == "2009-03-31"
    assert bundle_mod.verify_bundle(envelope, network.read(net.netdir)) == before


def test_one_map_per_financial_year_from_the_command_line(net: LiveNetwork) -> None:
    result = CliRunner().invoke(
        app, ["query", "supply-map", "--network", str(net.netdir), "--year", "2009", "--year", "2008", "--json"]
    )
    assert result.exit_code == 0, result.output
    maps = json.loads(result.stdout)
    assert [m["answered"] for m in maps] == [[MEDWAY, BRIGHTON]] * 2
    days = [m["query"]["payload"] for m in maps]
    assert len(set(days)) == 2  # two signed queries, one a year


def test_a_day_is_for_the_supply_map_only(net: LiveNetwork) -> None:
    with pytest.raises(Refused) as refused:
        joint_query(net.netdir, kind="movement", as_at="2009-04-01")
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(Refused):
        joint_query(net.netdir, kind="supply-map", as_at="1 April 2009")
