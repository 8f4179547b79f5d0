"""`cagnet health`: the container health check, against a real node and coordinator over mTLS."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cagnet.cli import app
from cagnet.demo import join_founding_member
from coordinator import network
from tests.netutil import LiveNetwork, start_coordinator, start_node, stop_all

MEDWAY = "E06000035"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveNetwork]:
    # Health needs no records: one member with an empty store keeps this quick.
    root = tmp_path_factory.mktemp("health")
    netdir = root / "network"
    network.init_network(netdir, name="Test CAG", coordinator_endpoint="127.0.0.1:0")
    join_founding_member(netdir, root / MEDWAY, authority=MEDWAY, endpoint="127.0.0.1:0", linkage_key=None)
    live = LiveNetwork(netdir, {MEDWAY: root / MEDWAY})
    try:
        start_node(live, MEDWAY)
        start_coordinator(live)
        yield live
    finally:
        stop_all(live)


def _health(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["health", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def _endpoint(net: LiveNetwork, party: str) -> str:
    return network.read(net.netdir).party(party).endpoint


def test_a_serving_node_is_healthy(net: LiveNetwork) -> None:
    code, output = _health(_endpoint(net, MEDWAY), "--node", str(net.nodedirs[MEDWAY]))
    assert (code, "healthy") == (0, output.split(":")[0].strip())
    assert f"{MEDWAY} at {_endpoint(net, MEDWAY)} is SERVING" in output


def test_the_coordinator_is_healthy_at_the_manifest_endpoint(net: LiveNetwork) -> None:
    code, output = _health("--network", str(net.netdir), "--service", "cagnet.v1.Coordinator")
    assert code == 0, output
    assert "coordinator" in output and "SERVING" in output


def test_a_node_can_probe_the_coordinator(net: LiveNetwork) -> None:
    code, output = _health(_endpoint(net, "coordinator"), "--node", str(net.nodedirs[MEDWAY]), "--peer", "coordinator")
    assert code == 0, output


def test_a_service_the_server_does_not_host_is_unhealthy(net: LiveNetwork) -> None:
    code, output = _health(_endpoint(net, MEDWAY), "--node", str(net.nodedirs[MEDWAY]), "--service", "cagnet.v1.Nope")
    assert code == 1
    assert "SERVICE_UNKNOWN" in output


def test_a_server_whose_certificate_names_another_party_is_refused(net: LiveNetwork) -> None:
    # The coordinator answers at this address, but its certificate does not name Medway.
    code, output = _health(_endpoint(net, "coordinator"), "--node", str(net.nodedirs[MEDWAY]))
    assert code == 1
    assert "unhealthy" in output and "no cagnet server answered" in output


def test_nothing_listening_is_unhealthy(net: LiveNetwork, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port that was free a moment ago and has nothing on it
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, output = _health(f"127.0.0.1:{port}", "--node", str(net.nodedirs[MEDWAY]), "--timeout", "2")
    assert code == 1
    assert "UNAVAILABLE" in output or "DEADLINE_EXCEEDED" in output


def test_exactly_one_folder_is_needed(net: LiveNetwork) -> None:
    code, output = _health("127.0.0.1:1")
    assert code == 2
    assert "exactly one of --node NODEDIR or --network NETDIR" in output
