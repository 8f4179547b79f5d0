"""Nodes that only dial out, in one process over real mTLS: two listening and two dial-out nodes
answer one joint query whose bundle verifies like any other; a dial-out node not attached is
missing exactly as an unreachable one is; the coordinator's relay accepts a node only as itself;
and a relayed request is checked, refused and audited by the node as a direct one is."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import grpc
import pytest
from typer.testing import CliRunner

from cagnet.cli import app
from coordinator import network
from coordinator import status as party_status
from coordinator.joint import bundle as bundle_mod
from coordinator.joint.client import joint_query
from node.config import load_config
from shared import audit, dsse, health
from shared.auth import request_header, sign_message
from shared.identity import Identity
from shared.interceptor import secure_channel
from shared.manifest import COORDINATOR, DIAL_OUT, LISTEN
from shared.pb.cagnet.v1 import envelope_pb2, node_pb2, relay_pb2, relay_pb2_grpc
from shared.relay import ATTACH, attached_service, hello, node_method
from shared.serde import envelope_to_proto
from tests.netutil import LiveNetwork, make_network, running, start_node

# Kent and Medway listen; Brighton & Hove and Surrey dial out.
LISTENING = ("E10000016", "E06000035")
DIALLING = ("E06000043", "E10000030")
FOUR = LISTENING + DIALLING


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> LiveNetwork:
    return make_network(tmp_path_factory.mktemp("net"), FOUR, dial_out=DIALLING)


@pytest.fixture
def net(built: LiveNetwork) -> Iterator[LiveNetwork]:
    with running(LiveNetwork(built.netdir, built.nodedirs)) as live:
        yield live


def _identity(net: LiveNetwork, code: str) -> Identity:
    return Identity.load(net.nodedirs[code] / "identity")


def test_the_manifest_and_node_toml_say_which_nodes_dial_out(net: LiveNetwork) -> None:
    manifest = network.read(net.netdir)
    assert {p.id: p.transport for p in manifest.members} == {
        **dict.fromkeys(LISTENING, LISTEN),
        **dict.fromkeys(DIALLING, DIAL_OUT),
    }
    assert {code: load_config(net.nodedirs[code]).transport for code in FOUR} == {
        **dict.fromkeys(LISTENING, "listen"),
        **dict.fromkeys(DIALLING, "dial-out"),
    }
    # A listening member is written as before the field existed: its signed bytes are unchanged.
    payload = manifest.canonical_bytes().decode()
    assert payload.count('"transport":"dial-out"') == 2
    assert '"transport":"listen"' not in payload
    # The dial-out nodes serve nothing: only the listening ones and the coordinator have servers.
    assert set(net.servers) == {*LISTENING, COORDINATOR}


def test_a_joint_supply_map_over_listening_and_dial_out_nodes_verifies(net: LiveNetwork) -> None:
    bundle, envelope = joint_query(net.netdir, kind="supply-map")
    assert bundle.answered == tuple(sorted(FOUR))
    assert bundle.missing == ()
    assert {a.authority for a in bundle.result.authorities} == set(FOUR)
    assert all(a.units > 0 for a in bundle.result.authorities)
    assert bundle_mod.verify_bundle(envelope, network.read(net.netdir)) == bundle
    # Each dial-out node audited its release as a listening node does: the chair, via the coordinator.
    for code in DIALLING:
        last = audit.entries(net.runtimes[code].engine)[-1]
        assert (last.principal, last.via, last.method, last.decision) == (
            "cag-chair",
            "coordinator",
            "/cagnet.v1.Node/SupplyMap",
            "released",
        )
        audit.verify_chain(net.runtimes[code].engine)


def test_a_dial_out_node_not_attached_is_reported_unreachable(net: LiveNetwork) -> None:
    net.stop_node("E10000030")
    bundle, envelope = joint_query(net.netdir, kind="supply-map", node_deadline_ms=3000)
    assert bundle.answered == tuple(sorted(set(FOUR) - {"E10000030"}))
    assert [(m.authority, m.reason) for m in bundle.missing] == [("E10000030", "unreachable")]
    bundle_mod.verify_bundle(envelope, network.read(net.netdir))


def test_a_dial_out_node_restarted_attaches_again_and_answers(net: LiveNetwork) -> None:
    assert net.coordinator is not None
    net.stop_node("E06000043")
    assert "E06000043" not in net.coordinator.clients.attached.authorities()
    start_node(net, "E06000043")
    net.wait_attached()
    bundle, _ = joint_query(net.netdir, kind="supply-map")
    assert bundle.answered == tuple(sorted(FOUR))


class _Stream:
    """A raw relay stream to the coordinator as `tls` (its TLS identity), for what a node sends."""

    def __init__(self, net: LiveNetwork, tls: Identity) -> None:
        self.outbox: queue.SimpleQueue[relay_pb2.NodeFrame | None] = queue.SimpleQueue()
        self.channel = secure_channel(
            network.read(net.netdir).coordinator_endpoint,
            peer_party_id=COORDINATOR,
            ca_pem=tls.ca_cert_pem,
            key_pem=tls.tls_key_pem,
            cert_pem=tls.tls_cert_pem,
        )

        def frames() -> Iterator[relay_pb2.NodeFrame]:
            while (frame := self.outbox.get()) is not None:
                yield frame

        self.call = relay_pb2_grpc.RelayStub(self.channel).Attach(frames(), timeout=20)

    def send(self, frame: relay_pb2.NodeFrame) -> None:
        self.outbox.put(frame)

    def next(self) -> relay_pb2.CoordinatorFrame:
        return next(self.call)

    def refusal(self, frame: relay_pb2.NodeFrame) -> tuple[grpc.StatusCode, str]:
        self.send(frame)
        with pytest.raises(grpc.RpcError) as caught:
            self.next()
        return caught.value.code(), caught.value.details()

    def close(self) -> None:
        self.outbox.put(None)
        self.call.cancel()
        self.channel.close()


def _hello_as(signer: Identity, issuer: str) -> relay_pb2.NodeFrame:
    header = request_header(signer, audience=COORDINATOR, method=ATTACH)
    header.issuer = issuer
    return relay_pb2.NodeFrame(hello=envelope_to_proto(sign_message(relay_pb2.AttachRequest(header=header), signer)))


def test_a_node_cannot_attach_as_another_authority(net: LiveNetwork) -> None:
    surrey, brighton = _identity(net, "E10000030"), _identity(net, "E06000043")
    chair = Identity.load(network.principal_dir(net.netdir, "cag-chair"))
    cases = [
        # Surrey's TLS certificate, a hello naming Brighton & Hove signed with Surrey's key.
        (
            surrey,
            _hello_as(surrey, "E06000043"),
            grpc.StatusCode.UNAUTHENTICATED,
            "the header's issuer is not the signer",
        ),
        # Surrey's TLS certificate, Brighton & Hove's own signed hello (a stolen signing key alone).
        (
            surrey,
            relay_pb2.NodeFrame(hello=envelope_to_proto(hello(brighton))),
            grpc.StatusCode.UNAUTHENTICATED,
            "the TLS peer certificate does not match the envelope's signer",
        ),
        # The CAG chair is a party, not a member authority with a node.
        (chair, relay_pb2.NodeFrame(hello=envelope_to_proto(hello(chair))), grpc.StatusCode.PERMISSION_DENIED, None),
        # A stream that opens with anything but the hello.
        (surrey, relay_pb2.NodeFrame(answer=relay_pb2.RelayAnswer(id=1)), grpc.StatusCode.INVALID_ARGUMENT, None),
    ]
    for tls, frame, code, details in cases:
        stream = _Stream(net, tls)
        try:
            got = stream.refusal(frame)
        finally:
            stream.close()
        assert got[0] == code, got
        if details is not None:
            assert got[1] == details
    # Neither attached as Brighton & Hove in place of its node: the node still answers.
    assert net.coordinator is not None
    bundle, _ = joint_query(net.netdir, kind="supply-map")
    assert bundle.answered == tuple(sorted(FOUR))


def test_a_hello_replayed_is_refused(net: LiveNetwork) -> None:
    surrey = _identity(net, "E10000030")
    frame = relay_pb2.NodeFrame(hello=envelope_to_proto(hello(surrey)))
    first = _Stream(net, surrey)
    try:
        first.send(frame)
        assert first.next().WhichOneof("frame") == "attached"
    finally:
        first.close()
    second = _Stream(net, surrey)
    try:
        assert second.refusal(frame) == (grpc.StatusCode.ALREADY_EXISTS, "replayed request")
    finally:
        second.close()


def test_an_attached_node_that_never_answers_is_missing_after_the_deadline(net: LiveNetwork) -> None:
    # Surrey's keys attach a stream that takes requests and never answers (its node is stopped).
    net.stop_node("E10000030")
    silent = _Stream(net, _identity(net, "E10000030"))
    try:
        silent.send(relay_pb2.NodeFrame(hello=envelope_to_proto(hello(_identity(net, "E10000030")))))
        assert silent.next().WhichOneof("frame") == "attached"
        bundle, _ = joint_query(net.netdir, kind="supply-map", node_deadline_ms=1500)
        call = silent.next()
        assert call.WhichOneof("frame") == "call"
        assert call.call.method == "/cagnet.v1.Node/SupplyMap"
    finally:
        silent.close()
    assert [m.authority for m in bundle.missing] == ["E10000030"]
    assert bundle.missing[0].reason == "no answer within the deadline (1500 ms)"


def _relay(net: LiveNetwork, code: str, method: str, request: dsse.Envelope) -> relay_pb2.RelayAnswer:
    """`request` sent down `code`'s relay stream by the running coordinator, as the fan-out sends."""
    assert net.coordinator is not None
    attachment = net.coordinator.clients.attached.get(code)
    assert attachment is not None
    return attachment.ask(method, envelope_to_proto(request), 10).result(timeout=20)


