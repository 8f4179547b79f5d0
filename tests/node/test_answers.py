"""A node's answers as plain functions, with no server and no channel: a verified request in, the
response message out. The store is a real node's (a three-member network's synthetic Kent), the
policy the default one; what a parameter asks for is what the answer says it answered."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from node.answers.kinds import ANSWERS, DESCRIBE, NodeParts
from node.config import load_config
from node.rpc.server import NodeRuntime
from shared import dsse
from shared.auth import Verified, contribution_digest, open_signed
from shared.errors import DisclosureRefused, InvalidRequest, NotPermitted
from shared.kinds.registry import KINDS, PLAN_KINDS
from shared.manifest import Party
from shared.pb.cagnet.v1 import coordinator_pb2, envelope_pb2, node_pb2
from shared.policy import default_policy
from shared.serde import envelope_from_proto
from tests.netutil import THREE, make_network

KENT, MEDWAY, BRIGHTON = THREE
POLICY = default_policy()
DIGEST = hashlib.sha256(b"the principal's signed request").digest()


@pytest.fixture(scope="module")
def kent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeParts]:
    net = make_network(tmp_path_factory.mktemp("answers"), clients=1500)
    runtime = NodeRuntime.open(load_config(net.nodedirs[KENT]))
    yield NodeParts(
        authority=KENT,
        engine=runtime.engine,
        releaser=runtime.releaser,
        identity=lambda: runtime.identity,
        manifests=runtime.manifests,
        linkage_key_path=Path(runtime.config.linkage_key_path),
        person_key_path=Path(runtime.config.person_key_path),
    )
    runtime.engine.dispose()


def _party(node: NodeParts, party_id: str) -> Party:
    return node.manifests.current().party(party_id)


def _asked(node: NodeParts, message: Any, *, by: str = MEDWAY, forwarded: str = "") -> Verified[Any]:
    """A request as the interceptor hands it on once verified: `by` asks, directly or (with
    `forwarded`, the joint query kind) through the coordinator."""
    principal = _party(node, by)
    if not forwarded:
        return Verified(issuer=principal, message=message, request_digest=DIGEST, principal=principal)
    query = coordinator_pb2.JointQueryRequest(
        header=envelope_pb2.RequestHeader(issuer=by, nonce=b"analysis-0001"), kind=forwarded
    )
    return Verified(
        issuer=_party(node, "coordinator"),
        message=message,
        request_digest=DIGEST,
        principal=principal,
        principal_request=query,
    )


def test_describe_advertises_every_kind_of_the_registry(kent: NodeParts) -> None:
    described = ANSWERS[DESCRIBE].answer(kent, POLICY, _asked(kent, node_pb2.DescribeRequest()))
    assert described.authority == KENT and described.name == "Kent"
    assert tuple(described.capabilities) == tuple(KINDS)
    assert described.header.request_digest == DIGEST and described.header.policy_digest == POLICY.digest


def test_a_net_flow_answer_follows_its_parameters_and_carries_a_receipt(kent: NodeParts) -> None:
    asked = node_pb2.RecordsQuery(from_date="2009-04-01", to_date="2010-03-31", period="year", client_groups=[7])
    counts = ANSWERS[KINDS["net-flow"].method].answer(kent, POLICY, _asked(kent, asked))
    assert (counts.kind, counts.from_date, counts.to_date, list(counts.client_groups)) == (
        "net-flow",
        "2009-04-01",
        "2010-03-31",
        [7],
    )
    assert list(counts.dimensions) == ["origin", "client_group"]
    groups = {c.key[1] for c in counts.cells}
    assert "7" in groups and not groups - {"7", "*"}  # the filter asked for single homeless people
    origins = {c.key[0] for c in counts.cells}
    assert origins & {KENT, "outside"}
    released = [c.count for c in counts.cells if c.HasField("count")]
    assert released and all(v % 5 == 0 and not 1 <= v <= 7 for v in released)
    # The receipt the feed carries instead of the figures: signed by Kent, over exactly this table.
    receipt = open_signed(envelope_from_proto(counts.receipt), node_pb2.ContributionReceipt, _party(kent, KENT))
    assert receipt.response_digest == contribution_digest(counts)


def test_a_records_question_with_bad_dates_is_refused_naming_the_field(kent: NodeParts) -> None:
    asked = node_pb2.RecordsQuery(from_date="2010-03-31", to_date="2009-04-01")
    with pytest.raises(InvalidRequest, match="to_date"):
        ANSWERS[KINDS["movement"].method].answer(kent, POLICY, _asked(kent, asked))


def test_a_role_the_policy_does_not_allow_is_refused_by_the_answer_itself(kent: NodeParts) -> None:
    # A regional board may ask for CAG-level feeds only (the default policy), never a node's KPI.
    board = _party(kent, MEDWAY).model_copy(update={"id": "regional-board", "roles": ("regional-board",)})
    asked = node_pb2.RecordsQuery(period="year")
    board_asks = Verified(issuer=board, message=asked, request_digest=DIGEST, principal=board)
    with pytest.raises(NotPermitted):
        ANSWERS[KINDS["kpi"].method].answer(kent, POLICY, board_asks)


def test_a_plan_lists_every_planned_kind_without_a_figure(kent: NodeParts) -> None:
    asked = node_pb2.RecordsQuery(from_date="2008-04-01", to_date="2009-03-31", client_groups=[14])
    plan = ANSWERS[KINDS["plan"].method].answer(kent, POLICY, _asked(kent, asked))
    assert {q.kind for q in plan.questions} == set(PLAN_KINDS)
    assert {tuple(q.client_groups) for q in plan.questions} == {(), (14,)}
    assert not any(f.name.startswith("count") for f in node_pb2.PlannedQuestion.DESCRIPTOR.fields)


def test_vfm_masks_only_over_every_member(kent: NodeParts) -> None:
    members = sorted(THREE)
    vfm = KINDS["vfm"]
    answer = ANSWERS[vfm.method].answer
    short = node_pb2.VfmQuery(client_groups=[7], participants=members[:2])
    with pytest.raises(DisclosureRefused, match="every member authority"):
        answer(kent, POLICY, _asked(kent, short, forwarded=vfm.kind))
    full = node_pb2.VfmQuery(client_groups=[7], participants=members)
    masked = answer(kent, POLICY, _asked(kent, full, forwarded=vfm.kind))
    receipt = open_signed(envelope_from_proto(masked.receipt), node_pb2.VfmReceipt, _party(kent, KENT))
    assert list(receipt.participants) == members and receipt.key_check == masked.key_check
    # The masks hide the node's own histogram: the same question under another analysis differs.
    other = _asked(kent, full, forwarded=vfm.kind)
    other.principal_request.header.nonce = b"analysis-0002"  # type: ignore[union-attr]
    assert list(answer(kent, POLICY, other).masked) != list(masked.masked)


def test_provider_tokens_are_committed_to_and_differ_by_analysis(kent: NodeParts) -> None:
    spec = KINDS["common-providers"]
    answer = ANSWERS[spec.methods[0]].answer
    asked = _asked(kent, node_pb2.ProvidersQuery(), forwarded=spec.kind)
    first = answer(kent, POLICY, asked)
    commitment = open_signed(envelope_from_proto(first.commitment), node_pb2.ProviderCommitment, _party(kent, KENT))
    assert commitment.size == len(first.tokens) > 0 and commitment.analysis == b"analysis-0001"
    # Revealing with no other member's evidence reveals nothing: a provider only Kent holds stays hidden.
    reveal = node_pb2.RevealRequest(tokens=list(first.tokens)[:3])
    revealed = ANSWERS[spec.method].answer(kent, POLICY, _asked(kent, reveal, forwarded=spec.kind))
    assert list(revealed.providers) == []


def test_every_answer_is_signed_as_the_message_it_returns(kent: NodeParts) -> None:
    message = ANSWERS[DESCRIBE].answer(kent, POLICY, _asked(kent, node_pb2.DescribeRequest()))
    envelope = envelope_from_proto(kent.sign(message))
    assert dsse.verify(envelope, _party(kent, KENT).public_key) == message.SerializeToString(deterministic=True)


@pytest.mark.parametrize("kind", ["kpi1", "utilisation"])
def test_the_quarterly_return_answers_follow_their_parameters_and_carry_a_receipt(kent: NodeParts, kind: str) -> None:
    asked = node_pb2.RecordsQuery(from_date="2009-04-01", to_date="2010-03-31", period="all")
    counts = ANSWERS[KINDS[kind].method].answer(kent, POLICY, _asked(kent, asked))
    assert (counts.kind, counts.authority, counts.from_date, counts.to_date) == (kind, KENT, "2009-04-01", "2010-03-31")
    dimensions = ("client_group", "living") if kind == "kpi1" else ("client_group", "service_type", "state")
    assert tuple(counts.dimensions) == dimensions
    assert any(c.HasField("count") and c.count > 0 for c in counts.cells)
    assert counts.HasField("receipt") and counts.header.request_digest == DIGEST
