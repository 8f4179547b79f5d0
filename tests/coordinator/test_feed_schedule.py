"""Scheduled feed snapshots through a real network (three nodes and a coordinator on port 0, mTLS):
the coordinator publishes by itself under the CAG chair's standing mandate and a regional board
receives and verifies what it published; each node refuses, with its own status and an audit-log
entry, every mandated query the chair did not authorise; the schedule's settings and its
behaviour when it cannot publish."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest

from coordinator import network
from coordinator.feeds.client import authorise, subscribe
from coordinator.feeds.schedule import FeedSchedule, write_mandate_file
from coordinator.feeds.snapshot import FeedSnapshot, verify_snapshot
from coordinator.server import CoordinatorRuntime
from node.config import load_config
from shared import audit, dsse
from shared.auth import forwarded_request, request_header, sign_message
from shared.errors import BadSignature, BundleMismatch, InvalidRequest
from shared.identity import Identity
from shared.kinds.registry import KINDS
from shared.mandate import (
    MANDATE_PAYLOAD_TYPE,
    FeedMandate,
    MandatedQuery,
    feed_queries,
    make_mandate,
    query_message,
    sign_mandate,
)
from shared.manifest import COORDINATOR
from shared.pb.cagnet.v1 import node_pb2_grpc
from shared.serde import envelope_to_proto
from tests.netutil import LiveNetwork, make_network, node_stub, running

BOARD = "regional-board"
MEDWAY = "E06000035"
JOINT_QUERY = "/cagnet.v1.Coordinator/JointQuery"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> LiveNetwork:
    net = make_network(tmp_path_factory.mktemp("net"))
    network.add_principal(net.netdir, party_id=BOARD, role="regional-board", name="SE Regional Housing Board")
    return net


def _settings(netdir: Path, text: str) -> None:
    (netdir / "coordinator.toml").write_text(text)


@pytest.fixture
def clean(built: LiveNetwork) -> Iterator[LiveNetwork]:
    """The module's network with no settings file and no mandate before and after each test."""
    for name in ("coordinator.toml", "feed-mandate.json"):
        (built.netdir / name).unlink(missing_ok=True)
    yield built
    for name in ("coordinator.toml", "feed-mandate.json"):
        (built.netdir / name).unlink(missing_ok=True)


@pytest.fixture
def net(clean: LiveNetwork) -> Iterator[LiveNetwork]:
    with running(LiveNetwork(clean.netdir, clean.nodedirs)) as live:
        yield live


def _now() -> datetime:
    return datetime.now(UTC)


def _chair(net: LiveNetwork) -> Identity:
    return Identity.load(network.principal_dir(net.netdir, "cag-chair"))


def _mandate(
    net: LiveNetwork,
    *,
    signer: Identity | None = None,
    chair: str = "cag-chair",
    every_s: int = 3600,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    network_name: str | None = None,
) -> tuple[FeedMandate, dsse.Envelope]:
    """A mandate naming `chair`, signed by `signer` (the chair by default)."""
    starts = not_before or _now() - timedelta(minutes=5)
    mandate = make_mandate(
        network=network_name or network.read(net.netdir).network,
        chair=chair,
        interval_s=every_s,
        not_before=starts,
        not_after=not_after or starts + timedelta(days=30),
        queries=feed_queries(),
    )
    key = (signer or _chair(net)).signing_key
    return mandate, dsse.sign(MANDATE_PAYLOAD_TYPE, mandate.payload(), key)


# --- the schedule publishes by itself; a board receives and verifies it --------------------------


