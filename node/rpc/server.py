"""The node's gRPC server: mTLS with client certificates required, the signed-envelope
interceptor, the standard health service, and one method handler that answers every `Node`
method through the plain functions of `node.answers.kinds` (the methods come from the registry).
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
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from sqlalchemy.engine import Engine

from node.answers import service
from node.answers.kinds import ANSWERS, DESCRIBE, NodeParts
from node.config import NodeConfig
from node.ledger import PersistentNonceCache, SpentNonces, spend_mandate_slot
from node.release import Releaser, load_rounding_secret
from node.rpc.dialout import DialOut
from node.store import ensure_authority, open_store
from shared import audit, dsse, keys
from shared.auth import (
    Verified,
    asks_same_question,
    now_ms,
    require_role,
    sign_message,
    verify_request,
)
from shared.authorities import register_of
from shared.errors import CagnetError, InvalidRequest, NotPermitted, StalePolicy
from shared.guard import MAX_MESSAGE, RefusalSummary, RequestGuard, server_options
from shared.identity import Identity
from shared.interceptor import (
    SignedEnvelopeInterceptor,
    current_peer_fingerprint,
    server_credentials,
)
from shared.kinds.registry import KINDS
from shared.mandate import check_use, mandate_of
from shared.manifest import CAG_CHAIR, COORDINATOR, MEMBER_AUTHORITY, Manifest, ManifestSource, Party, encode_key
from shared.metrics import CallObserver, MetricsListener, ServerMetrics, parse_listen, serve_metrics
from shared.pb.cagnet.v1 import coordinator_pb2, envelope_pb2, node_pb2
from shared.policy import Policy, PolicySource
from shared.serde import (
    envelope_to_proto,
)
from shared.serving import bind, folder_lock

log = logging.getLogger(__name__)

SERVICE = "cagnet.v1.Node"
JOINT_QUERY = "/cagnet.v1.Coordinator/JointQuery"

# Which request payload each method takes, and which roles may ask for it: read off the registry
# of kinds (`shared.kinds.registry`), with Describe, which any party may ask.
METHODS: dict[str, tuple[type[Any], tuple[str, ...]]] = {
    DESCRIBE: (node_pb2.DescribeRequest, (COORDINATOR, MEMBER_AUTHORITY, CAG_CHAIR)),
    **{method: (spec.request_of(method), spec.roles) for spec in KINDS.values() for method in spec.methods},
}
# Aggregates the coordinator may only ask for on a principal's behalf, with the joint query kind.
FORWARDED_KIND = {method: spec.kind for spec in KINDS.values() for method in spec.methods}
# The fields of a forwarded request that are the coordinator's part of a round rather than the
# principal's question; the node checks them itself (evidence, participants).
FILLED_IN = {spec.method: spec.filled_in for spec in KINDS.values() if spec.filled_in}
# Answered only to the coordinator forwarding a principal's query, never to a principal directly
# (`JointKind.coordinator_only` says why).
COORDINATOR_ONLY = frozenset(method for spec in KINDS.values() if spec.coordinator_only for method in spec.methods)


@dataclass
class NodeRuntime:
    """Everything a running node holds: its configuration, identity, store and trust anchors."""

    config: NodeConfig
    _identity: Identity
    engine: Engine
    manifests: ManifestSource
    policies: PolicySource
    releaser: Releaser
    nonces: PersistentNonceCache
    _keys_checked_at: int = 0  # the manifest version last checked for this node's next signing key
    _register_text: str | None = None  # the authority register the store was last written from
    _following: threading.Lock = field(default_factory=threading.Lock)  # one request follows a new version
    metrics: ServerMetrics = field(init=False)
    # The serving lock beside an SQLite store, held while a transport answers (`hold_serving`).
    _serving: contextlib.ExitStack | None = None
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

    def hold_serving(self) -> None:
        """Say that this process answers from the store, for as long as it does (`release_serving`,
        or the process's end): an SQLite import then builds beside the table and swaps it in, so
        the node keeps answering, rather than hold the write lock for the whole file
        (`node.imports.swap.serving`). Refused while an import holds the store alone."""
        if self._serving is None:
            from node.imports.swap import serving

            stack = contextlib.ExitStack()
            stack.enter_context(serving(self.engine))
            self._serving = stack

    def release_serving(self) -> None:
        if self._serving is not None:
            self._serving.close()
            self._serving = None

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
            promoted = keys.promote_if_listed(self.config.identity_dir, manifest, self.config.authority)
            # Or another process switched the folder's key first (`cagnet node sync-manifest` while
            # this node runs): take up the key the folder now holds once this version lists it.
            if promoted or self._listed_key(manifest) not in (None, encode_key(self._identity.public_key)):
                self._identity = self.config.identity()
            self._follow_register(manifest)
            self._keys_checked_at = manifest.version

    def _listed_key(self, manifest: Manifest) -> str | None:
        listed = next((p for p in manifest.parties if p.id == self.config.authority), None)
        return None if listed is None else listed.signing_key

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
        # The standard table set's edition for the records as they are (kept in the store, or
        # protected now), so that the first grid question after a start is a lookup.
        releaser.prepare_grid(policies.current())
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

    def keep_edition(self) -> None:
        """The standard table set's edition for the records and policy as they are now, protected
        ahead of any question (a lookup when it is current already)."""
        self.manifests.current()  # a manifest file replaced since: its members and register
        self._follow_manifest()
        self.releaser.prepare_grid(self.policies.current())

    def policy_for(self, verified: Verified[Any]) -> Policy:
        """The policy this node applies, if the request was made under it; else StalePolicy."""
        self._follow_manifest()  # before any answer is worked out: the register may have changed
        policy = self.policies.current()
        asked_under = verified.message.header.policy_digest
        if asked_under and asked_under != policy.digest:
            raise StalePolicy()
        return policy

    def authenticate(self, method: str, envelope: dsse.Envelope, peer: str | None) -> Verified[Any]:
        # The request's nonce and, forwarded, its principal's query at this method: stored with
        # the request's audit entry (`NodeServicer.answer`).
        with self.nonces.batch():
            return self._authenticate(method, envelope, peer)

    def _authenticate(self, method: str, envelope: dsse.Envelope, peer: str | None) -> Verified[Any]:
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


class NodeServicer:
    """The node's one method handler: every `Node` method is authenticated by the interceptor,
    answered by the plain function `node.answers.kinds.ANSWERS` maps it to, signed and audited."""

    def __init__(self, runtime: NodeRuntime) -> None:
        self.rt = runtime
        self.parts = NodeParts(
            authority=runtime.config.authority,
            engine=runtime.engine,
            releaser=runtime.releaser,
            identity=lambda: runtime.identity,
            manifests=runtime.manifests,
            linkage_key_path=runtime.config.linkage_key_path,
            person_key_path=runtime.config.person_key_path,
        )

    def handler(self) -> grpc.GenericRpcHandler:
        """One unary handler per method of the `Node` service, each given the verified request."""

        def handle(method: str) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                lambda verified, _context: self.answer(method, verified),
                request_deserializer=envelope_pb2.Envelope.FromString,
                response_serializer=envelope_pb2.Envelope.SerializeToString,
            )

        return grpc.method_handlers_generic_handler(
            SERVICE, {method.removeprefix(f"/{SERVICE}/"): handle(method) for method in ANSWERS}
        )

    def answer(self, method: str, verified: Verified[Any]) -> envelope_pb2.Envelope:
        """Check, answer, sign, audit: the one path for every method. The nonces the request spent
        are stored with its audit entry, in one transaction, before the reply leaves."""
        spent = self.rt.nonces.spent()
        try:
            answer = ANSWERS[method]
            parameters = answer.parameters(verified.message)
            try:
                policy = self.rt.policy_for(verified)
                with self.rt.releaser.pinned():
                    message = answer.answer(self.parts, policy, verified)
            except answer.refused_on as exc:
                self._refuse(verified, method, parameters, exc, spent)
                raise
            reply = self.parts.sign(message)
            self._record(verified, method, parameters, reply.payload, policy.digest, spent)
            return reply
        finally:
            spent.close()  # a request that ended without an audit entry of its own

    def _via(self, verified: Verified[Any]) -> str:
        return verified.issuer.id if verified.issuer is not verified.principal else ""

    def _record(
        self,
        verified: Verified[Any],
        method: str,
        parameters: dict[str, object],
        released: bytes,
        policy_digest: str,
        spent: SpentNonces,
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
            also=spent.write_in,
        )

    def _refuse(
        self,
        verified: Verified[Any],
        method: str,
        parameters: dict[str, object],
        exc: CagnetError,
        spent: SpentNonces,
    ) -> None:
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
            also=spent.write_in,
        )
        exc.audited = True


def _with_mandate(verified: Verified[Any], parameters: dict[str, object]) -> dict[str, object]:
    """The audit parameters, with the feed mandate and slot a scheduled query was asked under."""
    return parameters if verified.mandate is None else {**parameters, **verified.mandate.audit_parameters()}


def _checks(runtime: NodeRuntime) -> SignedEnvelopeInterceptor:
    return SignedEnvelopeInterceptor((SERVICE,), runtime.authenticate, runtime.on_reject, explicit=True)


def create_dial_out(runtime: NodeRuntime, *, endpoint: str | None = None, max_workers: int = 8) -> DialOut:
    """A started dial-out transport (`node.rpc.dialout`): the node opens no port and answers, on
    the stream it holds to the coordinator (`endpoint`, default the manifest's), exactly as the
    server below does."""
    runtime.hold_serving()
    dial_out = DialOut(runtime, NodeServicer(runtime), _checks(runtime), endpoint=endpoint, max_workers=max_workers)
    dial_out.start()
    return dial_out


def create_server(runtime: NodeRuntime, *, address: str | None = None, max_workers: int = 8) -> tuple[grpc.Server, int]:
    """A started server on `address` (default: the configured endpoint; use port 0 in tests)."""
    runtime.hold_serving()
    interceptor = _checks(runtime)
    checks = RequestGuard(summary=runtime.refusals)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        interceptors=[CallObserver(runtime.metrics), checks, interceptor],
        options=server_options(MAX_MESSAGE),
    )
    server.add_generic_rpc_handlers((NodeServicer(runtime).handler(),))
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    identity = runtime.identity
    creds = server_credentials(identity.ca_cert_pem, identity.tls_key_pem, identity.tls_cert_pem)
    port = bind(server, address or runtime.config.listen, creds, what=f"node {runtime.config.authority}")
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    return server, port


# How often a serving node checks that its standard table set is protected for its records and
# policy as they are (records written by another process, a newly adopted policy): a read of the
# store's write stamps when nothing changed, so that the protection is done here, not while a question waits.
EDITION_CHECK_S = 2.0


def _keep_editions(runtime: NodeRuntime, stop: threading.Event) -> None:
    while not stop.wait(EDITION_CHECK_S):
        try:
            runtime.keep_edition()
        except CagnetError as exc:
            log.info("standard table set not protected now: %s", exc.public_message)
        except Exception:  # the next round tries again; questions build the edition themselves
            log.exception("standard table set: protecting the edition failed")


def serve(config: NodeConfig, *, ready: Any = None) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully (in-flight calls get 5 s to finish). One
    server per node folder: a second is refused while this one runs (`shared.serving`)."""
    if config.metrics_listen:
        parse_listen(config.metrics_listen, setting="metrics_listen")  # a bad address stops the start here
    with folder_lock(config.nodedir, f"the node {config.authority}"):
        _serve(config, ready)


def _check_transport(config: NodeConfig, manifest: Manifest) -> None:
    # The coordinator reaches a member the way the manifest says: a node that says otherwise in
    # node.toml is never asked, and the operator should hear why from the node itself.
    listed = next((p.transport for p in manifest.members if p.id == config.authority), config.transport)
    if listed != config.transport:
        log.warning(
            "node.toml says transport %s but manifest version %d lists %s: the coordinator will not reach"
            " this node until both say the same (docs/onboarding.md, Firewall)",
            config.transport,
            manifest.version,
            listed,
        )


def _serve(config: NodeConfig, ready: Any) -> None:
    from node.network.governance import ManifestPoller

    runtime = NodeRuntime.open(config)
    _check_transport(config, runtime.manifests.current())
    server: grpc.Server | None = None
    dial_out: DialOut | None = None
    if config.transport == "dial-out":
        dial_out, port = create_dial_out(runtime), 0
    else:
        server, port = create_server(runtime)
    metrics: MetricsListener | None = None
    if config.metrics_listen:
        metrics = serve_metrics(runtime.metrics, config.metrics_listen)
    # New manifest versions come from the coordinator's Governance service, checked link by link.
    poller = ManifestPoller(
        runtime.manifests, lambda: runtime.identity, config.manifest_poll_s, linkage_key=config.linkage_key_path
    )
    runtime.metrics.reading(
        "cagnet_manifest_last_sync_timestamp_seconds",
        "When the node last reached the coordinator and checked its manifest (absent: not yet).",
        lambda: poller.last_synced_at,
    )
    poller.start()
    stop = threading.Event()
    keeper = threading.Thread(target=_keep_editions, args=(runtime, stop), name="edition-keeper", daemon=True)
    keeper.start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if dial_out is not None:
        log.info("node %s answering over the relay to the coordinator (no port open)", config.authority)
    else:
        log.info("node %s serving on port %d", config.authority, port)
    if ready is not None:
        ready(port)
    stop.wait()
    keeper.join(timeout=30)
    poller.stop()
    if dial_out is not None:
        dial_out.stop()
    if server is not None:
        server.stop(grace=5).wait()
    runtime.refusals.flush(everything=True)
    if metrics is not None:
        metrics.close()
    runtime.release_serving()
    runtime.engine.dispose()
