"""The node's gRPC server: mTLS with client certificates required, the signed-envelope
interceptor, the standard health service, and a thin servicer over `node.service`.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sqlalchemy.engine import Engine

from node.answers import linkage, providers, service, vfm
from node.answers.movement import check_question
from node.client_records import PersonSealer, load_person_key
from node.config import NodeConfig
from node.ledger import PersistentNonceCache, spend_mandate_slot
from node.release import Releaser, load_rounding_secret
from node.store import ensure_authority, open_store
from shared import audit, dsse, keys, vocabulary
from shared import vfm as vfm_layout
from shared.auth import (
    NonceCache,
    Verified,
    asks_same_question,
    attach_receipt,
    now_ms,
    open_signed,
    require_role,
    response_header,
    sign_message,
    verify_request,
)
from shared.authorities import register_of
from shared.errors import CagnetError, DisclosureRefused, InvalidRequest, NotPermitted, StalePolicy
from shared.guard import MAX_MESSAGE, RefusalSummary, RequestGuard, server_options
from shared.identity import Identity
from shared.interceptor import (
    SignedEnvelopeInterceptor,
    current_peer_fingerprint,
    current_request,
    server_credentials,
)
from shared.mandate import check_use, mandate_of
from shared.manifest import CAG_CHAIR, COORDINATOR, MEMBER_AUTHORITY, Manifest, ManifestSource, Party
from shared.metrics import CallObserver, MetricsListener, ServerMetrics, parse_listen, serve_metrics
from shared.models import SupplyMap
from shared.pb.cagnet.v1 import coordinator_pb2, envelope_pb2, node_pb2, node_pb2_grpc
from shared.policy import Policy, PolicySource
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
from shared.serving import bind, folder_lock

log = logging.getLogger(__name__)

SERVICE = "cagnet.v1.Node"
DESCRIBE = f"/{SERVICE}/Describe"
SUPPLY_MAP = f"/{SERVICE}/SupplyMap"
MOVEMENT = f"/{SERVICE}/Movement"
NET_FLOW = f"/{SERVICE}/NetFlow"
KPI = f"/{SERVICE}/Kpi"
NON_LOCAL_SERVICES = f"/{SERVICE}/NonLocalServices"
LINKAGE_TOKENS = f"/{SERVICE}/LinkageTokens"
PROVIDER_TOKENS = f"/{SERVICE}/ProviderTokens"
REVEAL_PROVIDERS = f"/{SERVICE}/RevealProviders"
VFM = f"/{SERVICE}/Vfm"
PLAN = f"/{SERVICE}/Plan"
JOINT_QUERY = "/cagnet.v1.Coordinator/JointQuery"
COMMON_PROVIDERS = "common-providers"
VFM_KIND = "vfm"

# Which request payload each method takes, and which roles may ask for it.
METHODS: dict[str, tuple[type[Any], tuple[str, ...]]] = {
    DESCRIBE: (node_pb2.DescribeRequest, (COORDINATOR, MEMBER_AUTHORITY, CAG_CHAIR)),
    SUPPLY_MAP: (node_pb2.SupplyMapRequest, (MEMBER_AUTHORITY, CAG_CHAIR)),
    MOVEMENT: (node_pb2.RecordsQuery, (MEMBER_AUTHORITY, CAG_CHAIR)),
    NET_FLOW: (node_pb2.RecordsQuery, (MEMBER_AUTHORITY, CAG_CHAIR)),
    KPI: (node_pb2.RecordsQuery, (MEMBER_AUTHORITY, CAG_CHAIR)),
    NON_LOCAL_SERVICES: (node_pb2.RecordsQuery, (MEMBER_AUTHORITY, CAG_CHAIR)),
    LINKAGE_TOKENS: (node_pb2.RecordsQuery, (MEMBER_AUTHORITY, CAG_CHAIR)),
    PROVIDER_TOKENS: (node_pb2.ProvidersQuery, (MEMBER_AUTHORITY, CAG_CHAIR)),
    REVEAL_PROVIDERS: (node_pb2.RevealRequest, (MEMBER_AUTHORITY, CAG_CHAIR)),
    VFM: (node_pb2.VfmQuery, (MEMBER_AUTHORITY, CAG_CHAIR)),
    PLAN: (node_pb2.RecordsQuery, (MEMBER_AUTHORITY, CAG_CHAIR)),
}
# Aggregates the coordinator may only ask for on a principal's behalf, with the joint query kind.
FORWARDED_KIND = {
    SUPPLY_MAP: "supply-map",
    MOVEMENT: "movement",
    NET_FLOW: "net-flow",
    KPI: "kpi",
    NON_LOCAL_SERVICES: "non-local-services",
    LINKAGE_TOKENS: "repeat-movers",
    PROVIDER_TOKENS: "common-providers",
    REVEAL_PROVIDERS: "common-providers",
    VFM: "vfm",
    PLAN: "plan",
}
# The fields of a forwarded request that are the coordinator's part of a round rather than the
# principal's question; the node checks them itself (evidence, participants).
FILLED_IN = {
    REVEAL_PROVIDERS: ("tokens", "commitments", "evidence"),
    VFM: ("participants",),
}
# Answered only to the coordinator forwarding a principal's query, never to a principal directly:
# a member officer whose own node holds the linkage key could test guesses against the tokens, or
# (VFM) take the pairwise masks off a node's histogram.
COORDINATOR_ONLY = frozenset({LINKAGE_TOKENS, PROVIDER_TOKENS, REVEAL_PROVIDERS, VFM})


@dataclass
class NodeRuntime:
    """Everything a running node holds: its configuration, identity, store and trust anchors."""

    config: NodeConfig
    _identity: Identity
    engine: Engine
    manifests: ManifestSource
    policies: PolicySource
    releaser: Releaser
    nonces: NonceCache = field(default_factory=NonceCache)
    _keys_checked_at: int = 0  # the manifest version last checked for this node's next signing key
    _register_text: str | None = None  # the authority register the store was last written from
    _following: threading.Lock = field(default_factory=threading.Lock)  # one request follows a new version
    metrics: ServerMetrics = field(init=False)
    # Calls refused before any signature was tried, one audit row per address per minute (shared.guard).
    refusals: RefusalSummary = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = ServerMetrics("node", self.config.authority)
        self.refusals = RefusalSummary(self.write_refusals)
        self.metrics.reading(
            "cagnet_audit_log_entries",
            "Entries in the node's hash-chained audit log.",
            lambda: audit.head(self.engine)[0],
        )
        self.metrics.reading(
            "cagnet_manifest_version",
            "The network manifest version the node has accepted.",
            lambda: self.manifests.last_accepted.version,
        )
        self.metrics.reading(
            "cagnet_policy_revision",
            "The revision of the signed network policy the node applies (absent: no valid policy).",
            lambda: self.policies.current().revision,
        )

    @property
    def identity(self) -> Identity:
        """The node's identity, switched to its next signing key once a manifest lists that key
        (shared/keys.py): checked once per manifest version, so a rotation needs no restart."""
        self._follow_manifest()
        return self._identity

    def _follow_manifest(self) -> None:
        """Once per manifest version: switch to the next signing key once listed, and take a
        corrected authority register."""
        # Every request has just read the manifest to authenticate it: no need to look at the file again.
        manifest = self.manifests.last_accepted
        if manifest.version == self._keys_checked_at:
            return
        with self._following:  # the others wait: none answers from figures about to change
            if manifest.version == self._keys_checked_at:
                return
            if keys.promote_if_listed(self.config.identity_dir, manifest, self.config.authority):
                self._identity = self.config.identity()
            self._follow_register(manifest)
            self._keys_checked_at = manifest.version

    def _follow_register(self, manifest: Manifest) -> None:
        """A corrected register (a population or district) reaches the store, and answers made from
        the old figures are dropped, without a restart."""
        if manifest.authorities == self._register_text:
            return
        self._register_text = manifest.authorities
        ensure_authority(self.engine, authority_code=self.config.authority, register=register_of(manifest))
        self.releaser.forget_answers()

    @classmethod
    def open(cls, config: NodeConfig) -> NodeRuntime:
        identity = config.identity()
        trusted = dsse.load_public_key(base64.b64decode(config.coordinator_key))
        # The node keeps every manifest version it accepts, so that it refuses an older one put back.
        manifests = ManifestSource(config.manifest_path, trusted, keep=config.manifest_history)
        policies = PolicySource(config.policy_file, trusted, manifests=manifests)
        policies.current()  # a node without a valid signed policy does not start
        engine = open_store(config.database_url)
        manifest = manifests.current()
        ensure_authority(engine, authority_code=config.authority, register=register_of(manifest))
        releaser = Releaser(
            engine,
            config.authority,
            load_rounding_secret(config.rounding_key_path),
            members=lambda: frozenset(p.id for p in manifests.last_accepted.members),
            register=lambda: register_of(manifests.last_accepted),
        )
        # Seen nonces are kept in the store until they expire: a restart does not reopen a replay.
        return cls(
            config,
            identity,
            engine,
            manifests,
            policies,
            releaser,
            nonces=PersistentNonceCache(engine),
            _register_text=manifest.authorities,
        )

    def policy_for(self, verified: Verified[Any]) -> Policy:
        """The policy this node applies, if the request was made under it; else StalePolicy."""
        self._follow_manifest()  # before any answer is worked out: the register may have changed
        policy = self.policies.current()
        asked_under = verified.message.header.policy_digest
        if asked_under and asked_under != policy.digest:
            raise StalePolicy()
        return policy

    def authenticate(self, method: str, envelope: dsse.Envelope, peer: str | None) -> Verified[Any]:
        try:
            message_cls, roles = METHODS[method]
        except KeyError:
            raise InvalidRequest("unknown method") from None
        verified = verify_request(
            envelope,
            message_cls,
            manifest=self.manifests.current(),
            audience=self.config.authority,
            method=method,
            nonces=self.nonces,
            peer_party_id=peer,
            peer_fingerprint=current_peer_fingerprint(),
            inner_cls=coordinator_pb2.JointQueryRequest,
            inner_method=JOINT_QUERY,
        )
        if method in FORWARDED_KIND and verified.issuer.has_role(COORDINATOR):
            # The coordinator has no right to an aggregate on its own account.
            inner = verified.principal_request
            if not isinstance(inner, coordinator_pb2.JointQueryRequest):
                raise NotPermitted(f"role coordinator may not call {method} on its own account")
            if verified.principal is verified.issuer:
                # Its own query is answered only under a CAG chair's standing feed mandate.
                verified = self._mandated(method, verified, inner)
            elif inner.HasField("mandate"):
                raise InvalidRequest("only the coordinator's own scheduled query carries a feed mandate")
            if inner.kind != FORWARDED_KIND[method]:
                raise NotPermitted("the forwarded request asked for a different aggregate")
            if not asks_same_question(inner, verified.message, filled_in=FILLED_IN.get(method, ())):
                raise NotPermitted("the forwarded request asked a different question from the principal's")
            if verified.mandate is None:
                # Each node sees a principal's query once per method (common providers takes two
                # rounds, each once): the coordinator may not ask again in their name.
                once = b"on-behalf-of:" + method.encode() + b"\x00" + inner.header.nonce
                self.nonces.check_and_add(once, inner.header.expires_at_ms, now_ms())
            else:
                self._spend_slot(method, verified)
        elif method in COORDINATOR_ONLY:
            raise NotPermitted(f"{method} is answered only to the coordinator, for a joint query")
        # The code's ceiling for the method; the servicer then applies the network policy's roles for
        # the aggregate (quorum-signed once governed), and audits a refusal with who asked and what.
        require_role(verified.principal, roles, method)
        return verified

    def _mandated(
        self, method: str, verified: Verified[Any], query: coordinator_pb2.JointQueryRequest
    ) -> Verified[Any]:
        """The coordinator's own query under a feed mandate: answered as the chair's, if the
        mandate checks out now (`shared.mandate`). A refusal is audited with what was verified."""
        try:
            mandate, chair, envelope = mandate_of(query, self.manifests.current())
        except CagnetError as exc:
            self._audit_mandate_refusal(method, verified, query, None, exc)
            raise
        try:
            use = check_use(query, mandate, chair, envelope, current=True)
        except CagnetError as exc:
            self._audit_mandate_refusal(method, verified, query, (chair, mandate.mandate_id), exc)
            raise
        return replace(verified, principal=use.chair, mandate=use)

    def _spend_slot(self, method: str, verified: Verified[Any]) -> None:
        """Each (mandate, slot, method) once, kept in the store: the coordinator may not run a
        mandated query twice in a slot to difference the answers, even across a restart."""
        use = verified.mandate
        assert use is not None
        try:
            spend_mandate_slot(
                self.engine, mandate_id=use.mandate.mandate_id, slot=use.slot, method=method, kind=use.kind
            )
        except CagnetError as exc:
            query = verified.principal_request
            assert isinstance(query, coordinator_pb2.JointQueryRequest)
            self._audit_mandate_refusal(method, verified, query, (use.chair, use.mandate.mandate_id), exc)
            raise

    def _audit_mandate_refusal(
        self,
        method: str,
        verified: Verified[Any],
        query: coordinator_pb2.JointQueryRequest,
        mandate: tuple[Party, str] | None,
        exc: CagnetError,
    ) -> None:
        # Only what verified goes in: the coordinator signed the kind and slot; the mandate's id
        # and chair only once the mandate itself checked out.
        parameters: dict[str, object] = {"kind": query.kind[:40], "slot": query.slot}
        if mandate is not None:
            parameters["mandate"] = mandate[1]
        service.record(
            self.engine,
            principal=mandate[0] if mandate is not None else verified.issuer,
            via=verified.issuer.id if mandate is not None else "",
            method=method,
            parameters=parameters,
            decision=f"rejected: {exc.public_message}",
        )
        exc.audited = True

    def on_reject(self, method: str, peer: str | None, error: CagnetError, _verified: Verified[Any] | None) -> None:
        if error.audited:
            return  # a refusal the servicer has already written, with who asked and what
        try:
            service.record(
                self.engine,
                principal=None,
                principal_id=peer,
                via="",
                method=method,
                parameters={},
                decision=f"rejected: {error.public_message}",
            )
        except Exception:
            log.exception("could not write a rejection to the audit log")

    def write_refusals(self, address: str, parameters: dict[str, object], decision: str) -> None:
        """One audit row for the calls one address made in a minute that were refused before any
        signature was tried (`shared.guard`)."""
        service.record(
            self.engine,
            principal=None,
            principal_id=f"address {address}",
            via="",
            method=f"/{SERVICE}/*",
            parameters=parameters,
            decision=decision,
        )

    def sign(self, message: Any) -> envelope_pb2.Envelope:
        return envelope_to_proto(sign_message(message, self.identity))


class NodeServicer(node_pb2_grpc.NodeServicer):
    def __init__(self, runtime: NodeRuntime) -> None:
        self.rt = runtime
        # The last answer the releaser gave and its message (no header): the releaser hands back the
        # same object while the answer stands, so a repeat copies the message rather than rebuild it.
        self._last_answer: tuple[SupplyMap, node_pb2.SupplyMapResponse] | None = None

    def _supply_map_message(self, supply: SupplyMap, header: envelope_pb2.ResponseHeader) -> node_pb2.SupplyMapResponse:
        last = self._last_answer
        if last is None or last[0] is not supply:
            last = self._last_answer = (supply, supply_map_to_proto(supply, envelope_pb2.ResponseHeader()))
        message = node_pb2.SupplyMapResponse()
        message.CopyFrom(last[1])
        message.header.CopyFrom(header)
        return message

    def _via(self, verified: Verified[Any]) -> str:
        return verified.issuer.id if verified.issuer is not verified.principal else ""

    def Describe(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        verified = current_request()
        policy = self.rt.policy_for(verified)
        description = service.describe(
            authority_code=self.rt.config.authority,
            key_fingerprint=self.rt.identity.keyid,
            register=register_of(self.rt.manifests.current()),
        )
        header = response_header(self.rt.identity, request_digest=verified.request_digest, policy_digest=policy.digest)
        reply = self.rt.sign(description_to_proto(description, header))
        self._record(verified, DESCRIBE, {}, reply.payload, policy.digest)
        return reply

    def SupplyMap(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        verified = current_request()
        message = verified.message
        by_district = bool(message.by_district)
        groups = sorted(set(message.client_groups))
        parameters: dict[str, object] = {"by_district": by_district, "client_groups": groups}
        try:
            policy = self.rt.policy_for(verified)
            supply = self.rt.releaser.supply_map(
                policy, roles=verified.principal.roles, by_district=by_district, client_groups=groups
            )
        except (DisclosureRefused, NotPermitted, StalePolicy) as exc:
            self._refuse(verified, SUPPLY_MAP, parameters, exc)
            raise
        header = response_header(self.rt.identity, request_digest=verified.request_digest, policy_digest=policy.digest)
        message = self._supply_map_message(supply, header)
        # A receipt without the figures, for feeds whose readers may not see one authority's figures.
        attach_receipt(message, self.rt.identity, authority=self.rt.config.authority)
        reply = self.rt.sign(message)
        self._record(verified, SUPPLY_MAP, parameters, reply.payload, policy.digest)
        return reply

    def Movement(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        return self._counts(MOVEMENT, self.rt.releaser.movement)

    def NetFlow(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        return self._counts(NET_FLOW, self.rt.releaser.net_flow)

    def Kpi(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        return self._counts(KPI, self.rt.releaser.kpi)

    def NonLocalServices(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        return self._records(
            NON_LOCAL_SERVICES,
            lambda policy, verified, question: non_local_services_to_proto(
                self.rt.releaser.non_local_services(policy, roles=verified.principal.roles, question=question),
                self._header(verified, policy),
            ),
        )

    def Plan(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        """Would this node answer each standard question now? Checked, signed and audited like any
        request; the answer holds no figure and the release ledger is left as it was."""
        return self._records(
            PLAN,
            lambda policy, verified, question: plan_to_proto(
                self.rt.releaser.plan(policy, roles=verified.principal.roles, question=question),
                self._header(verified, policy),
            ),
        )

    def LinkageTokens(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        def answer(policy: Policy, verified: Verified[Any], question: Any) -> Any:
            policy.require_any_role("repeat-movers", verified.principal.roles)
            key = linkage.load_linkage_key(self.rt.config.linkage_key_path)
            sealer = PersonSealer(load_person_key(self.rt.config.person_key_path))
            inner = verified.principal_request
            assert isinstance(inner, coordinator_pb2.JointQueryRequest)  # COORDINATOR_ONLY saw to it
            analysis = inner.header.nonce
            tokens, masks = linkage.tokens(self.rt.engine, sealer=sealer, key=key, analysis=analysis, question=question)
            header = self._header(verified, policy)
            check = linkage.key_check(key)
            receipt = node_pb2.LinkageReceipt(
                header=header,
                authority=self.rt.config.authority,
                key_check=check,
                tokens_digest=linkage.tokens_digest(tokens, masks),
            )
            return node_pb2.LinkageTokensResponse(
                header=header,
                authority=self.rt.config.authority,
                key_check=check,
                tokens=tokens,
                groups=masks,
                receipt=self.rt.sign(receipt),
            )

        return self._records(LINKAGE_TOKENS, answer)

    def ProviderTokens(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        def answer(policy: Policy, verified: Verified[Any]) -> Any:
            policy.require_any_role(COMMON_PROVIDERS, verified.principal.roles)
            key, analysis, found = self._provider_tokens(verified)
            header = self._header(verified, policy)
            check = linkage.key_check(key)
            commitment = node_pb2.ProviderCommitment(
                header=header,
                authority=self.rt.config.authority,
                analysis=analysis,
                key_check=check,
                size=len(found.tokens),
                root=providers.token_root(found.tokens),
            )
            return node_pb2.ProviderTokensResponse(
                header=header,
                authority=self.rt.config.authority,
                key_check=check,
                tokens=found.tokens,
                providers=found.providers,
                commitment=self.rt.sign(commitment),
            )

        return self._answer(PROVIDER_TOKENS, {}, answer)

    def RevealProviders(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        def answer(policy: Policy, verified: Verified[Any]) -> Any:
            rule = policy.require_any_role(COMMON_PROVIDERS, verified.principal.roles)
            key, analysis, found = self._provider_tokens(verified)
            message = verified.message
            check = linkage.key_check(key)
            manifest = self.rt.manifests.current()

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
                me=self.rt.config.authority,
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
                header=self._header(verified, policy), authority=self.rt.config.authority, providers=revealed
            )

        asked = current_request().message
        return self._answer(REVEAL_PROVIDERS, {"tokens_asked": len(asked.tokens)}, answer)

    def Vfm(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        asked = current_request().message
        groups = sorted(set(asked.client_groups))
        participants = list(asked.participants)
        parameters: dict[str, object] = {
            "client_groups": groups,
            "service_type": asked.service_type,
            "participants": participants,
        }

        def answer(policy: Policy, verified: Verified[Any]) -> Any:
            rule = policy.require_any_role(VFM_KIND, verified.principal.roles)
            if any(g not in vocabulary.CLIENT_GROUPS for g in groups):
                raise InvalidRequest("client_groups: each must be an SP client group code, 1 to 21")
            if asked.service_type and asked.service_type not in {t.value for t in vocabulary.ServiceType}:
                raise InvalidRequest("service_type: not a service type")
            members = sorted(p.id for p in self.rt.manifests.current().members)
            if len(set(participants)) != len(participants) or sorted(participants) != members:
                raise DisclosureRefused("secure aggregation: the participants must be every member authority")
            if len(participants) < rule.min_authorities:
                raise DisclosureRefused("minimum authorities: a joint figure needs more authorities")
            selected = vfm_layout.cells(groups, asked.service_type)
            self.rt.releaser.admit_participants(rule, selected, participants)
            key = linkage.load_linkage_key(self.rt.config.linkage_key_path)
            costs = vfm.unit_costs(self.rt.engine, authority_code=self.rt.config.authority)
            plain = vfm_layout.cell_vector(selected, [(u.cell, u.cost) for u in costs])
            inner = verified.principal_request
            assert isinstance(inner, coordinator_pb2.JointQueryRequest)  # COORDINATOR_ONLY saw to it
            masked = vfm.masked_vector(
                plain, me=self.rt.config.authority, participants=participants, key=key, analysis=inner.header.nonce
            )
            header = self._header(verified, policy)
            check = linkage.key_check(key)
            receipt = node_pb2.VfmReceipt(
                header=header,
                authority=self.rt.config.authority,
                key_check=check,
                participants=participants,
                masked_digest=vfm_layout.masks_digest(masked),
            )
            return node_pb2.VfmResponse(
                header=header,
                authority=self.rt.config.authority,
                key_check=check,
                masked=masked,
                receipt=self.rt.sign(receipt),
            )

        return self._answer(VFM, parameters, answer)

    def _provider_tokens(self, verified: Verified[Any]) -> tuple[bytes, bytes, providers.ProviderTokens]:
        key = linkage.load_linkage_key(self.rt.config.linkage_key_path)
        inner = verified.principal_request
        assert isinstance(inner, coordinator_pb2.JointQueryRequest)  # COORDINATOR_ONLY saw to it
        analysis = inner.header.nonce
        found = providers.local_providers(self.rt.engine, authority_code=self.rt.config.authority)
        return key, analysis, providers.provider_tokens(found, key=key, analysis=analysis)

    def _answer(self, method: str, parameters: dict[str, object], answer: Any) -> envelope_pb2.Envelope:
        """Check, answer, sign, audit: the path for questions that are not about client records."""
        verified = current_request()
        try:
            policy = self.rt.policy_for(verified)
            message = answer(policy, verified)
        except CagnetError as exc:
            self._refuse(verified, method, parameters, exc)
            raise
        reply = self.rt.sign(message)
        self._record(verified, method, parameters, reply.payload, policy.digest)
        return reply

    def _header(self, verified: Verified[Any], policy: Policy) -> envelope_pb2.ResponseHeader:
        return response_header(self.rt.identity, request_digest=verified.request_digest, policy_digest=policy.digest)

    def _counts(self, method: str, release: Any) -> envelope_pb2.Envelope:
        def answer(policy: Policy, verified: Verified[Any], question: Any) -> Any:
            message = count_table_to_proto(
                release(policy, roles=verified.principal.roles, question=question), self._header(verified, policy)
            )
            attach_receipt(message, self.rt.identity, authority=self.rt.config.authority)
            return message

        return self._records(method, answer)

    def _records(self, method: str, answer: Any) -> envelope_pb2.Envelope:
        """The one path for questions about client records: check, release, sign, audit."""
        verified = current_request()
        asked = records_question_from_proto(verified.message)
        parameters: dict[str, object] = asked.model_dump(mode="json")
        try:
            policy = self.rt.policy_for(verified)
            question = check_question(asked)
            message = answer(policy, verified, question)
        except CagnetError as exc:
            self._refuse(verified, method, parameters, exc)
            raise
        reply = self.rt.sign(message)
        self._record(verified, method, parameters, reply.payload, policy.digest)
        return reply

    def _record(
        self, verified: Verified[Any], method: str, parameters: dict[str, object], released: bytes, policy_digest: str
    ) -> None:
        service.record(
            self.rt.engine,
            principal=verified.principal,
            via=self._via(verified),
            method=method,
            parameters=_with_mandate(verified, parameters),
            decision="released",
            released=released,
            policy_digest=policy_digest,
        )

    def _refuse(self, verified: Verified[Any], method: str, parameters: dict[str, object], exc: CagnetError) -> None:
        """Audit a refusal with who asked and what, and the rule (never the figures)."""
        policy_digest = ""
        with contextlib.suppress(CagnetError):  # a refusal because the policy is gone still gets audited
            policy_digest = self.rt.policies.current().digest
        service.record(
            self.rt.engine,
            principal=verified.principal,
            via=self._via(verified),
            method=method,
            parameters=_with_mandate(verified, parameters),
            decision=f"refused: {exc.public_message}",
            policy_digest=policy_digest,
        )
        exc.audited = True


def _with_mandate(verified: Verified[Any], parameters: dict[str, object]) -> dict[str, object]:
    """The audit parameters, with the feed mandate and slot a scheduled query was asked under."""
    return parameters if verified.mandate is None else {**parameters, **verified.mandate.audit_parameters()}


def create_server(runtime: NodeRuntime, *, address: str | None = None, max_workers: int = 8) -> tuple[grpc.Server, int]:
    """A started server on `address` (default: the configured endpoint; use port 0 in tests)."""
    interceptor = SignedEnvelopeInterceptor((SERVICE,), runtime.authenticate, runtime.on_reject)
    checks = RequestGuard(summary=runtime.refusals)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        interceptors=[CallObserver(runtime.metrics), checks, interceptor],
        options=server_options(MAX_MESSAGE),
    )
    node_pb2_grpc.add_NodeServicer_to_server(NodeServicer(runtime), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    identity = runtime.identity
    creds = server_credentials(identity.ca_cert_pem, identity.tls_key_pem, identity.tls_cert_pem)
    port = bind(server, address or runtime.config.listen, creds, what=f"node {runtime.config.authority}")
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    return server, port


def serve(config: NodeConfig, *, ready: Any = None) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully (in-flight calls get 5 s to finish). One
    server per node folder: a second is refused while this one runs (`shared.serving`)."""
    if config.metrics_listen:
        parse_listen(config.metrics_listen, setting="metrics_listen")  # a bad address stops the start here
    with folder_lock(config.nodedir, f"the node {config.authority}"):
        _serve(config, ready)


def _serve(config: NodeConfig, ready: Any) -> None:
    from node.network.governance import ManifestPoller

    runtime = NodeRuntime.open(config)
    server, port = create_server(runtime)
    metrics: MetricsListener | None = None
    if config.metrics_listen:
        metrics = serve_metrics(runtime.metrics, config.metrics_listen)
    # New manifest versions come from the coordinator's Governance service, checked link by link.
    poller = ManifestPoller(runtime.manifests, lambda: runtime.identity, config.manifest_poll_s)
    runtime.metrics.reading(
        "cagnet_manifest_last_sync_timestamp_seconds",
        "When the node last reached the coordinator and checked its manifest (absent: not yet).",
        lambda: poller.last_synced_at,
    )
    poller.start()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("node %s serving on port %d", config.authority, port)
    if ready is not None:
        ready(port)
    stop.wait()
    poller.stop()
    server.stop(grace=5).wait()
    runtime.refusals.flush(everything=True)
    if metrics is not None:
        metrics.close()
    runtime.engine.dispose()