def test_the_coordinator_publishes_on_its_schedule_and_a_board_verifies_it(clean: LiveNetwork, tmp_path: Path) -> None:
    # A test-only short schedule, allowed through the settings' floor.
    _settings(clean.netdir, '[feed]\npublish_every = "3s"\nmin_interval = "1s"\n')
    mandate, path = authorise(clean.netdir, every_s=3, not_before=_now(), not_after=_now() + timedelta(hours=1))
    assert path == clean.netdir / "feed-mandate.json"
    got: list[FeedSnapshot] = []
    arrived = threading.Condition()
    stop = threading.Event()
    errors: list[BaseException] = []

    def seen(snapshot: FeedSnapshot) -> None:
        with arrived:
            got.append(snapshot)
            arrived.notify_all()

    def board() -> None:
        try:
            subscribe(clean.netdir, tmp_path / "board", principal=BOARD, follow=True, stop=stop, on_snapshot=seen)
        except BaseException as exc:
            errors.append(exc)

    with running(LiveNetwork(clean.netdir, clean.nodedirs)) as net:
        assert net.coordinator is not None
        assert net.coordinator.settings.publish_every_s == 3
        schedule = FeedSchedule.prepare(net.coordinator)
        assert schedule is not None
        worker = threading.Thread(target=board)
        schedule.start()
        worker.start()
        try:
            with arrived:
                # The first on start (the current slot has none), then one in a later slot.
                assert arrived.wait_for(lambda: len(got) >= 2, timeout=120)
        finally:
            schedule.stop()
            stop.set()
            worker.join(timeout=30)
        assert not errors
        first, second = got[0], got[1]
        for snapshot in (first, second):
            assert snapshot.publisher == "cag-chair"
            assert snapshot.mandate is not None and snapshot.mandate.mandate_id == mandate.mandate_id
            assert snapshot.authorities == tuple(sorted(net.nodedirs))
            assert snapshot.supply and snapshot.flows and snapshot.kpi2
        assert first.mandate is not None and second.mandate is not None
        assert second.mandate.slot > first.mandate.slot  # once a slot
        # What the board wrote verifies again on its own; the chair, holding the bundles, recomputes it.
        stem = tmp_path / "board" / f"snapshot-{first.sequence:06d}"
        envelope = dsse.Envelope.from_json(json.loads(stem.with_suffix(".dsse.json").read_text()))
        manifest = network.read(net.netdir)
        bundles = net.coordinator.feeds.bundles(first.sequence)
        assert verify_snapshot(envelope, manifest, bundles=bundles) == first
        # Each node released to the chair, via the coordinator, and audited the mandate and slot.
        for code, runtime in net.runtimes.items():
            entries = [e for e in audit.entries(runtime.engine) if mandate.mandate_id in e.parameters]
            released = [e for e in entries if e.decision == "released"]
            assert len(released) >= 6, code  # three figures, two snapshots
            for e in released:
                assert (e.principal, e.role, e.via) == ("cag-chair", "cag-chair", COORDINATOR)
                assert json.loads(e.parameters)["mandate"] == mandate.mandate_id
        # The coordinator wrote each publication to its own audit log: the chair's, via itself.
        published = {
            json.loads(e.parameters)["sequence"]: e
            for e in audit.entries(net.coordinator.audit.engine)
            if e.method == "/cagnet.v1.Coordinator/PublishFeed" and e.decision == "released"
        }
        for snapshot in (first, second):
            entry = published[snapshot.sequence]
            assert snapshot.mandate is not None
            assert (entry.principal, entry.role, entry.via) == ("cag-chair", "cag-chair", COORDINATOR)
            assert json.loads(entry.parameters) == {
                "mandate": mandate.mandate_id,
                "slot": snapshot.mandate.slot,
                "sequence": snapshot.sequence,
            }
        audit.verify_chain(net.coordinator.audit.engine)


def test_a_scheduled_snapshot_with_its_mandate_swapped_or_a_query_altered_is_refused(net: LiveNetwork) -> None:
    assert net.coordinator is not None
    _, envelope = _mandate(net)
    published = net.coordinator.publish_mandated(envelope)
    manifest = network.read(net.netdir)
    snapshot = verify_snapshot(published, manifest)
    assert snapshot.mandate is not None
    key = network.coordinator_identity(net.netdir).signing_key

    def resign(edit: Any) -> dsse.Envelope:
        doc = json.loads(published.payload)
        edit(doc)
        return dsse.sign(published.payload_type, json.dumps(doc).encode(), key)

    # Another valid mandate of the chair's, not the one the queries were made under.
    other_mandate, other = _mandate(net)
    with pytest.raises(BundleMismatch):
        verify_snapshot(resign(lambda d: d["mandate"].update(envelope=other.to_json())), manifest)
    swapped = {"envelope": other.to_json(), "mandate_id": other_mandate.mandate_id}
    with pytest.raises(BundleMismatch):
        verify_snapshot(resign(lambda d: d["mandate"].update(swapped)), manifest)
    # The snapshot claims another slot than its queries were made for.
    with pytest.raises(BundleMismatch):
        verify_snapshot(resign(lambda d: d["mandate"].update(slot=d["mandate"]["slot"] + 1)), manifest)
    # Without the mandate, the coordinator's queries are not the publisher's.
    with pytest.raises(BadSignature):
        verify_snapshot(resign(lambda d: d.update(mandate=None)), manifest)


