"""The signed network policy across a real network: nodes refuse to start without one, stamp its
digest on every answer, refuse requests made under another one, pick up a new revision, and the
coordinator and `cagnet verify` refuse to mix policies. Differencing and refusals through gRPC
are audited at the node with who asked and the rule."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from coordinator import network
from coordinator.joint import bundle as bundle_mod
from coordinator.joint.client import Refused, joint_query
from node.answers.supply import supply_map
from node.config import load_config
from node.rpc.server import NodeRuntime
from shared import audit, dsse
from shared.auth import open_signed, request_header, sign_message
from shared.errors import BundleMismatch, Unavailable
from shared.identity import Identity
from shared.pb.cagnet.v1 import node_pb2, node_pb2_grpc
from shared.policy import PolicySource, default_policy_toml, sign_policy
from shared.serde import envelope_to_proto
from tests.netutil import LiveNetwork, make_network, node_stub, running

SUPPLY_MAP = "/cagnet.v1.Node/SupplyMap"
MEDWAY, KENT, BRIGHTON = "E06000035", "E10000016", "E06000043"


def _revision(n: int, *, supply_roles: str = '["member-authority", "cag-chair"]', threshold: int = 7) -> bytes:
    text = default_policy_toml().decode()
    text = text.replace("revision = 1 ", f"revision = {n} ", 1)
    text = text.replace("threshold = 7 ", f"threshold = {threshold} ", 1)
    head, _, rest = text.partition("[aggregates.supply-map]\nroles = ")
    rest = rest.split("\n", 1)[1]
    return f"{head}[aggregates.supply-map]\nroles = {supply_roles}\n{rest}".encode()


@pytest.fixture
def net(tmp_path: Path) -> Iterator[LiveNetwork]:
    with running(make_network(tmp_path, (KENT, MEDWAY, BRIGHTON))) as live:
        yield live


def _chair(net: LiveNetwork) -> Identity:
    return Identity.load(network.principal_dir(net.netdir, "cag-chair"))


def _stub(net: LiveNetwork, identity: Identity, code: str = MEDWAY) -> node_pb2_grpc.NodeStub:
    return node_stub(net, identity, code)


def _ask(net: LiveNetwork, *, policy_digest: str, client_groups: tuple[int, ...] = ()) -> node_pb2.SupplyMapResponse:
    chair = _chair(net)
    header = request_header(chair, audience=MEDWAY, method=SUPPLY_MAP, policy_digest=policy_digest)
    request = sign_message(node_pb2.SupplyMapRequest(header=header, client_groups=client_groups), chair)
    reply = _stub(net, chair).SupplyMap(envelope_to_proto(request), timeout=10)
    envelope = dsse.Envelope(reply.payload_type, reply.payload, ())
    message = node_pb2.SupplyMapResponse()
    message.ParseFromString(envelope.payload)
    return message


def test_every_answer_carries_the_digest_of_the_policy_applied(net: LiveNetwork) -> None:
    digest = network.read_policy(net.netdir).digest
    assert digest.startswith("sha256:") and len(digest) == 71
    bundle, _ = joint_query(net.netdir, kind="supply-map")
    assert bundle.policy_digest == digest
    manifest = network.read(net.netdir)
    for c in bundle.contributions:
        response = open_signed(
            dsse.Envelope.from_json(c.response), node_pb2.SupplyMapResponse, manifest.party(c.authority)
        )
        assert response.header.policy_digest == digest
    assert _ask(net, policy_digest=digest).header.policy_digest == digest


def test_a_request_under_another_policy_is_refused_and_audited(net: LiveNetwork) -> None:
    engine = net.runtimes[MEDWAY].engine
    with pytest.raises(grpc.RpcError) as info:
        _ask(net, policy_digest="sha256:" + "0" * 64)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details() == "stale policy: the request was made under a different network policy"
    last = audit.entries(engine)[-1]
    assert (last.principal, last.decision) == ("cag-chair", f"refused: {info.value.details()}")
    assert last.release_digest == ""
    assert audit.verify_chain(engine) == len(audit.entries(engine))


def test_a_new_revision_is_picked_up_and_old_requests_become_stale(net: LiveNetwork) -> None:
    old = network.read_policy(net.netdir).digest
    new = network.set_policy(net.netdir, _revision(2, threshold=8)).digest
    assert new != old
    bundle, _ = joint_query(net.netdir, kind="supply-map")
    assert bundle.policy_digest == new and len(bundle.answered) == 3
    with pytest.raises(grpc.RpcError) as info:
        _ask(net, policy_digest=old)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    with pytest.raises(Exception, match="revision: must be above the current revision 2"):
        network.set_policy(net.netdir, _revision(2))


def test_a_role_the_policy_no_longer_permits_is_refused_by_coordinator_and_node(net: LiveNetwork) -> None:
    policy = network.set_policy(net.netdir, _revision(2, supply_roles='["member-authority"]'))
    with pytest.raises(Refused) as info:
        joint_query(net.netdir, kind="supply-map")
    assert info.value.code == grpc.StatusCode.PERMISSION_DENIED

    with pytest.raises(grpc.RpcError) as direct:
        _ask(net, policy_digest=policy.digest)
    assert direct.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert direct.value.details() == "the network policy does not let 'cag-chair' ask for 'supply-map'"
    last = audit.entries(net.runtimes[MEDWAY].engine)[-1]
    assert last.decision == f"refused: {direct.value.details()}"


def test_a_node_applying_another_policy_is_missing_not_mixed_in(net: LiveNetwork, tmp_path: Path) -> None:
    # Medway's node applies a validly signed policy the network has not published.
    coordinator = network.coordinator_identity(net.netdir)
    other = tmp_path / "other-policy.json"
    other.write_text(json.dumps(sign_policy(_revision(5, threshold=9), coordinator.signing_key)))
    net.runtimes[MEDWAY].policies = PolicySource(other, coordinator.public_key)

    bundle, envelope = joint_query(net.netdir, kind="supply-map")
    assert bundle.answered == tuple(sorted((BRIGHTON, KENT)))
    [missing] = bundle.missing
    assert missing.authority == MEDWAY and "stale policy" in missing.reason
    bundle_mod.verify_bundle(envelope, network.read(net.netdir))


def test_a_bundle_claiming_another_policy_fails_verification(net: LiveNetwork) -> None:
    _, envelope = joint_query(net.netdir, kind="supply-map")
    doc = json.loads(envelope.payload)
    doc["policy_digest"] = "sha256:" + "1" * 64
    payload = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    resigned = dsse.sign(envelope.payload_type, payload, network.coordinator_identity(net.netdir).signing_key)
    with pytest.raises(BundleMismatch, match="policy"):
        bundle_mod.verify_bundle(resigned, network.read(net.netdir))


def test_a_node_without_a_valid_policy_does_not_start(net: LiveNetwork, tmp_path: Path) -> None:
    config = load_config(net.nodedirs[MEDWAY])
    policy_file = network.policy_path(net.netdir)
    good = policy_file.read_bytes()

    policy_file.unlink()
    with pytest.raises(Unavailable, match="no valid network policy"):
        NodeRuntime.open(config)

    # Signed by a key the node does not trust (a forged policy) is no better than none.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    policy_file.write_text(json.dumps(sign_policy(default_policy_toml(), Ed25519PrivateKey.generate())))
    with pytest.raises(Unavailable, match="no valid network policy"):
        NodeRuntime.open(config)

    # A running node that loses its policy serves nothing, rather than an old policy.
    with pytest.raises(grpc.RpcError) as info:
        _ask(net, policy_digest="")
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details() == "no valid network policy"
    policy_file.write_bytes(good)


def test_differencing_by_one_more_client_group_is_refused_through_the_network(net: LiveNetwork) -> None:
    # What the attacker would learn: the services for women at risk of domestic violence (group
    # 14) in each authority, as the difference between two joint queries.
    group14 = {
        code: sum(
            c.services
            for c in supply_map(rt.engine, authority_code=code, by_district=False).cells
            if c.client_group == 14
        )
        for code, rt in net.runtimes.items()
    }
    first, _ = joint_query(net.netdir, kind="supply-map", client_groups=range(1, 14))
    assert first.answered == tuple(sorted((BRIGHTON, KENT, MEDWAY)))
    try:
        second, _ = joint_query(net.netdir, kind="supply-map", client_groups=range(1, 15))
        refused = {m.authority for m in second.missing if "differencing" in m.reason}
    except Refused as exc:
        # Every node refused, so the coordinator has nothing to combine; it says why, with no figures.
        assert exc.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "differencing" in exc.public_message
        refused = {code for code in net.runtimes if code in exc.public_message}
    few = {code for code, n in group14.items() if 1 <= n <= 10}
    assert few, "the synthetic data should give some authority a handful of refuge services"
    assert few <= refused
    for code in refused:
        last = audit.entries(net.runtimes[code].engine)[-1]
        assert last.decision.startswith("refused: differencing")
        assert not any(ch.isdigit() for ch in last.decision)
        assert json.loads(last.parameters)["client_groups"] == list(range(1, 15))
