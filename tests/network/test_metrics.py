"""Metrics and structured logs on real servers: three nodes and a coordinator on port 0 with mTLS,
each registry scraped over its real plain-HTTP listener (port 0) after released and refused
queries. The labels and log lines carry methods, rules and authority codes, never a figure or a
query's parameters."""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cagnet.demo import join_founding_member
from coordinator import network
from coordinator.feeds.client import publish, subscribe
from coordinator.joint.client import Refused, joint_query
from coordinator.settings import CoordinatorSettings
from shared import audit, logs
from shared.auth import request_header, sign_message
from shared.errors import DISCLOSURE_RULES, InvalidRequest
from shared.identity import Identity
from shared.kinds.registry import KINDS
from shared.metrics import MetricsListener, ServerMetrics, parse_listen, serve_metrics
from shared.pb.cagnet.v1 import node_pb2
from shared.serde import envelope_to_proto
from tests.netutil import THREE, LiveNetwork, make_network, node_stub, running

MEDWAY = "E06000035"
BOARD = "regional-board"
SUPPLY_MAP = "/cagnet.v1.Node/SupplyMap"
# Mentally disordered offenders (11) alone select a handful of services at every node of the
# three: each refuses (query-set restriction), so the coordinator refuses under that rule.
FEW_SERVICES = [11]
# Groups 1-13 after the full map: the difference would single out the services of 14-21.
DIFFERENCING = list(range(1, 14))
EXPECTED_CAGNET_METRICS = {
    "cagnet_server_info",
    "cagnet_requests",
    "cagnet_refusals",
    "cagnet_request_duration_seconds",
    "cagnet_joint_queries",
    "cagnet_joint_query_missing_nodes",
    "cagnet_node_missing",
    "cagnet_audit_log_entries",
    "cagnet_manifest_version",
    "cagnet_policy_revision",
    "cagnet_member_nodes",
    "cagnet_manifest_last_sync_timestamp_seconds",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> LiveNetwork:
    net = make_network(tmp_path_factory.mktemp("net"))
    network.add_principal(net.netdir, party_id=BOARD, role="regional-board", name="SE Regional Housing Board")
    return net


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every log record of the test as JSON lines, through the one place logging is configured;
    the root logger's handlers are put back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out = io.StringIO()
    logs.configure("json", stream=out)
    try:
        yield out
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


def _scrape(listener: MetricsListener) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{listener.port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        return str(reply.read().decode())


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def _figures(net: LiveNetwork) -> set[str]:
    """The figures the full supply map released: every one of them a number no scrape or log may show."""
    bundle, _ = joint_query(net.netdir, kind="supply-map")
    figures = set()
    for a in bundle.result.authorities:
        for value in (a.units, a.services, a.annual_value):
            if value is not None and value >= 100:  # small numbers occur in any text (ports, counts)
                figures.add(str(value))
    return figures


def test_metrics_count_releases_and_refusals_by_rule_and_disclose_nothing(
    built: LiveNetwork, json_log: io.StringIO
) -> None:
    with running(LiveNetwork(built.netdir, built.nodedirs)) as net:
        assert net.coordinator is not None
        coordinator = serve_metrics(net.coordinator.metrics, "127.0.0.1:0")
        medway = serve_metrics(net.runtimes[MEDWAY].metrics, "127.0.0.1:0")
        try:
            figures = _figures(net)
            # Refused by the coordinator under the rule the nodes applied.
            with pytest.raises(Refused, match=r"^query-set restriction: .*too few answered"):
                joint_query(net.netdir, kind="supply-map", client_groups=FEW_SERVICES)
            # Straight to Medway's node as the chair: a differencing question, then a replay.
            chair = Identity.load(network.principal_dir(net.netdir, "cag-chair"))
            stub = node_stub(net, chair, MEDWAY)
            header = request_header(chair, audience=MEDWAY, method=SUPPLY_MAP)
            asked = sign_message(node_pb2.SupplyMapRequest(header=header, client_groups=DIFFERENCING), chair)
            with pytest.raises(grpc.RpcError) as differencing:
                stub.SupplyMap(envelope_to_proto(asked), timeout=10)
            assert differencing.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            with pytest.raises(grpc.RpcError) as replayed:
                stub.SupplyMap(envelope_to_proto(asked), timeout=10)
            assert replayed.value.code() == grpc.StatusCode.ALREADY_EXISTS
            node_text, coordinator_text = _scrape(medway), _scrape(coordinator)
            entries = audit.head(net.runtimes[MEDWAY].engine)[0]
        finally:
            coordinator.close()
            medway.close()

    node = _samples(node_text)
    method = "cagnet.v1.Node/SupplyMap"
    # The full map was released; the filtered map, the differencing question and the replay refused.
    assert _value(node, "cagnet_requests_total", method=method, outcome="ok", code="OK") == 1
    assert _value(node, "cagnet_refusals_total", method=method, rule="disclosure:query-set-restriction") == 1
    assert _value(node, "cagnet_refusals_total", method=method, rule="disclosure:differencing") == 1
    assert _value(node, "cagnet_refusals_total", method=method, rule="replayed-request") == 1
    assert _value(node, "cagnet_requests_total", method=method, outcome="refused") == 3
    assert _value(node, "cagnet_request_duration_seconds_count", method=method) == 4
    assert _value(node, "cagnet_audit_log_entries") == entries
    assert _value(node, "cagnet_manifest_version") >= 1
    assert _value(node, "cagnet_server_info", role="node", party=MEDWAY) == 1

    coord = _samples(coordinator_text)
    joint = "cagnet.v1.Coordinator/JointQuery"
    assert _value(coord, "cagnet_requests_total", method=joint, outcome="ok") == 1
    assert _value(coord, "cagnet_refusals_total", method=joint, rule="disclosure:query-set-restriction") == 1
    assert _value(coord, "cagnet_joint_queries_total", kind="supply-map") == 2
    # Every node refused the filtered map: three missing from it, none from the full map.
    assert _value(coord, "cagnet_joint_query_missing_nodes_sum", kind="supply-map") == 3
    assert _value(coord, "cagnet_joint_query_missing_nodes_bucket", kind="supply-map", le="0.0") == 1
    for code in THREE:
        assert _value(coord, "cagnet_node_missing_total", authority=code, reason="refused") == 1
    assert _value(coord, "cagnet_member_nodes") == 3

    # Nothing but fixed vocabularies in the labels: no parameter, client group or figure.
    authorities = {p.id for p in network.read(built.netdir).parties}
    rules = {"disclosure:" + r.replace(" ", "-") for r in DISCLOSURE_RULES} | {"replayed-request"}
    allowed = {
        "method": lambda v: re.fullmatch(r"cagnet\.v1\.[A-Za-z]+/[A-Za-z]+", v) is not None,
        "outcome": lambda v: v in {"ok", "refused", "error", "cancelled"},
        "code": lambda v: v in grpc.StatusCode.__members__,
        "rule": lambda v: v in rules,
        "kind": lambda v: v in KINDS,
        "authority": lambda v: v in authorities,
        "reason": lambda v: v in {"deadline", "unreachable", "refused", "unverified"},
        "role": lambda v: v in {"node", "coordinator"},
        "party": lambda v: v in authorities,
        "le": lambda v: re.fullmatch(r"[0-9.e+-]+|\+Inf", v) is not None,
    }
    for text in (node_text, coordinator_text):
        cagnet = {
            f.name.removesuffix("_created")  # when each series started: a timestamp
            for f in text_string_to_metric_families(text)
            if f.name.startswith("cagnet_")
        }
        assert cagnet <= EXPECTED_CAGNET_METRICS
        for (name, labels), _ in _samples(text).items():
            if not name.startswith("cagnet_"):
                continue
            for key, value in labels:
                assert allowed[key](value), (name, key, value)
        for figure in figures:
            assert not re.search(rf"(?<![\d.]){figure}(?![\d.])", text), figure

    # The log: one JSON object a line, a line per call, the rule of each refusal, no figure.
    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert all(line["time"].endswith("+00:00") for line in lines)
    calls = [line for line in lines if line["logger"] == "cagnet.calls"]
    refused = [c for c in calls if c.get("method") == method and c["outcome"] == "refused"]
    assert {c["rule"] for c in refused} == {
        "disclosure:query-set-restriction",
        "disclosure:differencing",
        "replayed-request",
    }
    assert all(isinstance(c["duration_ms"], float) and c["code"] for c in calls)
    joint_lines = [c for c in calls if c["method"] == joint]
    assert {c["principal"] for c in joint_lines} == {"cag-chair"}
    assert [c.get("principal", c.get("peer")) for c in refused if c["rule"] == "replayed-request"] == ["cag-chair"]
    text = json_log.getvalue()
    for figure in figures:
        assert not re.search(rf"(?<![\d.]){figure}(?![\d.])", text), figure
    assert "client_groups" not in text


def test_a_feed_subscriber_that_leaves_is_not_counted_as_an_error(built: LiveNetwork, tmp_path: Path) -> None:
    with running(LiveNetwork(built.netdir, built.nodedirs)) as net:
        assert net.coordinator is not None
        listener = serve_metrics(net.coordinator.metrics, "127.0.0.1:0")
        try:
            sequence = publish(net.netdir).sequence
            subscribe(net.netdir, tmp_path / "once", principal=BOARD)  # what there is, then the stream ends
            stop = threading.Event()
            # Following: the stream stays open for new snapshots until the subscriber leaves.
            subscribe(
                net.netdir,
                tmp_path / "follow",
                principal=BOARD,
                follow=True,
                stop=stop,
                on_snapshot=lambda s: stop.set() if s.sequence == sequence else None,
            )
            deadline = time.monotonic() + 30
            while True:  # the server notices the cancellation a moment after the client
                feed = _samples(_scrape(listener))
                if _value(feed, "cagnet_requests_total", method="cagnet.v1.Coordinator/Feed") == 2:
                    break
                assert time.monotonic() < deadline
                time.sleep(0.05)
        finally:
            listener.close()
    method = "cagnet.v1.Coordinator/Feed"
    # The stream that followed ends when the server sees the subscriber gone: ok (or cancelled),
    # never an error that would page someone.
    left = _value(feed, "cagnet_requests_total", method=method, outcome="cancelled", code="CANCELLED")
    assert _value(feed, "cagnet_requests_total", method=method, outcome="ok") + left == 2
    assert _value(feed, "cagnet_requests_total", outcome="error") == 0
    assert _value(feed, "cagnet_refusals_total") == 0
    assert _value(feed, "cagnet_requests_total", method="cagnet.v1.Coordinator/PublishFeed", outcome="ok") == 1
    assert _value(feed, "cagnet_joint_queries_total") == 3  # the snapshot's three joint queries


def test_the_listener_binds_only_to_loopback() -> None:
    assert parse_listen("9464", setting="metrics_listen") == ("127.0.0.1", 9464)
    assert parse_listen("[::1]:9464", setting="metrics_listen") == ("::1", 9464)
    assert parse_listen("localhost:0", setting="metrics_listen") == ("localhost", 0)
    for wrong in ("0.0.0.0:9464", "10.1.2.3:9464", "metrics.example:9464"):
        with pytest.raises(InvalidRequest, match="loopback"):
            parse_listen(wrong, setting="metrics_listen")
    with pytest.raises(InvalidRequest, match="HOST:PORT"):
        parse_listen("127.0.0.1:metrics", setting="metrics_listen")


def test_coordinator_setting_refuses_a_public_metrics_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    netdir = tmp_path
    (netdir / "coordinator.toml").write_text('metrics_listen = "0.0.0.0:9465"\n')
    with pytest.raises(InvalidRequest, match=r"coordinator.toml metrics_listen: .*loopback"):
        CoordinatorSettings.load(netdir)
    monkeypatch.setenv("CAGNET_COORDINATOR_METRICS_LISTEN", "127.0.0.1:9465")
    monkeypatch.setenv("CAGNET_COORDINATOR_LOG_FORMAT", "json")
    settings = CoordinatorSettings.load(netdir)
    assert (settings.metrics_listen, settings.log_format) == ("127.0.0.1:9465", "json")


def test_two_servers_in_one_process_keep_separate_registries() -> None:
    a, b = ServerMetrics("node", "E10000016"), ServerMetrics("node", "E06000035")
    a.fanned_out("supply-map", missing=[("E06000043", "unreachable")])
    first, second = serve_metrics(a, "127.0.0.1:0"), serve_metrics(b, "127.0.0.1:0")
    try:
        assert first.port != second.port
        one, two = _samples(_scrape(first)), _samples(_scrape(second))
    finally:
        first.close()
        second.close()
    assert _value(one, "cagnet_node_missing_total", authority="E06000043", reason="unreachable") == 1
    assert _value(two, "cagnet_node_missing_total") == 0
    assert _value(two, "cagnet_server_info", party="E06000035") == 1


def _json_lines(stream: IO[str], into: queue.Queue[dict[str, object]]) -> None:
    for line in stream:
        if line.startswith("{"):  # gRPC's C core writes a few plain lines of its own (GRPC_VERBOSITY)
            into.put(json.loads(line))


def test_node_serve_logs_json_lines_and_serves_metrics_on_loopback(tmp_path: Path) -> None:
    netdir, nodedir = tmp_path / "network", tmp_path / "medway"
    network.init_network(netdir, name="Test CAG", coordinator_endpoint="127.0.0.1:0")
    join_founding_member(netdir, nodedir, authority=MEDWAY, endpoint="127.0.0.1:0", linkage_key=None)
    env = {
        **os.environ,
        "CAGNET_NODE_METRICS_LISTEN": "127.0.0.1:0",
        "CAGNET_NODE_LISTEN": "127.0.0.1:0",
        "COLUMNS": "200",
    }
    # manifest_poll_s = 0: the test has no coordinator to poll.
    with (nodedir / "node.toml").open("a") as f:
        f.write("manifest_poll_s = 0\n")
    serving = subprocess.Popen(
        [sys.executable, "-m", "cagnet.cli", "node", "serve", str(nodedir), "--log-format", "json"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    lines: queue.Queue[dict[str, object]] = queue.Queue()
    assert serving.stderr is not None
    reader = threading.Thread(target=_json_lines, args=(serving.stderr, lines), daemon=True)
    reader.start()
    seen: list[dict[str, object]] = []
    try:
        port = None
        while port is None:
            line = lines.get(timeout=60)
            seen.append(line)
            found = re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics", str(line["message"]))
            port = int(found.group(1)) if found else None
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            scraped = _samples(reply.read().decode())
    finally:
        serving.send_signal(signal.SIGTERM)
        code = serving.wait(timeout=60)
        reader.join(timeout=10)
        serving.stderr.close()
    assert code == 0
    while not lines.empty():
        seen.append(lines.get())
    assert _value(scraped, "cagnet_server_info", role="node", party=MEDWAY) == 1
    assert _value(scraped, "cagnet_audit_log_entries") == 0
    assert {"node E06000035 listening on 127.0.0.1:0"} <= {str(line["message"]) for line in seen}
    assert all({"time", "level", "logger", "message"} <= set(line) for line in seen)


def test_the_coordinator_does_not_start_with_a_public_metrics_address(tmp_path: Path) -> None:
    netdir = tmp_path / "network"
    network.init_network(netdir, name="Test CAG")
    ran = subprocess.run(
        [sys.executable, "-m", "cagnet.cli", "coordinator", "serve", str(netdir), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200", "CAGNET_COORDINATOR_METRICS_LISTEN": "0.0.0.0:9465"},
    )
    assert ran.returncode == 2
    assert "CAGNET_COORDINATOR_METRICS_LISTEN" in ran.stderr and "loopback" in ran.stderr