# --- what a node refuses -----------------------------------------------------------------------


def _node_stub(net: LiveNetwork, identity: Identity, code: str = MEDWAY) -> node_pb2_grpc.NodeStub:
    return node_stub(net, identity, code)


def _ask(
    net: LiveNetwork,
    envelope: dsse.Envelope,
    *,
    kind: str = "supply-map",
    slot: int | None = None,
    question: MandatedQuery | None = None,
    issuer: Identity | None = None,
) -> Any:
    """Send the node the request the coordinator sends for a mandated query (signed as the
    coordinator unless `issuer` is given); returns the reply, or the grpc error."""
    coordinator = network.coordinator_identity(net.netdir)
    asker = issuer or coordinator
    mandate = FeedMandate.model_validate_json(envelope.payload)
    policy = network.read_policy(net.netdir).digest
    header = request_header(asker, audience=COORDINATOR, method=JOINT_QUERY, policy_digest=policy)
    query = query_message(question or mandate.query(kind), header)
    query.mandate.CopyFrom(envelope_to_proto(envelope))
    query.slot = mandate.slot_at(_now().timestamp()) if slot is None else slot
    query_env = sign_message(query, asker)
    spec = KINDS[query.kind]
    node_header = request_header(
        coordinator, audience=MEDWAY, method=spec.method, on_behalf_of=query_env, policy_digest=policy
    )
    request = sign_message(forwarded_request(spec.request_cls, node_header, query), coordinator)
    try:
        return getattr(_node_stub(net, coordinator), spec.rpc)(envelope_to_proto(request), timeout=10)
    except grpc.RpcError as exc:
        return exc


def _refused(net: LiveNetwork, reply: Any, code: grpc.StatusCode) -> audit.AuditEntry:
    assert isinstance(reply, grpc.RpcError), "the node answered"
    assert reply.code() == code, reply.details()
    last = audit.entries(net.runtimes[MEDWAY].engine)[-1]
    assert last.decision == f"rejected: {reply.details()}"
    for word in ("units", "services", "annual_value"):
        assert word not in (reply.details() or "")
    return last


def test_a_node_answers_a_mandated_query_once_a_slot_as_the_chairs(net: LiveNetwork) -> None:
    mandate, envelope = _mandate(net)
    slot = mandate.slot_at(_now().timestamp())
    assert not isinstance(_ask(net, envelope, slot=slot), grpc.RpcError)
    released = audit.entries(net.runtimes[MEDWAY].engine)[-1]
    assert (released.principal, released.role, released.via, released.decision) == (
        "cag-chair",
        "cag-chair",
        COORDINATOR,
        "released",
    )
    assert json.loads(released.parameters)["mandate"] == mandate.mandate_id
    assert json.loads(released.parameters)["slot"] == slot
    # The same kind again in the same slot could be differenced: refused, and audited to the chair.
    again = _refused(net, _ask(net, envelope, slot=slot), grpc.StatusCode.ALREADY_EXISTS)
    assert again.principal == "cag-chair" and json.loads(again.parameters)["mandate"] == mandate.mandate_id
    # Another kind in that slot is its own question.
    assert not isinstance(_ask(net, envelope, kind="kpi", slot=slot), grpc.RpcError)


def test_a_node_remembers_a_used_slot_across_a_restart(net: LiveNetwork) -> None:
    _, envelope = _mandate(net)
    assert not isinstance(_ask(net, envelope), grpc.RpcError)
    net.stop_node(MEDWAY)
    net.runtimes[MEDWAY].engine.dispose()
    from node.rpc.server import NodeRuntime
    from node.rpc.server import create_server as create_node

    runtime = NodeRuntime.open(load_config(net.nodedirs[MEDWAY]))
    server, port = create_node(runtime, address="127.0.0.1:0")
    net.runtimes[MEDWAY], net.servers[MEDWAY] = runtime, server
    network.set_endpoint(net.netdir, MEDWAY, f"127.0.0.1:{port}")
    _refused(net, _ask(net, envelope), grpc.StatusCode.ALREADY_EXISTS)


