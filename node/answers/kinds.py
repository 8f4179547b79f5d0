"""Each node method's answer as a plain function: the node's pieces, the policy and the verified
request in, the response message out. No transport here: `node.rpc.server` authenticates, calls
the answer its method maps to in `ANSWERS`, signs and audits; tests call these directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf.message import DecodeError
from sqlalchemy.engine import Engine

from node.answers import linkage, providers, service, vfm
from node.answers.currency import records_currency
from node.answers.movement import Question, check_question
from node.client_records import PersonSealer, load_person_key
from node.release import Releaser
from shared import vfm as vfm_layout
from shared import vocabulary
from shared.auth import Verified, attach_receipt, open_signed, response_header, sign_message
from shared.authorities import register_of
from shared.errors import CagnetError, DisclosureRefused, InvalidRequest, NotPermitted, StalePolicy
from shared.identity import Identity
from shared.kinds.equality import check_cross_tab
from shared.kinds.fair_shares import fair_shares_to_proto
from shared.kinds.registry import KINDS, NODE_METHOD_PREFIX
from shared.kinds.spend import spend_to_proto
from shared.kinds.supply import as_at_day
from shared.manifest import MEMBER_AUTHORITY, ManifestSource
from shared.models import RecordsQuestion, SupplyMap
from shared.pb.cagnet.v1 import coordinator_pb2, envelope_pb2, node_pb2
from shared.policy import Policy
from shared.serde import (
    count_table_to_proto,
    description_to_proto,
    envelope_from_proto,
    envelope_to_proto,
    non_local_services_to_proto,
    plan_to_proto,
    records_question_from_proto,
    supply_map_to_proto,
)

__all__ = ["ANSWERS", "DESCRIBE", "Answer", "NodeParts"]

DESCRIBE = NODE_METHOD_PREFIX + "Describe"


@dataclass
class _LastSupplyMap:
    """The last supply map the releaser gave and its message (no header): the releaser hands back
    the same object while the answer stands, so a repeat copies the message rather than rebuild it."""

    supply: SupplyMap | None = None
    message: node_pb2.SupplyMapResponse | None = None

    def message_for(self, supply: SupplyMap, header: envelope_pb2.ResponseHeader) -> node_pb2.SupplyMapResponse:
        last = self.message
        if last is None or self.supply is not supply:
            last = supply_map_to_proto(supply, envelope_pb2.ResponseHeader())
            self.supply, self.message = supply, last
        message = node_pb2.SupplyMapResponse()
        message.CopyFrom(last)
        message.header.CopyFrom(header)
        return message


@dataclass
class NodeParts:
    """What an answer may use of the running node: its store, release gate, identity (to stamp
    headers and sign receipts), trusted manifest and key files."""

    authority: str
    engine: Engine
    releaser: Releaser
    identity: Callable[[], Identity]  # the current signing identity (it follows key rotation)
    manifests: ManifestSource
    linkage_key_path: Path
    person_key_path: Path
    _last_supply_map: _LastSupplyMap = field(default_factory=_LastSupplyMap)
    # The records' currency as last read, and the store's edition it was read at (`node.stamps`).
    _currency: tuple[tuple[object, ...], node_pb2.RecordsCurrency] | None = None

    def header(self, verified: Verified[Any], policy: Policy) -> envelope_pb2.ResponseHeader:
        return response_header(self.identity(), request_digest=verified.request_digest, policy_digest=policy.digest)

    def sign(self, message: Any) -> envelope_pb2.Envelope:
        return envelope_to_proto(sign_message(message, self.identity()))

    def linkage_key(self) -> bytes:
        return linkage.load_linkage_key(self.linkage_key_path)

    def currency(self) -> node_pb2.RecordsCurrency:
        """How recent this node's records are, for every answer it signs: read again only when the
        store's edition (the answer's, `Releaser.edition`) has changed since, as every write to
        the records it reads changes it."""
        edition = self.releaser.edition()
        kept = self._currency
        if kept is not None and kept[0] == edition:
            return kept[1]
        currency = records_currency(self.engine)
        self._currency = (edition, currency)
        return currency


AnswerFn = Callable[[NodeParts, Policy, Verified[Any]], Any]


@dataclass(frozen=True)
class Answer:
    """How a node method is answered: the function, and what its audit entry records of the
    request. A refusal of one of `refused_on` is audited with who asked; others by the interceptor."""

    answer: AnswerFn
    parameters: Callable[[Any], dict[str, object]] = lambda _message: {}
    refused_on: tuple[type[CagnetError], ...] = (CagnetError,)


def _analysis(verified: Verified[Any]) -> bytes:
    """The principal query's nonce: the analysis id that keys this query's tokens and masks."""
    inner = verified.principal_request
    assert isinstance(inner, coordinator_pb2.JointQueryRequest)  # coordinator-only kinds saw to it
    return inner.header.nonce


def describe(node: NodeParts, policy: Policy, verified: Verified[Any]) -> node_pb2.DescribeResponse:
    description = service.describe(
        authority_code=node.authority,
        key_fingerprint=node.identity().keyid,
        register=register_of(node.manifests.current()),
    )
    return description_to_proto(description, node.header(verified, policy))


def supply_map(node: NodeParts, policy: Policy, verified: Verified[Any]) -> node_pb2.SupplyMapResponse:
    asked = verified.message
    supply = node.releaser.supply_map(
        policy,
        roles=verified.principal.roles,
        by_district=bool(asked.by_district),
        client_groups=sorted(set(asked.client_groups)),
        as_at=as_at_day(asked.as_at),
    )
    message = node._last_supply_map.message_for(supply, node.header(verified, policy))
    message.currency.CopyFrom(node.currency())
    # A receipt without the figures, for feeds whose readers may not see one authority's figures.
    attach_receipt(message, node.identity(), authority=node.authority)
    return message


def _question(verified: Verified[Any]) -> Question:
    return check_question(records_question_from_proto(verified.message))


def _records_parameters(message: Any) -> dict[str, object]:
    return records_question_from_proto(message).model_dump(mode="json")


def _counts(release: Callable[[Releaser], Callable[..., Any]]) -> AnswerFn:
    def answer(node: NodeParts, policy: Policy, verified: Verified[Any]) -> node_pb2.CountsResponse:
        question = _question(verified)
        table = release(node.releaser)(policy, roles=verified.principal.roles, question=question)
        message = count_table_to_proto(table, node.header(verified, policy))
        message.currency.CopyFrom(node.currency())
        attach_receipt(message, node.identity(), authority=node.authority)
        return message

    return answer


def _equality_question(verified: Verified[Any]) -> tuple[Question, tuple[str, ...]]:
    asked = verified.message
    question = RecordsQuestion(
        from_date=asked.from_date,
        to_date=asked.to_date,
        period=asked.period or "year",
        client_groups=tuple(sorted(set(asked.client_groups))),
    )
    return check_question(question), check_cross_tab(asked.cross_tab)


def _equality_parameters(message: Any) -> dict[str, object]:
    asked = RecordsQuestion(
        from_date=message.from_date,
        to_date=message.to_date,
        period=message.period or "year",
        client_groups=tuple(sorted(set(message.client_groups))),
    )
    return {**asked.model_dump(mode="json"), "cross_tab": sorted(set(message.cross_tab))}


def equality_profile(node: NodeParts, policy: Policy, verified: Verified[Any]) -> node_pb2.CountsResponse:
    """The equality profile, or the cross-tab the question names."""
    question, cross_tab = _equality_question(verified)
    table = node.releaser.equality(policy, roles=verified.principal.roles, question=question, cross_tab=cross_tab)
    message = count_table_to_proto(table, node.header(verified, policy))
    message.currency.CopyFrom(node.currency())
    attach_receipt(message, node.identity(), authority=node.authority)
    return message


def non_local_services(node: NodeParts, policy: Policy, verified: Verified[Any]) -> node_pb2.NonLocalServicesResponse:
    question = _question(verified)
    services = node.releaser.non_local_services(policy, roles=verified.principal.roles, question=question)
    message = non_local_services_to_proto(services, node.header(verified, policy))
    message.currency.CopyFrom(node.currency())
    return message


def fair_shares(node: NodeParts, policy: Policy, verified: Verified[Any]) -> node_pb2.FairSharesResponse:
    question = _question(verified)
    released = node.releaser.fair_shares(policy, roles=verified.principal.roles, question=question)
    message = fair_shares_to_proto(released, node.header(verified, policy))
    message.currency.CopyFrom(node.currency())
    return message


def spend(node: NodeParts, policy: Policy, verified: Verified[Any]) -> node_pb2.SpendResponse:
    question = _question(verified)
    released = node.releaser.spend(policy, roles=verified.principal.roles, question=question)
    message = spend_to_proto(released, node.header(verified, policy))
    message.currency.CopyFrom(node.currency())
    return message


def plan(node: NodeParts, policy: Policy, verified: Verified[Any]) -> node_pb2.PlanResponse:
    """Would this node answer each standard question now? The answer holds no figure and the
    release ledger is left as it was."""
    question = _question(verified)
    answer = node.releaser.plan(policy, roles=verified.principal.roles, question=question)
    message = plan_to_proto(answer, node.header(verified, policy))
    message.currency.CopyFrom(node.currency())
    return message


def linkage_tokens(node: NodeParts, policy: Policy, verified: Verified[Any]) -> node_pb2.LinkageTokensResponse:
    question = _question(verified)
    policy.require_any_role("repeat-movers", verified.principal.roles)
    key = node.linkage_key()
    sealer = PersonSealer(load_person_key(node.person_key_path))
    tokens, masks = linkage.tokens(node.engine, sealer=sealer, key=key, analysis=_analysis(verified), question=question)
    header = node.header(verified, policy)
    check = linkage.key_check(key)
    receipt = node_pb2.LinkageReceipt(
        header=header,
        authority=node.authority,
        key_check=check,
        tokens_digest=linkage.tokens_digest(tokens, masks),
        currency=node.currency(),
    )
    return node_pb2.LinkageTokensResponse(
        header=header,
        authority=node.authority,
        key_check=check,
        tokens=tokens,
        groups=masks,
        receipt=node.sign(receipt),
    )


def _provider_tokens(node: NodeParts, verified: Verified[Any]) -> tuple[bytes, bytes, providers.ProviderTokens]:
    key = node.linkage_key()
    analysis = _analysis(verified)
    found = providers.local_providers(node.engine, authority_code=node.authority)
    return key, analysis, providers.provider_tokens(found, key=key, analysis=analysis)


def provider_tokens(node: NodeParts, policy: Policy, verified: Verified[Any]) -> node_pb2.ProviderTokensResponse:
    """Common providers, round 1: this node's tokens and its signed commitment to them."""
    policy.require_any_role("common-providers", verified.principal.roles)
    key, analysis, found = _provider_tokens(node, verified)
    header = node.header(verified, policy)
    check = linkage.key_check(key)
    commitment = node_pb2.ProviderCommitment(
        header=header,
        authority=node.authority,
        analysis=analysis,
        key_check=check,
        size=len(found.tokens),
        root=providers.token_root(found.tokens),
    )
    return node_pb2.ProviderTokensResponse(
        header=header,
        authority=node.authority,
        key_check=check,
        tokens=found.tokens,
        providers=found.providers,
        commitment=node.sign(commitment),
    )


