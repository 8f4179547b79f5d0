"""Kits per person and queries as a member's officer, on a real network (gRPC on port 0, mTLS):
a principal's kit holds its own keys, the CA certificate and the public files and nothing else,
works wherever `--network` does (`--kit`), and keeps its manifest current over the wire; a member
authority's officer asks joint queries from the node's folder (`--node`); principals are people,
and the coordinator's audit log shows their names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cagnet.cli import app
from cagnet.demo import free_port, wait_healthy
from coordinator import network
from coordinator.server import create_server as create_coordinator
from shared import audit
from shared.manifest import CAG_CHAIR, COORDINATOR, REGIONAL_BOARD
from tests.netutil import THREE, LiveNetwork, make_network, running

JANE = "jane-smith"
JANE_NAME = "Jane Smith, Lead Officer"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNetwork]:
    built = make_network(tmp_path_factory.mktemp("kits"), THREE)
    _cli("network", "principal", "add", str(built.netdir), "--id", JANE, "--role", CAG_CHAIR, "--name", JANE_NAME)
    network.add_principal(
        built.netdir, party_id="board", role=REGIONAL_BOARD, name="Ann Lee, SE Regional Housing Board"
    )
    with running(built) as live:
        yield live


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output + repr(result.exception)
    return " ".join(result.output.split())


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def test_a_kit_holds_only_the_principals_keys_the_ca_certificate_and_the_public_files(
    net: LiveNetwork, tmp_path: Path
) -> None:
    kit = tmp_path / "jane-kit"
    _cli("network", "principal", "export", JANE, "--network", str(net.netdir), "--out", str(kit))
    files = _files(kit)
    mine = {f"principals/{JANE}/{name}" for name in ("signing.key", "tls.key", "tls.crt", "ca.crt")}
    assert mine <= files
    assert "ca/ca.crt" in files and "ca/ca.key" not in files
    assert not any(f.startswith(("coordinator/", "joined/", "invites/")) for f in files)
    assert {f.split("/")[1] for f in files if f.startswith("principals/")} == {JANE}
    public = {"kit.toml", "network.toml", "manifest.json", "policy.json"}
    assert files == mine | public | {"ca/ca.crt"} | {f for f in files if f.startswith("manifests/")}
    # No private key of anyone else: every PEM private key in it is Jane's own two.
    held = {f for f in files if b"PRIVATE KEY" in (kit / f).read_bytes()}
    assert held == {f"principals/{JANE}/signing.key", f"principals/{JANE}/tls.key"}
    # Nothing written for an unknown principal, a node, or into a folder already in use.
    for party, out in (("nobody", tmp_path / "a"), (THREE[0], tmp_path / "b"), (JANE, kit)):
        result = CliRunner().invoke(
            app, ["network", "principal", "export", party, "--network", str(net.netdir), "--out", str(out)]
        )
        assert result.exit_code != 0
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_kit_asks_as_its_person_and_keeps_its_manifest_current(net: LiveNetwork, tmp_path: Path) -> None:
    kit = tmp_path / "kit"
    _cli("network", "principal", "export", JANE, "--network", str(net.netdir), "--out", str(kit))
    held = network.read(kit).version
    # The network moves on after the kit was made; the kit catches up over the wire, verified.
    network.add_principal(net.netdir, party_id="analyst", role=CAG_CHAIR, name="Sam Patel, Analyst")
    shown = _cli("query", "supply-map", "--kit", str(kit), "--json")
    assert sorted(json.loads(shown[shown.index("{") :])["answered"]) == sorted(THREE)
    assert network.read(kit).version == network.read(net.netdir).version > held
    assert net.coordinator is not None
    last = audit.entries(net.coordinator.audit.engine)[-1]
    assert last.principal == JANE and last.role == CAG_CHAIR and last.decision == "released"
    # The audit log names the person.
    logged = _cli("coordinator", "audit", "show", str(net.netdir), "--last", "3")
    assert f"{JANE} ({JANE_NAME})" in logged
    # The same kit for the movement query, a records question.
    movement = _cli("query", "movement", "--kit", str(kit), "--json")
    assert json.loads(movement[movement.index("{") :])["kind"] == "movement"


def test_a_board_members_kit_subscribes_to_the_feed(net: LiveNetwork, tmp_path: Path) -> None:
    kit = tmp_path / "board"
    _cli("network", "principal", "export", "board", "--network", str(net.netdir), "--out", str(kit))
    # The board's own principal by default (none published yet: the stream ends at once, verified).
    assert "0 new snapshot(s)" in _cli("feed", "subscribe", "--kit", str(kit), "--out", str(tmp_path / "feed"))


def test_a_member_authoritys_officer_asks_from_the_nodes_folder(net: LiveNetwork) -> None:
    kent = THREE[0]
    shown = _cli("query", "supply-map", "--node", str(net.nodedirs[kent]), "--json")
    bundle = json.loads(shown[shown.index("{") :])
    assert sorted(bundle["answered"]) == sorted(THREE)
    assert net.coordinator is not None
    last = audit.entries(net.coordinator.audit.engine)[-1]
    assert last.principal == kent and last.role == "member-authority" and last.decision == "released"


def test_the_report_is_written_from_a_kit(net: LiveNetwork, tmp_path: Path) -> None:
    kit = tmp_path / "kit"
    _cli("network", "principal", "export", JANE, "--network", str(net.netdir), "--out", str(kit))
    report = tmp_path / "report.html"
    assert net.coordinator is not None
    before, _ = audit.head(net.coordinator.audit.engine)
    _cli("report", "--kit", str(kit), "--out", str(report))
    assert "<html" in report.read_text(encoding="utf-8").lower()
    asked = audit.entries(net.coordinator.audit.engine, since_seq=before)
    # Supply, movement, net flow, VFM, fair shares, outcomes, equality, KPI 1 and utilisation (spend
    # too, where the network holds grant figures).
    assert sum(e.method.endswith("/JointQuery") for e in asked) == 9
    assert {e.principal for e in asked} == {JANE}


def test_a_kit_follows_the_coordinator_to_a_new_address_through_the_manifest(net: LiveNetwork, tmp_path: Path) -> None:
    kit = tmp_path / "jane-kit"
    _cli("network", "principal", "export", JANE, "--network", str(net.netdir), "--out", str(kit))
    assert net.coordinator is not None
    old = network.read(net.netdir).coordinator_endpoint
    # The coordinator, announcing a move: it serves at the new address as well as the old, and the
    # manifest (a new version) lists the new one.
    server, port = create_coordinator(net.coordinator, address="127.0.0.1:0")
    new = f"127.0.0.1:{port}"
    try:
        network.set_endpoint(net.netdir, COORDINATOR, new)
        # The kit still lists the old address; before its query it fetches the new version from there.
        assert network.read(kit).coordinator_endpoint == old
        _cli("query", "supply-map", "--kit", str(kit))
        assert network.read(kit).coordinator_endpoint == new
        # The old address closes: the kit asks at the new one.
        net.servers.pop(COORDINATOR).stop(grace=None).wait()
        assert "E10000016" in _cli("query", "supply-map", "--kit", str(kit), "--json")
    finally:
        net.servers[COORDINATOR] = server


def test_serve_on_another_address_than_the_manifest_lists_asks_first(tmp_path: Path) -> None:
    netdir = tmp_path / "net"
    listed = f"127.0.0.1:{free_port()}"
    network.init_network(netdir, name="Test CAG", coordinator_endpoint=listed)
    before = network.manifest_path(netdir).read_bytes()
    elsewhere = f"127.0.0.1:{free_port()}"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CAGNET_")}, "COLUMNS": "400"}
    # Nobody at a terminal to ask: refused, naming --advertise, and the manifest is left as it was.
    refused = subprocess.run(
        [sys.executable, "-m", "cagnet", "coordinator", "serve", str(netdir), "--listen", elsewhere],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    said = " ".join(refused.stderr.split())
    assert refused.returncode == 2, refused.stderr
    assert f"is not the coordinator's address in the manifest ({listed})" in said and "--advertise" in said
    assert network.manifest_path(netdir).read_bytes() == before
    # Told to: the new address is published, and said so in the log.
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cagnet",
            "coordinator",
            "serve",
            str(netdir),
            "--listen",
            elsewhere,
            "--advertise",
            elsewhere,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_healthy(elsewhere, COORDINATOR, network.principal_identity(netdir), timeout_s=60)
        assert network.read(netdir).coordinator_endpoint == elsewhere
    finally:
        server.terminate()
        _, log = server.communicate(timeout=30)
    assert f"lists the coordinator at {elsewhere} (was {listed} at version 1)" in " ".join(log.split())