@pytest.mark.parametrize(
    ("signer", "chair", "code", "message"),
    [
        ("member", MEDWAY, grpc.StatusCode.PERMISSION_DENIED, "the feed mandate is not signed by a CAG chair"),
        (
            "coordinator",
            COORDINATOR,
            grpc.StatusCode.PERMISSION_DENIED,
            "the feed mandate is not signed by a CAG chair",
        ),
        ("board", BOARD, grpc.StatusCode.PERMISSION_DENIED, "the feed mandate is not signed by a CAG chair"),
        # Naming the chair but signed with another key: a forgery.
        ("coordinator", "cag-chair", grpc.StatusCode.UNAUTHENTICATED, "the feed mandate is not signed by the party"),
        ("member", "cag-chair", grpc.StatusCode.UNAUTHENTICATED, "the feed mandate is not signed by the party"),
    ],
)
def test_a_mandate_not_signed_by_the_chair_is_refused(
    net: LiveNetwork, signer: str, chair: str, code: grpc.StatusCode, message: str
) -> None:
    identity = {
        "member": load_config(net.nodedirs[MEDWAY]).identity(),
        "coordinator": network.coordinator_identity(net.netdir),
        "board": Identity.load(network.principal_dir(net.netdir, BOARD)),
    }[signer]
    _, envelope = _mandate(net, signer=identity, chair=chair)
    entry = _refused(net, _ask(net, envelope), code)
    assert entry.decision.startswith(f"rejected: {message}")
    assert entry.principal == COORDINATOR  # nothing in the mandate verified: who sent it is all that is known


def test_a_tampered_mandate_is_refused(net: LiveNetwork) -> None:
    _, envelope = _mandate(net)
    # The chair's signature kept, the interval shortened so that the coordinator could ask more often.
    doc = json.loads(envelope.payload)
    doc["interval_s"] = 1
    tampered = dsse.Envelope(envelope.payload_type, json.dumps(doc).encode(), envelope.signatures)
    _refused(net, _ask(net, tampered), grpc.StatusCode.UNAUTHENTICATED)
    # And a question added to what the chair signed.
    doc = json.loads(envelope.payload)
    doc["queries"][0]["client_groups"] = [14]
    tampered = dsse.Envelope(envelope.payload_type, json.dumps(doc).encode(), envelope.signatures)
    _refused(
        net,
        _ask(net, tampered, question=MandatedQuery(kind="supply-map", client_groups=(14,))),
        grpc.StatusCode.UNAUTHENTICATED,
    )


def test_an_expired_or_not_yet_valid_mandate_is_refused(net: LiveNetwork) -> None:
    _, expired = _mandate(net, not_before=_now() - timedelta(days=10), not_after=_now() - timedelta(days=1))
    entry = _refused(net, _ask(net, expired, slot=0), grpc.StatusCode.DEADLINE_EXCEEDED)
    assert entry.decision == "rejected: the feed mandate has expired"
    _, future = _mandate(net, not_before=_now() + timedelta(days=1))
    entry = _refused(net, _ask(net, future, slot=0), grpc.StatusCode.DEADLINE_EXCEEDED)
    assert entry.decision == "rejected: the feed mandate is not valid yet"


def test_a_slot_other_than_the_current_one_is_refused(net: LiveNetwork) -> None:
    mandate, envelope = _mandate(net, not_before=_now() - timedelta(days=3), every_s=3600)
    current = mandate.slot_at(_now().timestamp())
    for slot in (current - 5, current + 5):
        entry = _refused(net, _ask(net, envelope, slot=slot), grpc.StatusCode.DEADLINE_EXCEEDED)
        assert entry.principal == "cag-chair"  # the mandate verified; the slot did not
    _refused(net, _ask(net, envelope, slot=-1), grpc.StatusCode.PERMISSION_DENIED)