def test_a_relayed_request_is_checked_refused_and_audited_as_a_direct_one(net: LiveNetwork) -> None:
    code = "E06000043"
    engine = net.runtimes[code].engine
    before = len(audit.entries(engine))
    coordinator = network.coordinator_identity(net.netdir)
    chair = Identity.load(network.principal_dir(net.netdir, "cag-chair"))
    method = node_method("Describe")

    def describe(signer: Identity) -> dsse.Envelope:
        header = request_header(signer, audience=code, method=method)
        return sign_message(node_pb2.DescribeRequest(header=header), signer)

    request = describe(coordinator)
    answer = _relay(net, code, method, request)
    assert answer.status_code == grpc.StatusCode.OK.value[0]
    assert answer.response.signatures
    # The same request again is a replay, as it would be on the listening transport.
    again = _relay(net, code, method, request)
    assert (again.status_code, again.status_message) == (grpc.StatusCode.ALREADY_EXISTS.value[0], "replayed request")
    # Only the coordinator is at the stream's other end: a request the chair signed is refused.
    chairs = _relay(net, code, method, describe(chair))
    assert (chairs.status_code, chairs.status_message) == (
        grpc.StatusCode.UNAUTHENTICATED.value[0],
        "the TLS peer certificate does not match the envelope's signer",
    )
    # A method the Node service does not have.
    unknown = _relay(net, code, "/cagnet.v1.Node/Nothing", describe(coordinator))
    assert unknown.status_code == grpc.StatusCode.UNIMPLEMENTED.value[0]
    decisions = [(e.principal, e.decision) for e in audit.entries(engine)[before:]]
    assert decisions == [
        ("coordinator", "released"),
        ("coordinator", "rejected: replayed request"),
        ("coordinator", "rejected: the TLS peer certificate does not match the envelope's signer"),
    ]
    assert isinstance(answer.response, envelope_pb2.Envelope)


