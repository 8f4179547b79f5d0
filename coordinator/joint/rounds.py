"""Joint queries that take more than one plain fan-out: common providers (tokens, then reveals
with evidence) and value-for-money benchmarks (masked histograms that only add up over every
member). What the coordinator holds in between lives only in these calls: never logged, stored,
or put in the bundle. docs/providers.md and docs/vfm.md have the protocols.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from coordinator.joint.fanout import Contribution, Missing, NodeClients, fan_out
from shared import dsse, merkle, vfm
from shared.auth import digest, forwarded_request, request_header, verify_response
from shared.errors import CagnetError, DisclosureRefused
from shared.identity import Identity
from shared.kinds.providers import VfmBenchmarks
from shared.kinds.registry import JointKind
from shared.linkage import token_root
from shared.manifest import Manifest
from shared.pb.cagnet.v1 import coordinator_pb2, envelope_pb2, node_pb2
from shared.policy import AggregateRule, Policy
from shared.serde import envelope_from_proto, envelope_to_proto

__all__ = ["Round", "common_providers", "vfm_benchmarks"]


@dataclass(frozen=True)
class Round:
    """What every round needs: who asks, on whose behalf, under which policy, how long to wait."""

    clients: NodeClients
    identity: Identity
    manifest: Manifest
    policy: Policy
    rule: AggregateRule
    query_envelope: dsse.Envelope
    query: coordinator_pb2.JointQueryRequest
    deadline_s: float

    @functools.cached_property
    def _on_behalf_of(self) -> envelope_pb2.Envelope:
        return envelope_to_proto(self.query_envelope)  # converted once, copied into every member's header

    def header(self, audience: str, method: str) -> envelope_pb2.RequestHeader:
        return request_header(
            self.identity,
            audience=audience,
            method=method,
            on_behalf_of=self._on_behalf_of,
            policy_digest=self.policy.digest,
        )

    def ask(
        self, members: tuple[Any, ...], rpc: str, build: Callable[[Any], Any], response_cls: type[Any]
    ) -> tuple[list[Contribution], list[Missing]]:
        answered, missing = fan_out(
            self.clients,
            self.identity,
            members,
            rpc=rpc,
            build=build,
            response_cls=response_cls,
            deadline_s=self.deadline_s,
        )
        for c in list(answered):
            if c.message.header.policy_digest != self.policy.digest:
                answered.remove(c)
                missing.append(Missing(c.authority, "answered under a different network policy"))
        return answered, missing


def _majority_key(answered: list[Contribution], missing: list[Missing]) -> list[Contribution]:
    checks = Counter(c.message.key_check for c in answered)
    common = checks.most_common(1)[0][0] if checks else ""
    for c in answered:
        if c.message.key_check != common:
            missing.append(Missing(c.authority, "it holds a different network linkage key"))
    return [c for c in answered if c.message.key_check == common]


# --- common providers ----------------------------------------------------------------------------


def common_providers(r: Round, spec: JointKind) -> tuple[list[Contribution], list[Missing]]:
    """Round 1: every member's tokens and signed commitment. Then, for each token held by at least
    the policy's minimum of authorities, ask each holder to reveal it, with the other holders'
    commitments and inclusion proofs as evidence. Returns the reveals (round 2's answers)."""
    tokens_method = f"/cagnet.v1.Node/{spec.first_rpc}"
    first, missing = r.ask(
        r.manifest.members,
        spec.first_rpc,
        lambda m: forwarded_request(node_pb2.ProvidersQuery, r.header(m.id, tokens_method), r.query),
        node_pb2.ProviderTokensResponse,
    )
    lists: dict[str, tuple[list[bytes], envelope_pb2.Envelope]] = {}
    good = []
    for c in first:
        try:
            commitment = verify_response(
                envelope_from_proto(c.message.commitment),
                node_pb2.ProviderCommitment,
                signer=r.manifest.party(c.authority),
                request_digest=digest(c.request.payload),
            )
        except CagnetError:
            missing.append(Missing(c.authority, "its commitment to its provider tokens failed verification"))
            continue
        tokens = list(c.message.tokens)
        if (
            commitment.root != token_root(tokens)
            or commitment.size != len(tokens)
            or commitment.analysis != r.query.header.nonce
            or commitment.key_check != c.message.key_check
            or tokens != sorted(set(tokens))
        ):
            missing.append(Missing(c.authority, "its commitment does not match the provider tokens it sent"))
            continue
        good.append(c)
    for c in _majority_key(good, missing):
        lists[c.authority] = (list(c.message.tokens), c.message.commitment)
    holders: dict[bytes, list[str]] = {}
    for authority, (tokens, _) in lists.items():
        for token in tokens:
            holders.setdefault(token, []).append(authority)
    common = {t: h for t, h in holders.items() if len(h) >= r.rule.min_authorities}
    holders.clear()  # the other tokens go no further than this line
    position = {a: {t: i for i, t in enumerate(tokens)} for a, (tokens, _) in lists.items()}
    leaves = {a: [merkle.leaf_hash(t) for t in tokens] for a, (tokens, _) in lists.items()}
    order = sorted(lists)

    def build(member: Any) -> node_pb2.RevealRequest:
        mine = sorted(t for t, h in common.items() if member.id in h)
        request = node_pb2.RevealRequest(header=r.header(member.id, spec.method), tokens=mine)
        others = sorted({a for t in mine for a in common[t] if a != member.id}, key=order.index)
        index = {a: i for i, a in enumerate(others)}
        request.commitments.extend(lists[a][1] for a in others)
        for token in mine:
            for holder in sorted(common[token]):
                if holder == member.id:
                    continue
                at = position[holder][token]
                request.evidence.add(
                    token=token,
                    commitment=index[holder],
                    index=at,
                    proof=merkle.inclusion_proof(leaves[holder], at),
                )
        return request

    members = tuple(r.manifest.party(a) for a in order)
    answered, more_missing = r.ask(members, spec.rpc, build, spec.response_cls)
    return answered, missing + more_missing


# --- value for money -----------------------------------------------------------------------------


def vfm_benchmarks(r: Round, spec: JointKind) -> tuple[list[Contribution], list[Missing], VfmBenchmarks]:
    """Ask every member for its masked histograms over the same participant set (every member in
    the manifest), check each receipt, and sum. The masks cancel only if every participant
    answered, so one missing node fails the whole query, naming it."""
    participants = sorted(p.id for p in r.manifest.members)

    def build(member: Any) -> node_pb2.VfmQuery:
        request = forwarded_request(
            node_pb2.VfmQuery, r.header(member.id, spec.method), r.query, filled_in=spec.filled_in
        )
        request.participants.extend(participants)
        return request

    answered, missing = r.ask(r.manifest.members, spec.rpc, build, spec.response_cls)
    good = []
    for c in answered:
        try:
            receipt = verify_response(
                envelope_from_proto(c.message.receipt),
                node_pb2.VfmReceipt,
                signer=r.manifest.party(c.authority),
                request_digest=digest(c.request.payload),
            )
        except CagnetError:
            missing.append(Missing(c.authority, "its receipt for the masked histogram failed verification"))
            continue
        if (
            receipt.masked_digest != vfm.masks_digest(c.message.masked)
            or list(receipt.participants) != participants
            or receipt.key_check != c.message.key_check
        ):
            missing.append(Missing(c.authority, "its receipt does not match the masked histogram it sent"))
            continue
        good.append(c)
    answered = _majority_key(good, missing)
    if missing:
        by_reason = "; ".join(f"{m.authority}: {m.reason}" for m in sorted(missing, key=lambda m: m.authority))
        raise DisclosureRefused(
            f"secure aggregation: the masks cancel only when every member answers, and some did not ({by_reason})"
        )
    selected = vfm.cells(r.query.client_groups, r.query.service_type)
    total = [0] * vfm.vector_length(selected)
    for c in answered:
        if len(c.message.masked) != len(total):
            raise DisclosureRefused("secure aggregation: a node's vector does not fit the question")
        for i, v in enumerate(c.message.masked):
            total[i] = (total[i] + v) % vfm.MODULUS
    if any(v > len(answered) * 10**9 for v in total):
        # Counts of services are small: a huge sum means the masks did not cancel.
        raise DisclosureRefused("secure aggregation: the masks did not cancel")
    result = VfmBenchmarks(
        authorities=tuple(sorted(c.authority for c in answered)),
        client_groups=tuple(sorted(set(r.query.client_groups))),
        service_type=r.query.service_type,
        cells=vfm.benchmark(selected, total, r.rule),
    )
    return answered, missing, result