def test_a_query_the_mandate_does_not_allow_is_refused(net: LiveNetwork) -> None:
    _, envelope = _mandate(net)
    # One client group only: a different question from the chair's (and one that could difference).
    entry = _refused(
        net,
        _ask(net, envelope, question=MandatedQuery(kind="supply-map", client_groups=(14,))),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert entry.decision == "rejected: the query is not one the feed mandate allows"
    # Net flows by year instead of the whole period.
    _refused(
        net,
        _ask(net, envelope, question=MandatedQuery(kind="net-flow", period="year")),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    # A kind the mandate cannot hold at all.
    _refused(
        net,
        _ask(net, envelope, question=MandatedQuery(kind="movement", period="all")),
        grpc.StatusCode.PERMISSION_DENIED,
    )


def test_a_mandate_for_another_network_or_carried_by_a_principal_is_refused(net: LiveNetwork) -> None:
    _, elsewhere = _mandate(net, network_name="North West CAG")
    _refused(net, _ask(net, elsewhere), grpc.StatusCode.FAILED_PRECONDITION)
    # A chair's own query may not carry a mandate: it is answered on the chair's own signature.
    _, envelope = _mandate(net)
    reply = _ask(net, envelope, issuer=_chair(net))
    assert isinstance(reply, grpc.RpcError) and reply.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_policy_is_applied_to_the_chair(tmp_path: Path) -> None:
    net = make_network(tmp_path)
    with running(net):
        from tests.network.test_policy_network import _revision

        policy = network.set_policy(net.netdir, _revision(2, supply_roles='["member-authority"]'))
        _, envelope = _mandate(net)
        reply = _ask(net, envelope)
        assert isinstance(reply, grpc.RpcError) and reply.code() == grpc.StatusCode.PERMISSION_DENIED
        assert reply.details() == "the network policy does not let 'cag-chair' ask for 'supply-map'"
        last = audit.entries(net.runtimes[MEDWAY].engine)[-1]
        assert (last.principal, last.via, last.policy_digest) == ("cag-chair", COORDINATOR, policy.digest)
        assert last.decision == f"refused: {reply.details()}"


# --- the schedule: settings, start-up, failures, restarts ---------------------------------------


def test_a_failed_slot_is_logged_and_not_tried_again_in_that_slot(
    net: LiveNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    assert net.coordinator is not None
    path = net.netdir / "feed-mandate.json"
    _, envelope = _mandate(net, not_before=_now() - timedelta(minutes=5))  # the next slot is 55 min away
    write_mandate_file(path, envelope)
    schedule = FeedSchedule(net.coordinator, every_s=3600, mandate_path=path)
    net.stop_node(MEDWAY)  # two of three authorities: fewer than the feed's minimum
    before = net.coordinator.feeds.last_sequence()
    with caplog.at_level(logging.WARNING, logger="coordinator.feeds.schedule"):
        said = schedule.tick()
    assert said.startswith("no snapshot for slot 0: unreachable: 2 of 3 authorities answered")
    assert "(E06000035): unreachable" in said and "next attempt at" in said
    assert f"feed schedule: {said}" in caplog.text
    # Not again in the same slot, whatever the outcome: the nodes that answered have spent it.
    assert schedule.tick() == "slot 0 already tried"
    assert net.coordinator.feeds.last_sequence() == before


def test_after_a_failed_slot_the_next_slot_publishes(net: LiveNetwork) -> None:
    assert net.coordinator is not None
    path = net.netdir / "feed-mandate.json"
    _, envelope = _mandate(net, every_s=2, not_before=_now())
    write_mandate_file(path, envelope)
    schedule = FeedSchedule(net.coordinator, every_s=2, mandate_path=path)
    runtime = net.runtimes[MEDWAY]
    net.stop_node(MEDWAY)
    before = net.coordinator.feeds.last_sequence()
    assert schedule.tick().startswith("no snapshot for slot ")
    from node.rpc.server import create_server as create_node

    server, port = create_node(runtime, address="127.0.0.1:0")
    net.servers[MEDWAY] = server
    network.set_endpoint(net.netdir, MEDWAY, f"127.0.0.1:{port}")
    # Wait (generously) for a later slot: the schedule then publishes with every node back.
    published = threading.Event()
    said: list[str] = []

    def until_published() -> None:
        for _ in range(600):
            said.append(schedule.tick())
            if said[-1].startswith("published snapshot "):
                published.set()
                return
            threading.Event().wait(0.1)

    until_published()
    assert published.is_set(), said[-3:]
    assert net.coordinator.feeds.last_sequence() == before + 1


def test_a_restarted_schedule_does_not_publish_twice_in_a_slot(net: LiveNetwork) -> None:
    assert net.coordinator is not None
    _, envelope = _mandate(net)
    path = net.netdir / "feed-mandate.json"
    write_mandate_file(path, envelope)
    first = FeedSchedule(net.coordinator, every_s=3600, mandate_path=path)
    assert first.tick().startswith("published snapshot ")
    published = net.coordinator.feeds.last_sequence()
    restarted = FeedSchedule(net.coordinator, every_s=3600, mandate_path=path)
    assert restarted.tick() == "slot 0 already tried"
    assert net.coordinator.feeds.last_sequence() == published
    # A new mandate from the chair is a new schedule: it publishes in its own first slot.
    _, renewed = _mandate(net)
    write_mandate_file(path, renewed)
    assert restarted.tick().startswith(f"published snapshot {published + 1} ")


def test_revoking_or_expiry_stops_the_schedule(net: LiveNetwork, caplog: pytest.LogCaptureFixture) -> None:
    assert net.coordinator is not None
    path = net.netdir / "feed-mandate.json"
    _, envelope = _mandate(net, not_before=_now() - timedelta(days=2), not_after=_now() - timedelta(days=1))
    write_mandate_file(path, envelope)
    schedule = FeedSchedule(net.coordinator, every_s=3600, mandate_path=path)
    assert "ended at" in schedule.tick()
    path.unlink()
    with caplog.at_level(logging.WARNING, logger="coordinator.feeds.schedule"):
        said = schedule.tick()
    assert said.startswith(f"no mandate at {path}")
    assert "scheduled publishing stays off" in caplog.text


def test_no_mandate_leaves_the_schedule_off_with_a_clear_line(
    clean: LiveNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    _settings(clean.netdir, '[feed]\npublish_every = "7d"\n')
    runtime = CoordinatorRuntime.open(clean.netdir)
    try:
        with caplog.at_level(logging.INFO, logger="coordinator.feeds.schedule"):
            schedule = FeedSchedule.prepare(runtime)
        assert schedule is not None
        assert (
            f"no mandate at {clean.netdir / 'feed-mandate.json'}; scheduled publishing stays off until the CAG "
            "chair runs `cagnet feed authorise`" in caplog.text
        )
        assert schedule.tick().startswith("no mandate at ")
    finally:
        runtime.close()


def test_no_schedule_is_off_by_default(clean: LiveNetwork, caplog: pytest.LogCaptureFixture) -> None:
    runtime = CoordinatorRuntime.open(clean.netdir)
    try:
        with caplog.at_level(logging.INFO, logger="coordinator.feeds.schedule"):
            assert FeedSchedule.prepare(runtime) is None
        assert "feed schedule: off" in caplog.text
    finally:
        runtime.close()


def test_a_schedule_more_frequent_than_the_mandate_is_refused_at_start_up(clean: LiveNetwork) -> None:
    _settings(clean.netdir, '[feed]\npublish_every = "1d"\n')
    authorise(clean.netdir, every_s=7 * 86400, not_before=_now(), not_after=_now() + timedelta(days=90))
    runtime = CoordinatorRuntime.open(clean.netdir)
    try:
        with pytest.raises(InvalidRequest) as refused:
            FeedSchedule.prepare(runtime)
        assert "[feed] publish_every 1d is more often than the CAG chair's mandate allows (every 1w)" in str(
            refused.value
        )
    finally:
        runtime.close()


def test_the_chair_cannot_authorise_as_another_party(clean: LiveNetwork) -> None:
    with pytest.raises(InvalidRequest):
        sign_mandate(
            make_mandate(
                network="x",
                chair="cag-chair",
                interval_s=60,
                not_before=_now(),
                not_after=_now() + timedelta(days=1),
                queries=feed_queries(),
            ),
            Identity.load(network.principal_dir(clean.netdir, BOARD)),
        )


def test_a_principal_query_carrying_a_mandate_is_refused_by_the_coordinator(net: LiveNetwork) -> None:
    # The chair's own JointQuery is answered on the chair's signature alone, never with a mandate.
    from coordinator.feeds.client import _channel
    from shared.pb.cagnet.v1 import coordinator_pb2_grpc

    chair = _chair(net)
    _, envelope = _mandate(net)
    header = request_header(chair, audience=COORDINATOR, method=JOINT_QUERY)
    query = query_message(MandatedQuery(kind="supply-map"), header)
    query.mandate.CopyFrom(envelope_to_proto(envelope))
    channel = _channel(net.netdir, chair)
    try:
        with pytest.raises(grpc.RpcError) as refused:
            coordinator_pb2_grpc.CoordinatorStub(channel).JointQuery(
                envelope_to_proto(sign_message(query, chair)), timeout=30
            )
    finally:
        channel.close()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == "a principal's query carries no feed mandate"