def test_the_coordinator_says_whether_each_dial_out_node_is_attached(net: LiveNetwork) -> None:
    code = "E10000030"
    endpoint = network.read(net.netdir).coordinator_endpoint
    surrey = _identity(net, code)
    coordinator = network.coordinator_identity(net.netdir)
    party = network.read(net.netdir).party(code)

    def status() -> tuple[str, str]:
        asked = health.check(endpoint, identity=surrey, peer_party_id=COORDINATOR, service=attached_service(code))
        shown = party_status.check(
            party,
            coordinator,
            net.netdir / "coordinator",
            timeout_s=5,
            now=party_status.now(),
            coordinator_endpoint=endpoint,
        )
        return asked, shown.reachable

    assert status() == ("SERVING", "attached (dial-out)")
    net.stop_node(code)
    assert status() == ("NOT_SERVING", "not attached (dial-out)")


def test_while_the_network_is_set_up_the_operator_lists_a_nodes_transport(built: LiveNetwork) -> None:
    netdir = str(built.netdir)
    version = network.read(built.netdir).version
    result = CliRunner().invoke(app, ["network", "set-transport", netdir, "E10000016", "dial-out"])
    assert result.exit_code == 0, result.output
    assert network.read(built.netdir).party("E10000016").dials_out
    result = CliRunner().invoke(app, ["network", "set-transport", netdir, "E10000016", "listen"])
    assert result.exit_code == 0, result.output
    manifest = network.read(built.netdir)
    assert not manifest.party("E10000016").dials_out and manifest.version == version + 2
    for args, reason in [
        (["E10000016", "sideways"], "a transport is one of listen, dial-out, not 'sideways'"),
        (["cag-chair", "dial-out"], "cag-chair has no node"),
    ]:
        result = CliRunner().invoke(app, ["network", "set-transport", netdir, *args])
        assert result.exit_code != 0
        assert reason in " ".join((result.output + str(result.exception or "")).split())
    assert network.read(built.netdir).version == version + 2