def reveal_providers(node: NodeParts, policy: Policy, verified: Verified[Any]) -> node_pb2.RevealResponse:
    """Common providers, round 2: reveal each provider whose tokens enough members proved (by
    their signed commitments and inclusion proofs) that they hold too."""
    rule = policy.require_any_role("common-providers", verified.principal.roles)
    key, analysis, found = _provider_tokens(node, verified)
    message = verified.message
    check = linkage.key_check(key)
    manifest = node.manifests.current()

    def opener(envelope: envelope_pb2.Envelope) -> Any:
        def open_commitment() -> tuple[str, int, bytes]:
            env = envelope_from_proto(envelope)
            try:
                claimed = node_pb2.ProviderCommitment.FromString(env.payload).authority
                holder = manifest.party(claimed)
                commitment = open_signed(env, node_pb2.ProviderCommitment, holder)
            except (CagnetError, DecodeError):
                raise InvalidRequest("a commitment in the evidence does not verify") from None
            if not holder.has_role(MEMBER_AUTHORITY) or commitment.header.responder != holder.id:
                raise InvalidRequest("a commitment in the evidence is not a member authority's")
            if commitment.analysis != analysis or commitment.key_check != check:
                raise InvalidRequest("a commitment in the evidence was made for another analysis")
            return holder.id, commitment.size, commitment.root

        return open_commitment

    holders = providers.holders_of(
        message.tokens,
        ((e.token, e.commitment, e.index, list(e.proof)) for e in message.evidence),
        [opener(c) for c in message.commitments],
        me=node.authority,
        mine=frozenset(found.tokens),
    )
    common = sorted(t for t, members in holders.items() if len(members) >= rule.min_authorities)
    owner = dict(zip(found.tokens, found.providers, strict=True))
    by_provider: dict[int, list[bytes]] = {}
    for token in common:
        by_provider.setdefault(owner[token], []).append(token)
    revealed = []
    for index, tokens in sorted(by_provider.items()):
        p = found.by_provider[index]
        revealed.append(
            node_pb2.RevealedProvider(
                tokens=tokens,
                name=p.name,
                national_provider_id=p.national_provider_id,
                charity_number=p.charity_number,
                company_number=p.company_number,
                services=p.services,
                units=p.units,
                designated=p.designated,
            )
        )
    return node_pb2.RevealResponse(
        header=node.header(verified, policy), authority=node.authority, providers=revealed, currency=node.currency()
    )


