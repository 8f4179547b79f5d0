"""The coordinator's gRPC server: authenticates principals, fans joint queries out to the member
nodes, verifies and combines their answers, and returns a bundle it signs. Holds no records.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from coordinator import network
from coordinator.audit import CoordinatorAudit, request_parameters
from coordinator.audit import default_database_url as default_audit_url
from coordinator.feeds.schedule import FeedSchedule
from coordinator.feeds.snapshot import (
    FEED_KINDS,
    FeedStore,
    MandateEvidence,
    build_snapshot,
    provider_counts,
    sign_snapshot,
)
from coordinator.feeds.snapshot import default_database_url as feeds_default_url
from coordinator.governance.server import SERVICE as GOVERNANCE_SERVICE
from coordinator.governance.server import GovernanceRuntime
from coordinator.governance.server import add_to_server as add_governance
from coordinator.joint import protocols
from coordinator.joint.bundle import Bundle, build_bundle, sign_bundle, verify_bundle
from coordinator.joint.fanout import Missing, NodeClients
from coordinator.joint.rounds import Round
from coordinator.register.server import SERVICE as REGISTER_SERVICE
from coordinator.register.server import RegisterRuntime, add_to_server
from coordinator.relay.server import RelayServicer
from coordinator.relay.server import add_to_server as add_relay
from coordinator.settings import CoordinatorSettings
from shared import audit as audit_log
from shared import dsse
from shared.auth import (
    NonceCache,
    Verified,
    now_ms,
    request_header,
    sign_message,
    verify_request,
)
from shared.authorities import register_of
from shared.disclosure import load_secret, require_min_authorities
from shared.errors import CagnetError, DisclosureRefused, InvalidRequest, NotPermitted, StalePolicy, TooFewAnswered
from shared.guard import MAX_MESSAGE, RefusalSummary, RequestGuard, server_options
from shared.identity import Identity
from shared.interceptor import (
    SignedEnvelopeInterceptor,
    current_request,
    peer_party_id,
    server_credentials,
)
from shared.kinds.registry import KINDS, PLAN_KINDS
from shared.mandate import FeedMandate, check_mandated_query, open_mandate, query_message
from shared.manifest import CAG_CHAIR, COORDINATOR, MEMBER_AUTHORITY, REGIONAL_BOARD, Manifest, ManifestSource, Party
from shared.metrics import CallObserver, MetricsListener, ServerMetrics, serve_metrics
from shared.nonces import DeferredNonceCache, SpentNonces, StoredNonceCache
from shared.pb.cagnet.v1 import coordinator_pb2, coordinator_pb2_grpc, envelope_pb2
from shared.policy import AggregateRule, Policy, PolicySource
from shared.relay import SERVER_KEEPALIVE_OPTIONS, attached_service
from shared.serde import envelope_from_proto, envelope_to_proto
from shared.serving import bind, folder_lock

log = logging.getLogger(__name__)

# Each node attached over the relay holds one of the server's threads for as long as its stream is
# open; these are on top of `max_workers`, so that attached nodes never crowd out the calls of
# principals and members (threads are made only when used). Every upper-tier English authority is
# 152: a network of them all could dial out.
RELAY_STREAMS = 160

SERVICE = "cagnet.v1.Coordinator"
JOINT_QUERY = f"/{SERVICE}/JointQuery"
PUBLISH_FEED = f"/{SERVICE}/PublishFeed"
FEED = f"/{SERVICE}/Feed"
# Each method's request payload and the roles that may call it. Who may read a feed is then the
# policy's `feed` rule; publishing needs the chair, who signs the joint queries a snapshot is made of.
METHODS: dict[str, tuple[type[Any], tuple[str, ...]]] = {
    JOINT_QUERY: (coordinator_pb2.JointQueryRequest, (CAG_CHAIR, MEMBER_AUTHORITY)),
    PUBLISH_FEED: (coordinator_pb2.FeedPublishRequest, (CAG_CHAIR,)),
    FEED: (coordinator_pb2.FeedRequest, (CAG_CHAIR, MEMBER_AUTHORITY, REGIONAL_BOARD)),
}


@dataclass
class CoordinatorRuntime:
    netdir: Path
    identity: Identity
    manifests: ManifestSource
    policies: PolicySource
    settings: CoordinatorSettings = field(default_factory=CoordinatorSettings)
    # None: kept in the audit database as well as memory (`shared.nonces`), so a restart refuses a replay.
    nonces: NonceCache = field(default=None)  # type: ignore[assignment]
    clients: NodeClients = field(init=False)
    register: RegisterRuntime | None = None
    # Every call to the coordinator's services and every scheduled snapshot (`coordinator.audit`).
    audit: CoordinatorAudit = field(init=False)
    _feeds: FeedStore | None = field(default=None, init=False)
    _feeds_lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    metrics: ServerMetrics = field(init=False)
    # Calls refused before any signature was tried, one audit row per address per minute (shared.guard).
    refusals: RefusalSummary = field(init=False)

    def __post_init__(self) -> None:
        self.refusals = RefusalSummary(self.write_refusals)
        self.clients = NodeClients(self.identity)
        url = self.settings.audit_database_url or default_audit_url(self.netdir)
        self.audit = CoordinatorAudit(self.netdir, self.manifests, self.policies, url=url)
        if self.nonces is None:
            self.nonces = StoredNonceCache(lambda: self.audit.engine)
        self.metrics = ServerMetrics(COORDINATOR, COORDINATOR)
        self.metrics.reading(
            "cagnet_audit_log_entries",
            "Entries in the coordinator's hash-chained audit log.",
            lambda: audit_log.head(self.audit.engine)[0],
        )
        self.metrics.reading(
            "cagnet_manifest_version",
            "The network manifest version in force.",
            lambda: self.manifests.current().version,
        )
        self.metrics.reading(
            "cagnet_policy_revision",
            "The revision of the signed network policy in force (absent: no valid policy).",
            lambda: self.policies.current().revision,
        )
        self.metrics.reading(
            "cagnet_member_nodes",
            "Member authorities the manifest lists.",
            lambda: len(self.manifests.current().members),
        )

    @property
    def feeds(self) -> FeedStore:
        with self._feeds_lock:
            if self._feeds is None:
                url = self.settings.feed_database_url or feeds_default_url(self.netdir)
                self._feeds = FeedStore(url)
            return self._feeds

    def close(self) -> None:
        self.clients.close()
        with self._feeds_lock:
            if self._feeds is not None:
                self._feeds.close()
        self.audit.close()

    @classmethod
    def open(cls, netdir: Path) -> CoordinatorRuntime:
        settings = CoordinatorSettings.load(netdir)  # a bad setting stops the coordinator here
        identity = network.coordinator_identity(netdir)
        manifests = ManifestSource(network.manifest_path(netdir), network.root_key(netdir))
        policies = PolicySource(network.policy_path(netdir), network.root_key(netdir), manifests=manifests)
        policies.current()  # the coordinator combines nothing without a valid network policy
        return cls(netdir, identity, manifests, policies, settings)

    def authenticate(self, method: str, envelope: dsse.Envelope, peer: str | None) -> Verified[Any]:
        if method == JOINT_QUERY and isinstance(self.nonces, DeferredNonceCache):
            # A joint query's nonce is stored with its audit entry, in one transaction, before the
            # bundle leaves (`CoordinatorServicer.JointQuery`): one disk sync on its path, not two.
            with self.nonces.batch():
                return self.audit.authenticate(METHODS, method, envelope, peer, nonces=self.nonces, route=_route)
        return self.audit.authenticate(METHODS, method, envelope, peer, nonces=self.nonces, route=_route)

    def spent_nonces(self) -> SpentNonces:
        """What the request just authenticated on this thread spent, not yet stored (`authenticate`)."""
        return self.nonces.spent() if isinstance(self.nonces, DeferredNonceCache) else SpentNonces(None, [])

    def publish_feed(self, verified: Verified[Any], peer: str | None) -> dsse.Envelope:
        """Run the chair's signed joint queries, keep CAG-level figures and receipts, sign, store."""
        message: coordinator_pb2.FeedPublishRequest = verified.message
        manifest = self.manifests.current()
        policy = self.policies.current()
        rule = policy.require_any_role("feed", verified.principal.roles)
        queries: dict[str, tuple[dsse.Envelope, coordinator_pb2.JointQueryRequest]] = {}
        for proto in message.queries:
            env = envelope_from_proto(proto)
            # Each inner query is checked as if sent on its own: same signer, fresh nonce, unexpired.
            inner = verify_request(
                env,
                coordinator_pb2.JointQueryRequest,
                manifest=manifest,
                audience=COORDINATOR,
                method=JOINT_QUERY,
                nonces=self.nonces,
                peer_party_id=peer,
            )
            if inner.issuer.id != verified.issuer.id:
                raise InvalidRequest("a feed's queries must be signed by its publisher")
            if inner.message.kind not in FEED_KINDS or inner.message.kind in queries:
                raise InvalidRequest(f"a feed is published from one query of each kind: {', '.join(FEED_KINDS)}")
            queries[inner.message.kind] = (env, inner.message)
        if set(queries) != set(FEED_KINDS):
            raise InvalidRequest(f"a feed is published from one query of each kind: {', '.join(FEED_KINDS)}")
        envelopes = {kind: self.joint_query(*queries[kind]) for kind in FEED_KINDS}
        envelope = self._store_snapshot(envelopes, rule, publisher=verified.issuer, manifest=manifest, policy=policy)
        log.info("feed snapshot published by %s", verified.issuer.id)
        return envelope

    def publish_mandated(self, mandate: dsse.Envelope, *, now: int | None = None) -> dsse.Envelope:
        """A scheduled snapshot: the feed's queries signed by the coordinator under the CAG chair's
        mandate for the slot `now` falls in. Each node checks the mandate and the slot, applies the
        policy to the chair and answers each (mandate, slot, method) once (`shared.mandate`)."""
        manifest = self.manifests.current()
        policy = self.policies.current()
        now = now_ms() if now is None else now
        opened, chair = open_mandate(mandate, manifest, now=now)
        slot = opened.slot_at(now / 1000)
        parameters: dict[str, object] = {"mandate": opened.mandate_id, "slot": slot}
        try:
            envelope = self._publish_mandated(mandate, manifest, policy, opened, chair, slot, now)
        except CagnetError as exc:
            self.audit.refused(chair, PUBLISH_FEED, parameters, exc, via=COORDINATOR, policy_digest=policy.digest)
            raise
        sequence, policy_digest = _snapshot_facts(envelope)
        self.audit.released(
            chair,
            PUBLISH_FEED,
            {**parameters, "sequence": sequence},
            envelope,
            via=COORDINATOR,
            policy_digest=policy_digest,
        )
        log.info("feed snapshot published under %s's mandate %s, slot %d", chair.id, opened.mandate_id, slot)
        return envelope

    def _publish_mandated(
        self,
        mandate: dsse.Envelope,
        manifest: Manifest,
        policy: Policy,
        opened: FeedMandate,
        chair: Party,
        slot: int,
        now: int,
    ) -> dsse.Envelope:
        rule = policy.require_any_role("feed", chair.roles)
        envelopes: dict[str, dsse.Envelope] = {}
        for kind in FEED_KINDS:
            header = request_header(
                self.identity, audience=COORDINATOR, method=JOINT_QUERY, policy_digest=policy.digest
            )
            query = query_message(opened.query(kind), header)
            query.mandate.CopyFrom(envelope_to_proto(mandate))
            query.slot = slot
            # The nodes check all this; checking first spares them a query they would refuse.
            check_mandated_query(query, manifest, current=True, now=now)
            query_env = sign_message(query, self.identity)
            envelopes[kind] = self._joint_query(query_env, query, principal=chair)
        evidence = MandateEvidence.of(opened, mandate, slot)
        return self._store_snapshot(
            envelopes, rule, publisher=chair, manifest=manifest, policy=policy, mandate=evidence
        )

    def _store_snapshot(
        self,
        envelopes: dict[str, dsse.Envelope],
        rule: AggregateRule,
        *,
        publisher: Party,
        manifest: Manifest,
        policy: Policy,
        mandate: MandateEvidence | None = None,
    ) -> dsse.Envelope:
        """Verify the three bundles, require the feed's minimum of authorities in every figure,
        and sign and store the snapshot."""
        bundles: dict[str, Bundle] = {kind: verify_bundle(envelopes[kind], manifest) for kind in FEED_KINDS}
        common = set.intersection(*(set(b.answered) for b in bundles.values()))
        if len(common) < rule.min_authorities:
            raise DisclosureRefused(
                f"minimum authorities: a feed needs at least {rule.min_authorities} authorities in every figure,"
                f" and {len(common)} answered all of them"
            )
        register = self.register or RegisterRuntime(self.netdir, self.identity, self.manifests)
        providers = provider_counts(register.engine, on=datetime.now(UTC).date())

        def make(sequence: int) -> tuple[dsse.Envelope, list[dsse.Envelope]]:
            snapshot = build_snapshot(
                manifest=manifest,
                sequence=sequence,
                publisher=publisher.id,
                policy_digest=policy.digest,
                bundles=bundles,
                bundle_payloads={k: e.payload for k, e in envelopes.items()},
                providers=providers,
                mandate=mandate,
            )
            return sign_snapshot(snapshot, self.identity.signing_key), [envelopes[k] for k in FEED_KINDS]

        return self.feeds.publish(make)

    def feed(self, verified: Verified[Any], context: grpc.ServicerContext) -> Iterator[dsse.Envelope]:
        message: coordinator_pb2.FeedRequest = verified.message
        policy = self.policies.current()
        policy.require_any_role("feed", verified.principal.roles)
        if message.from_sequence < 1:
            raise InvalidRequest("from_sequence: snapshots are numbered from 1")
        store = self.feeds
        context.add_callback(store.wake)  # a subscriber that goes away stops waiting at once
        ends = time.monotonic() + self.settings.feed_stream_max_s

        def active() -> bool:
            return bool(context.is_active()) and time.monotonic() < ends

        yield from store.stream(message.from_sequence, follow=message.follow, active=active)

    def write_refusals(self, address: str, parameters: dict[str, object], decision: str) -> None:
        """One audit row for the calls one address made in a minute that were refused before any
        signature was tried (`shared.guard`)."""
        self.audit.record(
            principal=f"address {address}",
            role="unauthenticated",
            method="/cagnet.v1.*",
            parameters=parameters,
            decision=decision,
        )

    def on_reject(self, method: str, peer: str | None, error: CagnetError, verified: Verified[Any] | None) -> None:
        log.info("rejected %s from %s: %s", method, peer, error.public_message)
        self.audit.on_reject(method, peer, error, verified)

    def joint_query(self, query_envelope: dsse.Envelope, query: coordinator_pb2.JointQueryRequest) -> dsse.Envelope:
        """A principal's own signed query (already verified), fanned out on their behalf."""
        return self.joint_bundle(query_envelope, query)[1]

    def joint_bundle(
        self, query_envelope: dsse.Envelope, query: coordinator_pb2.JointQueryRequest
    ) -> tuple[Bundle, dsse.Envelope]:
        """`joint_query`, with the bundle as built (what the audit entry names, without parsing it back)."""
        if query.HasField("mandate"):
            raise InvalidRequest("a principal's query carries no feed mandate")
        return self._joint_bundle(query_envelope, query, principal=self.manifests.current().party(query.header.issuer))

    def _joint_query(
        self, query_envelope: dsse.Envelope, query: coordinator_pb2.JointQueryRequest, *, principal: Party
    ) -> dsse.Envelope:
        return self._joint_bundle(query_envelope, query, principal=principal)[1]

    def _joint_bundle(
        self, query_envelope: dsse.Envelope, query: coordinator_pb2.JointQueryRequest, *, principal: Party
    ) -> tuple[Bundle, dsse.Envelope]:
        spec = KINDS.get(query.kind)
        if spec is None:
            raise InvalidRequest(f"unknown query kind; this coordinator answers: {', '.join(KINDS)}")
        if spec.check is not None:
            spec.check(query)
        if query.as_at and "as_at" not in spec.request_cls.DESCRIPTOR.fields_by_name:
            # A field the kind's node request lacks would be dropped on the way: refuse it instead.
            raise InvalidRequest("as_at: this kind of query is not asked as at a day")
        if query.cross_tab and "cross_tab" not in spec.request_cls.DESCRIPTOR.fields_by_name:
            raise InvalidRequest("cross_tab: only the equality profile takes a cross-tab")
        deadline_ms = query.node_deadline_ms or self.settings.node_deadline_ms
        if not 0 < deadline_ms <= self.settings.max_node_deadline_ms:
            raise InvalidRequest(f"node deadline must be between 1 and {self.settings.max_node_deadline_ms} ms")
        manifest = self.manifests.current()
        policy = self.policies.current()
        if query.header.policy_digest and query.header.policy_digest != policy.digest:
            raise StalePolicy()
        # Each node checks this too; refusing here spares them the round trip.
        rule = (
            policy.require_any_role(query.kind, principal.roles) if spec.policy_rule else _plan_rule(policy, principal)
        )
        # A network with fewer members than the rule's minimum can never make the figure: say so
        # first, before any node is asked (and before VFM's "every member must answer").
        require_enough_members(query.kind, rule, members=len(manifest.members))
        rounds = Round(
            self.clients, self.identity, manifest, policy, rule, query_envelope, query, deadline_s=deadline_ms / 1000
        )
        answered, missing, finish = protocols.run(
            rounds, spec, secret=lambda: load_secret(network.rounding_key_path(self.netdir))
        )
        self.metrics.fanned_out(spec.kind, missing=((m.authority, m.reason) for m in missing))
        try:
            require_min_authorities(len(answered), rule)
        except DisclosureRefused:
            raise too_few_answered(missing, answered=len(answered), rule=rule, manifest=manifest) from None
        bundle = build_bundle(
            manifest=manifest,
            query=query_envelope,
            query_message=query,
            answered=answered,
            missing=missing,
            policy_digest=policy.digest,
            result=finish(answered),
        )
        log.info("joint %s: %d answered, %d missing", query.kind, len(answered), len(missing))
        return bundle, sign_bundle(bundle, self.identity.signing_key)


