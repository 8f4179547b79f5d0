"""Any English authorities make a network, not only the demo's: two London boroughs and Kent over
real mTLS answer a joint supply map and movement matrix, with names, populations and per-1,000
rates from the signed register; a governed correction of a population reaches the answers without
a restart; and a node for Hampshire is made and synthesised from the command line."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cagnet.cli import app
from coordinator import network
from coordinator.joint.client import joint_query
from node.config import load_config
from node.store import open_store, row_counts, store_authority
from shared.authorities import shipped_register
from shared.kinds.records import JointMovement
from shared.kinds.supply import JointSupplyMap
from tests.netutil import LiveNetwork, make_network, running

LAMBETH, SOUTHWARK, KENT = "E09000022", "E09000028", "E10000016"
MEMBERS = (LAMBETH, SOUTHWARK, KENT)
LONDON, SOUTH_EAST = "E12000007", "E12000008"


def _cli(*args: str, ok: bool = True) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    output = " ".join((result.output + (str(result.exception) if result.exception else "")).split())
    assert (result.exit_code == 0) == ok, output
    return output


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNetwork]:
    built = make_network(tmp_path_factory.mktemp("any"), MEMBERS, clients=2500)
    with running(built) as live:
        yield live


def test_a_joint_supply_map_of_two_boroughs_and_a_county(net: LiveNetwork) -> None:
    bundle, _ = joint_query(net.netdir, kind="supply-map")
    result = bundle.result
    assert isinstance(result, JointSupplyMap)
    assert bundle.answered == tuple(sorted(MEMBERS)) and not bundle.missing
    register = shipped_register()
    by_code = {a.authority: a for a in result.authorities}
    for code in MEMBERS:
        assert (by_code[code].name, by_code[code].population) == (
            register.authority(code).name,
            register.authority(code).population,
        )
    assert result.population == sum(register.authority(code).population for code in MEMBERS)
    # Kent, five times a borough's size, has about five times the services.
    assert 3 * by_code[LAMBETH].services < by_code[KENT].services < 8 * by_code[LAMBETH].services
    older = next(g for g in result.client_groups if g.client_group == 1)
    assert older.cag_rate > 0 and set(older.rates) == set(MEMBERS)


def test_movement_shows_members_by_code_and_everyone_else_by_region(net: LiveNetwork) -> None:
    bundle, _ = joint_query(net.netdir, kind="movement", period="all")
    result = bundle.result
    assert isinstance(result, JointMovement)
    assert result.hosts == tuple(sorted(MEMBERS))
    origins = set(result.origins)
    regions = {o for o in origins if o.startswith("E12")}
    assert origins - regions <= {*MEMBERS, "unknown"}
    assert {LONDON, SOUTH_EAST} <= regions  # other boroughs; Surrey, Medway and the rest of the South East
    # The whole records lie inside the standard table set's years: each figure is the set's, rounded
    # to 5 or suppressed by its protection. People moved between the two boroughs, but spread over
    # client groups, quarters and years in counts the set hides (linked across all its tables); each
    # borough's own new clients are released.
    released = [f for f in result.flows if f.clients]
    assert released and all(f.clients is not None and f.clients % 5 == 0 for f in released)
    assert all(f.suppressed in ("", "grid-suppression") for f in result.flows)
    local = {f.host: f.clients for f in result.flows if f.origin == f.host and f.client_group == 0 and f.period == "*"}
    assert local[LAMBETH] and local[SOUTHWARK]


def test_a_governed_population_correction_reaches_the_answers(net: LiveNetwork) -> None:
    netdir, nodes = net.netdir, net.nodedirs

    def propose(*args: str, node: str) -> str:
        output = _cli("network", *args, "--node", str(nodes[node]), "--network", str(netdir))
        found = re.search(r"proposal (\w+):", output)
        assert found, output
        return found.group(1)

    charter = propose("charter", node=LAMBETH)
    for code in (SOUTHWARK, KENT):
        _cli("network", "approve", charter, "--node", str(nodes[code]), "--network", str(netdir), "--yes")
    version = network.read(netdir).version
    # Bad input: refused with the reason, nothing filed.
    proposals = netdir / "proposals"
    filed_before = sorted(proposals.glob("*.json"))
    for args, reason in (
        (("E09000099", "--population", "5"), "not an English upper-tier authority in the register"),
        ((LAMBETH, "--population", "0"), "population: must be a whole number above 0"),
        ((LAMBETH, "--district", "E07000001=Somewhere"), "is a london-borough, which has no districts"),
    ):
        output = _cli(
            "network", "propose-authority", *args, "--node", str(nodes[KENT]), "--network", str(netdir), ok=False
        )
        assert reason in output, output
    assert sorted(proposals.glob("*.json")) == filed_before and network.read(netdir).version == version

    pid = propose("propose-authority", LAMBETH, "--population", "304500", node=KENT)
    shown = _cli("network", "proposals", "--node", str(nodes[SOUTHWARK]), "--network", str(netdir))
    assert f"authority register: {LAMBETH} population 304,500" in shown
    _cli("network", "approve", pid, "--node", str(nodes[SOUTHWARK]), "--network", str(netdir), "--yes")
    assert network.read_register(netdir).authority(LAMBETH).population == 304_500

    bundle, _ = joint_query(net.netdir, kind="supply-map")
    assert isinstance(bundle.result, JointSupplyMap)
    assert {a.authority: a.population for a in bundle.result.authorities}[LAMBETH] == 304_500


def test_a_node_for_hampshire_is_made_and_synthesised(tmp_path: Path) -> None:
    netdir = tmp_path / "net"
    _cli("network", "init", str(netdir), "--name", "Test network")
    refused = _cli(
        "node", "init", str(tmp_path / "nowhere"), "--network", str(netdir), "--authority", "E10000099",
        "--endpoint", "127.0.0.1:7301", ok=False,
    )  # fmt: skip
    assert "'E10000099' is not an English upper-tier authority in the register" in refused
    assert not (tmp_path / "nowhere").exists()
    hants = tmp_path / "hants"
    _cli(
        "node", "init", str(hants), "--network", str(netdir), "--authority", "E10000014", "--endpoint", "127.0.0.1:7301"
    )
    _cli("node", "synth", str(hants), "--clients", "500")
    engine = open_store(load_config(hants).database_url)
    try:
        authority = store_authority(engine)
        assert (authority.code, authority.name, authority.population) == ("E10000014", "Hampshire", 1_318_000)
        # About one service per 3,000-4,000 residents.
        assert 1_318_000 / 4000 <= row_counts(engine)["service"] <= 1_318_000 / 3000
    finally:
        engine.dispose()