def _vfm_parameters(asked: Any) -> dict[str, object]:
    return {
        "client_groups": sorted(set(asked.client_groups)),
        "service_type": asked.service_type,
        "participants": list(asked.participants),
    }


def vfm_histogram(node: NodeParts, policy: Policy, verified: Verified[Any]) -> node_pb2.VfmResponse:
    """Value for money: this node's unit-cost histogram, masked pairwise with every other member
    so that only the sum over all of them means anything."""
    asked = verified.message
    groups = sorted(set(asked.client_groups))
    participants = list(asked.participants)
    rule = policy.require_any_role("vfm", verified.principal.roles)
    if any(g not in vocabulary.CLIENT_GROUPS for g in groups):
        raise InvalidRequest("client_groups: each must be an SP client group code, 1 to 21")
    if asked.service_type and asked.service_type not in {t.value for t in vocabulary.ServiceType}:
        raise InvalidRequest("service_type: not a service type")
    members = sorted(p.id for p in node.manifests.current().members)
    # The minimum is the real rule, so it is named first: with too few members no set of
    # participants would do.
    if len(members) < rule.min_authorities:
        raise DisclosureRefused(
            f"minimum authorities: a joint vfm figure needs at least {rule.min_authorities} authorities"
        )
    if len(set(participants)) != len(participants) or sorted(participants) != members:
        raise DisclosureRefused("secure aggregation: the participants must be every member authority")
    if len(participants) < rule.min_authorities:
        raise DisclosureRefused("minimum authorities: a joint figure needs more authorities")
    selected = vfm_layout.cells(groups, asked.service_type)
    node.releaser.admit_participants(rule, selected, participants)
    key = node.linkage_key()
    costs = vfm.unit_costs(node.engine, authority_code=node.authority)
    plain = vfm_layout.cell_vector(selected, [(u.cell, u.cost) for u in costs])
    masked = vfm.masked_vector(
        plain, me=node.authority, participants=participants, key=key, analysis=_analysis(verified)
    )
    header = node.header(verified, policy)
    check = linkage.key_check(key)
    receipt = node_pb2.VfmReceipt(
        header=header,
        authority=node.authority,
        key_check=check,
        participants=participants,
        masked_digest=vfm_layout.masks_digest(masked),
        currency=node.currency(),
    )
    return node_pb2.VfmResponse(
        header=header, authority=node.authority, key_check=check, masked=masked, receipt=node.sign(receipt)
    )