def _route(principal: Party, method: str) -> str:
    """Where a principal refused `method` reads the CAG's figures instead: a regional board (or
    anyone who may read feeds but not ask) is pointed at the feed; "" when there is no such route."""
    if method != FEED and any(principal.has_role(r) for r in METHODS[FEED][1]):
        return "its route to the CAG's figures is the signed feed: `cagnet feed subscribe`"
    return ""


def _plan_rule(policy: Policy, principal: Party) -> AggregateRule:
    """A plan ("would you answer?") is for a principal who may ask some client-record question;
    each node then says, question by question, what the policy lets them ask. It releases no
    figure, so one authority's answer is enough."""
    for kind in PLAN_KINDS:
        if any(policy.permits(kind, role) for role in principal.roles):
            return policy.rule(kind).model_copy(update={"min_authorities": 1})
    raise NotPermitted("the network policy does not let this principal ask any client-record question")


_NODE_REFUSAL = re.compile(r"refused \((?P<code>[A-Z_]+)\): (?P<rule>.+)")
_REFUSAL_ERRORS: dict[str, type[CagnetError]] = {"INVALID_ARGUMENT": InvalidRequest, "PERMISSION_DENIED": NotPermitted}


def require_enough_members(kind: str, rule: AggregateRule, *, members: int) -> None:
    """Refuse at once a kind whose minimum of authorities the network cannot reach."""
    if members < rule.min_authorities:
        raise DisclosureRefused(
            f"minimum authorities: a joint {kind} figure needs at least {rule.min_authorities} authorities,"
            f" and this network has {members} member{'' if members == 1 else 's'}"
        )


