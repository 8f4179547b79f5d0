"""The sub-regional feed through a real network: three nodes and a coordinator on port 0 with mTLS.
The chair publishes; a regional board subscribes, gets CAG-level figures only, verifies each
snapshot end to end, resumes after a dropped connection, and fetches a snapshot it missed."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import grpc
import pytest

from coordinator import network
from coordinator.feeds.client import publish, subscribe
from coordinator.feeds.snapshot import FeedSnapshot, verify_snapshot
from coordinator.joint.client import Refused, joint_query
from coordinator.server import create_server as create_coordinator
from shared import dsse
from shared.errors import BadSignature, BundleMismatch
from shared.identity import Identity
from shared.manifest import COORDINATOR
from tests.netutil import LiveNetwork, make_network, running

BOARD = "regional-board"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> LiveNetwork:
    net = make_network(tmp_path_factory.mktemp("net"))
    network.add_principal(net.netdir, party_id=BOARD, role="regional-board", name="SE Regional Housing Board")
    return net


@pytest.fixture
def net(built: LiveNetwork) -> LiveNetwork:
    with running(LiveNetwork(built.netdir, built.nodedirs)) as live:
        yield live


def test_a_published_snapshot_holds_cag_figures_only_and_verifies_end_to_end(net: LiveNetwork, tmp_path: Path) -> None:
    snapshot = publish(net.netdir)
    assert snapshot.authorities == tuple(sorted(net.nodedirs))
    assert snapshot.supply and snapshot.flows and snapshot.kpi2
    assert snapshot.population > 0
    out = tmp_path / "board"
    written = subscribe(net.netdir, out, principal=BOARD)
    assert written and written[-1] == snapshot.sequence
    stem = out / f"snapshot-{snapshot.sequence:06d}"
    figures = json.loads(stem.with_suffix(".json").read_text())
    assert "evidence" not in figures
    assert stem.with_suffix(".csv").read_text().startswith("sequence,section,client_group")
    envelope = dsse.Envelope.from_json(json.loads(stem.with_suffix(".dsse.json").read_text()))
    manifest = network.read(net.netdir)
    again = verify_snapshot(envelope, manifest)
    # Nothing in what the board holds is one authority's figure: the evidence has receipts, not answers.
    text = envelope.payload.decode()
    for word in ("annual_value", "client_group_totals", '"cells"', "rates", "shortfall"):
        assert word not in text
    for ev in again.evidence:
        assert {c.authority for c in ev.contributions} == set(net.nodedirs)
    # The chair, who holds the full bundles, can recompute the figures from them.
    assert net.coordinator is not None
    bundles = net.coordinator.feeds.bundles(snapshot.sequence)
    assert verify_snapshot(envelope, manifest, bundles=bundles) == again


def test_a_tampered_snapshot_is_refused(net: LiveNetwork) -> None:
    publish(net.netdir)
    assert net.coordinator is not None
    [(_, envelope)] = net.coordinator.feeds.since(net.coordinator.feeds.last_sequence())
    manifest = network.read(net.netdir)
    doc = FeedSnapshot.model_validate_json(envelope.payload).model_dump(mode="json")
    doc["supply"][0]["units"] += 1
    forged = dsse.sign(
        envelope.payload_type,
        json.dumps(doc).encode(),
        Identity.load(network.principal_dir(net.netdir, BOARD)).signing_key,
    )
    with pytest.raises(BadSignature):
        verify_snapshot(forged, manifest)
    # Signed by the coordinator, but with a node's receipt moved to another figure's evidence.
    doc = FeedSnapshot.model_validate_json(envelope.payload).model_dump(mode="json")
    doc["evidence"][0]["contributions"][0]["receipt"] = doc["evidence"][1]["contributions"][0]["receipt"]
    key = network.coordinator_identity(net.netdir).signing_key
    with pytest.raises((BadSignature, BundleMismatch)):
        verify_snapshot(dsse.sign(envelope.payload_type, json.dumps(doc).encode(), key), manifest)


def test_a_regional_board_is_refused_per_authority_figures_and_publishing(net: LiveNetwork) -> None:
    for kind in ("supply-map", "net-flow", "kpi"):
        with pytest.raises(Refused) as refused:
            joint_query(net.netdir, kind=kind, principal=BOARD, period="all" if kind != "supply-map" else "")
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
        # Told where its figures are instead.
        assert refused.value.public_message.endswith(
            "its route to the CAG's figures is the signed feed: `cagnet feed subscribe`"
        )
    with pytest.raises(Refused) as refused:
        publish(net.netdir, principal=BOARD)
    assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_a_missed_snapshot_is_fetched_and_a_lost_file_fetched_again(net: LiveNetwork, tmp_path: Path) -> None:
    out = tmp_path / "board"
    first = publish(net.netdir).sequence
    assert subscribe(net.netdir, out, principal=BOARD)[-1] == first
    # Published while the board was away: both are fetched on the next run, in order.
    second, third = publish(net.netdir).sequence, publish(net.netdir).sequence
    assert subscribe(net.netdir, out, principal=BOARD) == [second, third]
    assert subscribe(net.netdir, out, principal=BOARD) == []
    (out / f"snapshot-{second:06d}.dsse.json").unlink()
    assert subscribe(net.netdir, out, principal=BOARD)[0] == second


def test_the_stream_resumes_after_a_dropped_connection(net: LiveNetwork, tmp_path: Path) -> None:
    out = tmp_path / "board"
    before = publish(net.netdir).sequence
    got: list[int] = []
    arrived = threading.Condition()
    stop = threading.Event()

    def seen(snapshot: FeedSnapshot) -> None:
        with arrived:
            got.append(snapshot.sequence)
            arrived.notify_all()

    errors: list[BaseException] = []

    def run() -> None:
        try:
            subscribe(net.netdir, out, principal=BOARD, follow=True, stop=stop, on_snapshot=seen, retry_s=0.05)
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        with arrived:
            assert arrived.wait_for(lambda: before in got, timeout=30)
        # Drop the connection: the coordinator's server goes away and comes back on another port.
        assert net.coordinator is not None
        net.servers.pop(COORDINATOR).stop(grace=None).wait()
        server, port = create_coordinator(net.coordinator, address="127.0.0.1:0")
        net.servers[COORDINATOR] = server
        network.set_endpoint(net.netdir, COORDINATOR, f"127.0.0.1:{port}")
        after = publish(net.netdir).sequence
        with arrived:
            assert arrived.wait_for(lambda: after in got, timeout=30)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not errors
    assert got == list(range(1, after + 1))  # every snapshot, in order, none skipped across the drop