# Each node method's answer. `tests/test_kinds.py` checks these are exactly the registry's methods
# (and Describe), and the proto's.
ANSWERS: dict[str, Answer] = {
    DESCRIBE: Answer(describe, refused_on=()),
    KINDS["supply-map"].method: Answer(
        supply_map,
        parameters=lambda m: {
            "by_district": bool(m.by_district),
            "client_groups": sorted(set(m.client_groups)),
            # Only when asked: the audit entries of maps without a day read as they always did.
            **({"as_at": m.as_at} if m.as_at else {}),
        },
        refused_on=(DisclosureRefused, NotPermitted, StalePolicy, InvalidRequest),
    ),
    KINDS["movement"].method: Answer(_counts(lambda r: r.movement), _records_parameters),
    KINDS["net-flow"].method: Answer(_counts(lambda r: r.net_flow), _records_parameters),
    KINDS["kpi"].method: Answer(_counts(lambda r: r.kpi), _records_parameters),
    KINDS["non-local-services"].method: Answer(non_local_services, _records_parameters),
    KINDS["plan"].method: Answer(plan, _records_parameters),
    KINDS["repeat-movers"].method: Answer(linkage_tokens, _records_parameters),
    KINDS["common-providers"].methods[0]: Answer(provider_tokens),
    KINDS["common-providers"].method: Answer(reveal_providers, parameters=lambda m: {"tokens_asked": len(m.tokens)}),
    KINDS["vfm"].method: Answer(vfm_histogram, parameters=_vfm_parameters),
    KINDS["fair-shares"].method: Answer(fair_shares, _records_parameters),
    KINDS["spend"].method: Answer(spend, _records_parameters),
    KINDS["outcomes"].method: Answer(_counts(lambda r: r.outcomes), _records_parameters),
    KINDS["equality"].method: Answer(equality_profile, _equality_parameters),
    KINDS["kpi1"].method: Answer(_counts(lambda r: r.kpi1), _records_parameters),
    KINDS["utilisation"].method: Answer(_counts(lambda r: r.utilisation), _records_parameters),
    KINDS["unmet-demand"].method: Answer(_counts(lambda r: r.unmet_demand), _records_parameters),
}