def _named(code: str, manifest: Manifest) -> str:
    """An authority as its register names it, with its code: "Kent (E10000016)"."""
    try:
        return f"{register_of(manifest).authority(code).name} ({code})"
    except (KeyError, LookupError):
        return code


def too_few_answered(missing: list[Missing], *, answered: int, rule: AggregateRule, manifest: Manifest) -> CagnetError:
    """The refusal of a joint query too few authorities answered, saying why in the nodes' own
    words: a rule the nodes applied ("differencing: …", with the authorities that applied it)
    comes first, and the status is that rule's; authorities that could not be reached are called
    unreachable, with how many answered and the minimum needed. Rules and reasons only, never a
    figure."""
    refused: dict[tuple[str, str], list[str]] = {}  # (status, the node's message) -> authorities
    other: dict[str, list[str]] = {}
    for m in sorted(missing, key=lambda m: m.authority):
        match = _NODE_REFUSAL.fullmatch(m.reason)
        if match is not None and match["code"] != "UNAVAILABLE":
            refused.setdefault((match["code"], match["rule"]), []).append(m.authority)
        else:
            other.setdefault(m.reason, []).append(m.authority)
    asked = answered + len(missing)
    count = f"{answered} of {asked} authorities answered and the figure needs at least {rule.min_authorities}"
    why = "; ".join(f"{', '.join(_named(c, manifest) for c in codes)}: {reason}" for reason, codes in other.items())
    if not refused:
        lead = "unreachable" if set(other) <= {"unreachable"} else "too few answered"
        return TooFewAnswered(f"{lead}: {count} ({why})" if why else f"{lead}: {count}")
    # The rule most authorities applied leads.
    ranked = sorted(refused.items(), key=lambda item: (-len(item[1]), item[0]))
    (code, _), _codes = ranked[0]
    rules = "; ".join(f"{rule_message} (at {', '.join(codes)})" for (_, rule_message), codes in ranked)
    tail = f"; {why}" if why else ""
    return _REFUSAL_ERRORS.get(code, DisclosureRefused)(f"{rules}{tail}; so too few answered: {count}")


