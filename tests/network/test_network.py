"""A real network in one process: three nodes and a coordinator on port 0 with mTLS and signed
envelopes. Joint queries, missing and slow nodes, tampering, and every request rejection."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from pathlib import Path

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select

from coordinator import network
from coordinator.joint import bundle as bundle_mod
from coordinator.joint.client import joint_query
from coordinator.server import JOINT_QUERY
from node.answers.supply import supply_map
from shared import audit, dsse, keyfile
from shared.auth import request_header, sign_message
from shared.errors import BadSignature, BundleMismatch
from shared.guard import MAX_SIGNATURES
from shared.identity import Identity
from shared.interceptor import secure_channel
from shared.manifest import COORDINATOR
from shared.nonces import accepted_nonce
from shared.pb.cagnet.v1 import coordinator_pb2, coordinator_pb2_grpc, node_pb2, node_pb2_grpc
from shared.serde import envelope_from_proto, envelope_to_proto
from tests.netutil import (
    THREE,
    LiveNetwork,
    make_network,
    node_channel,
    node_stub,
    running,
    start_coordinator,
    start_node,
)

SUPPLY_MAP = "/cagnet.v1.Node/SupplyMap"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> LiveNetwork:
    return make_network(tmp_path_factory.mktemp("net"))


@pytest.fixture
def net(built: LiveNetwork) -> LiveNetwork:
    with running(LiveNetwork(built.netdir, built.nodedirs)) as live:
        yield live


def _chair(net: LiveNetwork) -> Identity:
    return Identity.load(network.principal_dir(net.netdir, "cag-chair"))


def test_joint_supply_map_combines_every_node(net: LiveNetwork) -> None:
    bundle, envelope = joint_query(net.netdir, kind="supply-map")
    assert bundle.answered == tuple(sorted(THREE))
    assert bundle.missing == ()
    # Capacity is exact; service counts are each authority's true count, consistently rounded to 5.
    for code in THREE:
        raw = supply_map(net.runtimes[code].engine, authority_code=code, by_district=False)
        released = next(a for a in bundle.result.authorities if a.authority == code)
        assert released.units == sum(c.units for c in raw.cells)
        true_services = sum(c.services for c in raw.cells)
        assert released.services is not None and released.services % 5 == 0
        assert abs(released.services - true_services) < 5
        assert released.annual_value is not None and released.annual_value > 0
        for row in bundle.result.client_groups:
            assert row.units[code] == sum(c.units for c in raw.cells if c.client_group == row.client_group)
    kent = next(a for a in bundle.result.authorities if a.authority == "E10000016")
    medway = next(a for a in bundle.result.authorities if a.authority == "E06000035")
    assert kent.units > medway.units > 0
    assert bundle.result.population == 1_464_000 + 264_000 + 273_000  # the register's 2011 figures
    assert bundle.policy_digest == network.read_policy(net.netdir).digest
    # Gaps: shortfalls against the CAG rate net to roughly zero across the authorities.
    for row in bundle.result.client_groups:
        assert abs(sum(row.shortfall.values())) <= len(THREE)
    assert bundle_mod.verify_bundle(envelope, network.read(net.netdir)) == bundle


def test_by_district_breakdown_sums_to_totals(net: LiveNetwork) -> None:
    bundle, _ = joint_query(net.netdir, kind="supply-map", by_district=True)
    plain, _ = joint_query(net.netdir, kind="supply-map")
    assert bundle.result.authorities == plain.result.authorities
    response = json.loads(json.dumps(bundle.model_dump(mode="json")))
    assert len(response["contributions"]) == 3


def test_stopped_node_is_missing_and_query_still_answers(net: LiveNetwork) -> None:
    net.stop_node("E06000043")
    bundle, envelope = joint_query(net.netdir, kind="supply-map", node_deadline_ms=2000)
    assert bundle.answered == ("E06000035", "E10000016")
    assert [m.authority for m in bundle.missing] == ["E06000043"]
    assert bundle.missing[0].reason == "unreachable"
    assert {a.authority for a in bundle.result.authorities} == {"E06000035", "E10000016"}
    bundle_mod.verify_bundle(envelope, network.read(net.netdir))


def test_hung_node_is_missing_after_its_deadline(net: LiveNetwork) -> None:
    # A host that accepts TCP connections and never speaks: the TLS handshake never completes.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        network.set_endpoint(net.netdir, "E06000035", f"127.0.0.1:{hung.getsockname()[1]}")
        # Long enough for the answering nodes on a loaded machine; the hung one never answers.
        bundle, _ = joint_query(net.netdir, kind="supply-map", node_deadline_ms=2000)
    assert [m.authority for m in bundle.missing] == ["E06000035"]
    assert bundle.missing[0].reason.startswith("no answer within the deadline")
    assert bundle.answered == ("E06000043", "E10000016")


def test_node_signing_with_the_wrong_key_is_rejected_by_the_coordinator(net: LiveNetwork, tmp_path: Path) -> None:
    # Medway's node signs with a key the manifest does not list: its answer must not be used.
    runtime = net.runtimes["E06000035"]
    right = runtime.identity
    wrong = Ed25519PrivateKey.generate()
    # The key file swapped as well as the key in use: a node whose key differs from the one its
    # manifest lists takes up the one in its folder (`NodeRuntime._follow_manifest`).
    key_file = runtime.config.identity_dir / "signing.key"
    original = key_file.read_bytes()
    keyfile.write_private_key(key_file, wrong)
    runtime._identity = Identity(right.party_id, wrong, right.tls_key_pem, right.tls_cert_pem, right.ca_cert_pem)
    try:
        bundle, _ = joint_query(net.netdir, kind="supply-map")
    finally:
        key_file.write_bytes(original)
        runtime._identity = right
    assert [m.authority for m in bundle.missing] == ["E06000035"]
    assert bundle.missing[0].reason == "response failed verification: bad signature"


def _tamper(envelope: dsse.Envelope, edit) -> dsse.Envelope:  # type: ignore[no-untyped-def]
    doc = json.loads(envelope.payload)
    edit(doc)
    return dsse.Envelope(envelope.payload_type, json.dumps(doc).encode(), envelope.signatures)


def test_saved_bundle_verifies_and_tampering_is_detected(net: LiveNetwork, tmp_path: Path) -> None:
    _, envelope = joint_query(net.netdir, kind="supply-map")
    path = tmp_path / "bundle.json"
    bundle_mod.save(path, envelope, network_dir=net.netdir)
    loaded, hint = bundle_mod.load(path)
    assert hint == net.netdir.resolve()
    manifest = network.read(net.netdir)
    bundle_mod.verify_bundle(loaded, manifest)

    # Any edit to the bundle breaks the coordinator's signature...
    edited = _tamper(loaded, lambda d: d["result"].update(units=d["result"]["units"] + 1))
    with pytest.raises(BadSignature):
        bundle_mod.verify_bundle(edited, manifest)

    # ...and a coordinator that re-signs a doctored result is caught by recomputation.
    coordinator = network.coordinator_identity(net.netdir)

    def resign(edit) -> dsse.Envelope:  # type: ignore[no-untyped-def]
        doc = json.loads(loaded.payload)
        edit(doc)
        payload = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        return dsse.sign(loaded.payload_type, payload, coordinator.signing_key)

    with pytest.raises(BundleMismatch):
        bundle_mod.verify_bundle(resign(lambda d: d["result"].update(units=d["result"]["units"] + 1)), manifest)

    # A contribution whose payload was altered no longer carries its node's signature.
    def alter_contribution(d: dict) -> None:  # type: ignore[type-arg]
        response = d["contributions"][0]["response"]
        raw = bytearray(dsse.Envelope.from_json(response).payload)
        raw[-1] ^= 0x01
        response["payload"] = dsse.Envelope(response["payloadType"], bytes(raw), ()).to_json()["payload"]

    with pytest.raises(BadSignature):
        bundle_mod.verify_bundle(resign(alter_contribution), manifest)

    # Dropping an authority from `answered` while keeping its contribution is caught.
    with pytest.raises(BundleMismatch):
        bundle_mod.verify_bundle(resign(lambda d: d.update(answered=d["answered"][1:])), manifest)

    # The coordinator's signatures on its requests are not checked one by one (the bundle's
    # signature covers them), so a re-signing coordinator could swap a request: the node's signed
    # answer names the digest of the request it answered, and the swap is caught there.
    def swap_request(d: dict) -> None:  # type: ignore[type-arg]
        request = dsse.Envelope.from_json(d["contributions"][0]["request"])
        message = node_pb2.SupplyMapRequest.FromString(request.payload)
        message.header.nonce = bytes(len(message.header.nonce))
        payload = message.SerializeToString(deterministic=True)
        d["contributions"][0]["request"] = dsse.sign(request.payload_type, payload, coordinator.signing_key).to_json()

    with pytest.raises(BadSignature, match="answers a different request"):
        bundle_mod.verify_bundle(resign(swap_request), manifest)

    # The live client hands over the query it has just sent: a bundle answering any other is refused.
    sent = dsse.Envelope.from_json(json.loads(loaded.payload)["query"])
    another = dsse.Envelope(sent.payload_type, sent.payload + b"\x00", sent.signatures)
    with pytest.raises(BundleMismatch, match="another query than the one just sent"):
        bundle_mod.verify_bundle(loaded, manifest, sent=another)
    assert bundle_mod.verify_bundle(loaded, manifest, sent=sent) == bundle_mod.verify_bundle(loaded, manifest)


# --- Requests sent straight to a node: every rejection has its own status -----------------------


def _node_stub(net: LiveNetwork, identity: Identity, code: str = "E06000035") -> node_pb2_grpc.NodeStub:
    return node_stub(net, identity, code)


def _supply_request(identity: Identity, *, audience: str = "E06000035", lifetime_s: int = 60) -> dsse.Envelope:
    header = request_header(identity, audience=audience, method=SUPPLY_MAP, lifetime_s=lifetime_s)
    return sign_message(node_pb2.SupplyMapRequest(header=header), identity)


def _call(stub: node_pb2_grpc.NodeStub, envelope: dsse.Envelope) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        stub.SupplyMap(envelope_to_proto(envelope), timeout=10)
    return info.value


def test_chair_may_ask_a_node_directly(net: LiveNetwork) -> None:
    chair = _chair(net)
    reply = _node_stub(net, chair).SupplyMap(envelope_to_proto(_supply_request(chair)), timeout=10)
    assert reply.signatures


def test_each_rejection_has_its_own_status_and_names_no_data(net: LiveNetwork) -> None:
    chair = _chair(net)
    stub = _node_stub(net, chair)

    replay = _supply_request(chair)
    stub.SupplyMap(envelope_to_proto(replay), timeout=10)
    error = _call(stub, replay)
    assert (error.code(), error.details()) == (grpc.StatusCode.ALREADY_EXISTS, "replayed request")

    error = _call(stub, _supply_request(chair, audience="E10000016"))
    assert (error.code(), error.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "wrong audience")

    expired = request_header(chair, audience="E06000035", method=SUPPLY_MAP)
    expired.issued_at_ms -= 600_000
    expired.expires_at_ms -= 600_000
    error = _call(stub, sign_message(node_pb2.SupplyMapRequest(header=expired), chair))
    assert (error.code(), error.details()) == (grpc.StatusCode.DEADLINE_EXCEEDED, "request expired")

    good = _supply_request(chair)
    forged = dsse.Envelope(good.payload_type, good.payload, (dsse.Signature(good.signatures[0].keyid, b"\x00" * 64),))
    error = _call(stub, forged)
    assert (error.code(), error.details()) == (grpc.StatusCode.UNAUTHENTICATED, "bad signature")

    stranger = Identity(
        "cag-chair", Ed25519PrivateKey.generate(), chair.tls_key_pem, chair.tls_cert_pem, chair.ca_cert_pem
    )
    error = _call(stub, _supply_request(stranger))
    assert (error.code(), error.details()) == (grpc.StatusCode.PERMISSION_DENIED, "unknown issuer")


def test_tls_peer_must_be_the_signer(net: LiveNetwork) -> None:
    # Signed correctly by Kent's node key, but sent over the chair's TLS connection.
    chair = _chair(net)
    kent = Identity.load(net.nodedirs["E10000016"] / "identity")
    error = _call(_node_stub(net, chair), _supply_request(kent))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    assert error.details() == "the TLS peer certificate does not match the envelope's signer"


def test_coordinator_may_not_ask_for_an_aggregate_on_its_own_account(net: LiveNetwork) -> None:
    coordinator = network.coordinator_identity(net.netdir)
    error = _call(_node_stub(net, coordinator), _supply_request(coordinator))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "coordinator" in error.details()


def test_forwarded_query_must_match_the_aggregate(net: LiveNetwork) -> None:
    chair, coordinator = _chair(net), network.coordinator_identity(net.netdir)
    inner = coordinator_pb2.JointQueryRequest(
        header=request_header(chair, audience="coordinator", method="/cagnet.v1.Coordinator/JointQuery"),
        kind="vfm",
    )
    header = request_header(
        coordinator, audience="E06000035", method=SUPPLY_MAP, on_behalf_of=sign_message(inner, chair)
    )
    error = _call(_node_stub(net, coordinator), sign_message(node_pb2.SupplyMapRequest(header=header), coordinator))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def _forwarded(net: LiveNetwork, inner_envelope: dsse.Envelope, **fields: object) -> dsse.Envelope:
    coordinator = network.coordinator_identity(net.netdir)
    header = request_header(coordinator, audience="E06000035", method=SUPPLY_MAP, on_behalf_of=inner_envelope)
    return sign_message(node_pb2.SupplyMapRequest(header=header, **fields), coordinator)  # type: ignore[arg-type]


def _chair_query(net: LiveNetwork, **fields: object) -> dsse.Envelope:
    chair = _chair(net)
    header = request_header(chair, audience="coordinator", method="/cagnet.v1.Coordinator/JointQuery")
    return sign_message(coordinator_pb2.JointQueryRequest(header=header, kind="supply-map", **fields), chair)  # type: ignore[arg-type]


def test_coordinator_may_not_change_the_principals_question(net: LiveNetwork) -> None:
    # The chair asked for the whole map; a coordinator narrowing it to group 14 in their name is refused.
    stub = _node_stub(net, network.coordinator_identity(net.netdir))
    error = _call(stub, _forwarded(net, _chair_query(net), client_groups=[14]))
    assert (error.code(), error.details()) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "the forwarded request asked a different question from the principal's",
    )
    error = _call(stub, _forwarded(net, _chair_query(net, client_groups=[7]), by_district=False))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED


def test_coordinator_may_not_reuse_a_principals_query_at_the_same_node(net: LiveNetwork) -> None:
    stub = _node_stub(net, network.coordinator_identity(net.netdir))
    query = _chair_query(net)
    stub.SupplyMap(envelope_to_proto(_forwarded(net, query)), timeout=10)
    error = _call(stub, _forwarded(net, query))  # a fresh outer nonce, the same principal query
    assert (error.code(), error.details()) == (grpc.StatusCode.ALREADY_EXISTS, "replayed request")


def _restart_node(net: LiveNetwork, code: str) -> None:
    """Stop the node's server and close its store, then serve it again on the same database: a
    new process would start with nothing in memory, and so does this runtime."""
    net.servers.pop(code).stop(grace=None).wait()
    net.runtimes.pop(code).engine.dispose()
    start_node(net, code)


def test_a_replay_after_a_restart_is_still_refused(net: LiveNetwork) -> None:
    """A request answered just before the node restarted, replayed byte for byte within its
    lifetime, gets the typed replay refusal; so does the coordinator asking again in a principal's
    name with a fresh outer nonce (each principal query once per method, across restarts)."""
    chair = _chair(net)
    request = _supply_request(chair)
    _node_stub(net, chair).SupplyMap(envelope_to_proto(request), timeout=10)
    query = _chair_query(net)
    coordinator_stub = _node_stub(net, network.coordinator_identity(net.netdir))
    coordinator_stub.SupplyMap(envelope_to_proto(_forwarded(net, query)), timeout=10)

    _restart_node(net, "E06000035")

    error = _call(_node_stub(net, chair), request)
    assert (error.code(), error.details()) == (grpc.StatusCode.ALREADY_EXISTS, "replayed request")
    error = _call(_node_stub(net, network.coordinator_identity(net.netdir)), _forwarded(net, query))
    assert (error.code(), error.details()) == (grpc.StatusCode.ALREADY_EXISTS, "replayed request")
    # A fresh request is answered as ever.
    assert _node_stub(net, chair).SupplyMap(envelope_to_proto(_supply_request(chair)), timeout=10).signatures


def _ask_coordinator(net: LiveNetwork, identity: Identity, envelope: dsse.Envelope) -> dsse.Envelope:
    with secure_channel(
        network.read(net.netdir).coordinator_endpoint,
        peer_party_id=COORDINATOR,
        ca_pem=identity.ca_cert_pem,
        key_pem=identity.tls_key_pem,
        cert_pem=identity.tls_cert_pem,
    ) as channel:
        reply = coordinator_pb2_grpc.CoordinatorStub(channel).JointQuery(envelope_to_proto(envelope), timeout=30)
    return envelope_from_proto(reply)


def test_an_answered_joint_query_is_audited_with_its_nonce_and_refused_when_replayed_after_a_restart(
    net: LiveNetwork,
) -> None:
    """The coordinator stores a joint query's nonce in the transaction of its audit entry: once the
    bundle has left, both are in its database, so a coordinator started afresh refuses the replay."""
    chair = _chair(net)
    query = _chair_query(net)
    bundle = _ask_coordinator(net, chair, query)
    assert bundle_mod.verify_bundle(bundle, network.read(net.netdir)).answered == tuple(sorted(THREE))
    assert net.coordinator is not None
    engine = net.coordinator.audit.engine
    last = audit.entries(engine)[-1]
    assert (last.principal, last.method, last.decision) == ("cag-chair", JOINT_QUERY, "released")
    assert last.release_digest == audit.digest_of(bundle.payload)
    nonce = coordinator_pb2.JointQueryRequest.FromString(query.payload).header.nonce
    with engine.connect() as conn:
        stored = conn.execute(
            select(accepted_nonce.c.nonce_digest).where(
                accepted_nonce.c.nonce_digest == hashlib.sha256(nonce).hexdigest()
            )
        ).all()
    assert len(stored) == 1

    net.servers.pop(COORDINATOR).stop(grace=None).wait()
    net.coordinator.close()
    start_coordinator(net)

    with pytest.raises(grpc.RpcError) as replayed:
        _ask_coordinator(net, chair, query)
    assert (replayed.value.code(), replayed.value.details()) == (grpc.StatusCode.ALREADY_EXISTS, "replayed request")
    assert audit.verify_chain(net.coordinator.audit.engine) == len(audit.entries(net.coordinator.audit.engine))


def test_audit_log_records_releases_and_rejections(net: LiveNetwork) -> None:
    engine = net.runtimes["E06000035"].engine
    before = len(audit.entries(engine))
    joint_query(net.netdir, kind="supply-map")
    chair = _chair(net)
    _call(_node_stub(net, chair), _supply_request(chair, audience="E10000016"))
    new = audit.entries(engine)[before:]
    assert [(e.principal, e.via, e.decision) for e in new] == [
        ("cag-chair", "coordinator", "released"),
        ("cag-chair", "", "rejected: wrong audience"),
    ]
    assert new[0].release_digest.startswith("sha256:")
    audit.verify_chain(engine)


def test_concurrent_joint_queries(net: LiveNetwork) -> None:
    results: list[int] = []

    def run() -> None:
        bundle, _ = joint_query(net.netdir, kind="supply-map")
        results.append(len(bundle.answered))

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [3] * 6


def test_a_node_refuses_many_signatures_and_garbage_before_trying_a_signature(
    net: LiveNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    chair = _chair(net)
    stub = node_stub(net, chair, "E10000016")
    header = request_header(chair, audience="E10000016", method=SUPPLY_MAP)
    envelope = sign_message(node_pb2.SupplyMapRequest(header=header), chair)
    bogus = tuple(dsse.Signature(keyid=f"k{i}", sig=bytes(64)) for i in range(MAX_SIGNATURES))
    many = envelope_to_proto(dsse.Envelope(envelope.payload_type, envelope.payload, (*bogus, *envelope.signatures)))
    before = len(audit.entries(net.runtimes["E10000016"].engine))
    with pytest.raises(grpc.RpcError) as refused:
        stub.SupplyMap(many, timeout=10)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details() == f"an envelope carries at most {MAX_SIGNATURES} signatures"
    # The same request with its one good signature is answered: the count alone refused it.
    assert stub.SupplyMap(envelope_to_proto(envelope), timeout=10).payload
    # A body that is not an envelope: a typed refusal and one log line, not gRPC's traceback.
    with (
        node_channel(net, chair, "E10000016") as channel,
        caplog.at_level("INFO"),
        pytest.raises(grpc.RpcError) as malformed,
    ):
        channel.unary_unary(SUPPLY_MAP)(b"\xff\xfe not a protobuf", timeout=10)
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not [r for r in caplog.records if r.exc_info or "deserializing" in r.getMessage()]
    assert any("malformed request" in r.getMessage() for r in caplog.records)
    # Neither was written as a row of its own: they wait for the minute's summary.
    assert len(audit.entries(net.runtimes["E10000016"].engine)) == before + 1