def _snapshot_facts(envelope: dsse.Envelope) -> tuple[int, str]:
    """A signed feed snapshot's sequence number and the policy its figures were made under."""
    snapshot = json.loads(envelope.payload)
    return int(snapshot["sequence"]), str(snapshot["policy_digest"])


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServicer):
    """Each call converts, asks the runtime, and writes what it sent to the audit log; a refusal is
    written by the interceptor's `on_reject`."""

    def __init__(self, runtime: CoordinatorRuntime) -> None:
        self.rt = runtime

    def JointQuery(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        verified = current_request()
        spent = self.rt.spent_nonces()
        try:
            bundle, envelope = self.rt.joint_bundle(envelope_from_proto(request), verified.message)
            # Who answered and who did not (authority codes only: never a figure or a reason's detail).
            parameters = {
                **request_parameters(verified.message),
                "answered": list(bundle.answered),
                "missing": [m.authority for m in bundle.missing],
            }
            policy_digest = bundle.policy_digest
            self.rt.audit.released(
                verified.principal, JOINT_QUERY, parameters, envelope, policy_digest=policy_digest, also=spent.write_in
            )
        finally:
            spent.close()  # a query refused on the way: its nonce is stored before the refusal leaves
        return envelope_to_proto(envelope)

    def PublishFeed(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        verified = current_request()
        snapshot = self.rt.publish_feed(verified, peer_party_id(context))
        sequence, policy_digest = _snapshot_facts(snapshot)
        parameters = {**request_parameters(verified.message), "sequence": sequence}
        self.rt.audit.released(verified.principal, PUBLISH_FEED, parameters, snapshot, policy_digest=policy_digest)
        return envelope_to_proto(snapshot)

    def Feed(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> Iterator[envelope_pb2.Envelope]:
        verified = current_request()
        asked = request_parameters(verified.message)
        for snapshot in self.rt.feed(verified, context):
            # One entry per snapshot sent: who received which signed snapshot, on which subscription.
            sequence, policy_digest = _snapshot_facts(snapshot)
            parameters = {**asked, "sequence": sequence}
            self.rt.audit.released(verified.principal, FEED, parameters, snapshot, policy_digest=policy_digest)
            yield envelope_to_proto(snapshot)


def create_server(
    runtime: CoordinatorRuntime,
    *,
    address: str,
    max_workers: int = 8,
    register: RegisterRuntime | None = None,
    governance: GovernanceRuntime | None = None,
) -> tuple[grpc.Server, int]:
    """The coordinator's server, also hosting the accreditation register (`register`, by default
    opened from the network folder; its store opens on first use) and the members' governance
    service (proposals and the published manifests)."""
    interceptor = SignedEnvelopeInterceptor((SERVICE,), runtime.authenticate, runtime.on_reject)
    register = register or RegisterRuntime(runtime.netdir, runtime.identity, runtime.manifests, nonces=runtime.nonces)
    governance = governance or GovernanceRuntime(
        runtime.netdir, runtime.identity, runtime.manifests, nonces=runtime.nonces
    )
    runtime.register = register
    # One audit log and one store of nonces for the three services, whoever built the other two runtimes.
    register.audit = governance.audit = runtime.audit
    register.nonces = governance.nonces = runtime.nonces
    checks = RequestGuard(summary=runtime.refusals)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers + RELAY_STREAMS),
        interceptors=[
            CallObserver(runtime.metrics),
            checks,
            interceptor,
            register.interceptor(),
            governance.interceptor(),
        ],
        options=[*server_options(MAX_MESSAGE), *SERVER_KEEPALIVE_OPTIONS],  # keepalive: the relay's streams
    )
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(CoordinatorServicer(runtime), server)
    add_to_server(server, register)
    add_governance(server, governance)
    add_relay(server, RelayServicer(runtime.clients.attached, runtime.manifests, runtime.nonces, runtime.audit))
    health_servicer = health.HealthServicer()
    # Whether each dial-out node is attached, for its own health check (it has no port to probe).
    runtime.clients.attached.watch(
        lambda authority, attached: health_servicer.set(
            attached_service(authority),
            health_pb2.HealthCheckResponse.SERVING if attached else health_pb2.HealthCheckResponse.NOT_SERVING,
        )
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    identity = runtime.identity
    credentials = server_credentials(identity.ca_cert_pem, identity.tls_key_pem, identity.tls_cert_pem)
    port = bind(server, address, credentials, what="the coordinator")
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set(REGISTER_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set(GOVERNANCE_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    return server, port


def serve(netdir: Path, *, listen: str, onboarding_listen: str | None = None, advertise: str | None = None) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully. One coordinator per network folder.
    `advertise`: the endpoint the manifest is to list, if not the one it lists (a new version,
    founding phase only; the CLI asks before passing it)."""
    with folder_lock(netdir, "the coordinator of the network"):
        _serve(netdir, listen=listen, onboarding_listen=onboarding_listen, advertise=advertise)


def _serve(netdir: Path, *, listen: str, onboarding_listen: str | None, advertise: str | None) -> None:
    before = network.read(netdir)
    if advertise is not None and advertise != before.coordinator_endpoint:
        after = network.set_endpoint(netdir, COORDINATOR, advertise)
        log.warning(
            "manifest version %d lists the coordinator at %s (was %s at version %d)",
            after.version,
            advertise,
            before.coordinator_endpoint or "no address",
            before.version,
        )
    runtime = CoordinatorRuntime.open(netdir)
    # A schedule more frequent than the chair's mandate allows stops the start here, before listening.
    schedule = FeedSchedule.prepare(runtime)
    register = RegisterRuntime.open(netdir)
    governance = GovernanceRuntime(netdir, runtime.identity, runtime.manifests, nonces=runtime.nonces)
    server, port = create_server(runtime, address=listen, register=register, governance=governance)
    onboarding_server = None
    onboarding_address = onboarding_listen or runtime.settings.onboarding_address
    if onboarding_address is not None:
        from coordinator.onboarding.server import create_server as create_onboarding
        from coordinator.onboarding.server import guard

        onboarding_checks = guard(governance)
        onboarding_server, onboarding_port = create_onboarding(
            governance, address=onboarding_address, metrics=runtime.metrics, checks=onboarding_checks
        )
        log.info("onboarding port %d (TLS, no client certificate; docs/onboarding.md)", onboarding_port)
    metrics: MetricsListener | None = None
    if runtime.settings.metrics_listen:
        metrics = serve_metrics(runtime.metrics, runtime.settings.metrics_listen)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("coordinator serving on port %d", port)
    if schedule is not None:
        schedule.start()
    stop.wait()
    if schedule is not None:
        schedule.stop()
    if onboarding_server is not None:
        onboarding_server.stop(grace=5).wait()
        if onboarding_checks.summary is not None:
            onboarding_checks.summary.flush(everything=True)
    stopped = server.stop(grace=5)  # no new call from here on, so no node attaches again
    # The relay streams never end by themselves: ended now, they do not hold the grace period open.
    runtime.clients.attached.close_all()
    stopped.wait()
    runtime.refusals.flush(everything=True)
    if metrics is not None:
        metrics.close()
    runtime.close()
    register.close()
