"""The coordinator's gRPC server: authenticates principals, fans joint queries out to the member
nodes, verifies and combines their answers, and returns a bundle it signs. Holds no records.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections import Counter
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from pydantic_settings import BaseSettings, SettingsConfigDict

from coordinator import network
from coordinator.bundle import build_bundle, sign_bundle
from coordinator.fanout import Contribution, Missing, NodeClients
from coordinator.kinds import KINDS
from coordinator.records import RepeatMovers, count_repeat_movers
from coordinator.register_server import SERVICE as REGISTER_SERVICE
from coordinator.register_server import RegisterRuntime, add_to_server
from coordinator.rounds import Round, common_providers, vfm_benchmarks
from shared import dsse
from shared.auth import (
    NonceCache,
    Verified,
    digest,
    forwarded_request,
    request_header,
    require_role,
    verify_request,
    verify_response,
)
from shared.disclosure import load_secret, require_min_authorities
from shared.errors import CagnetError, DisclosureRefused, InvalidRequest, StalePolicy
from shared.identity import Identity
from shared.interceptor import SignedEnvelopeInterceptor, current_request, server_credentials
from shared.linkage import tokens_digest
from shared.manifest import CAG_CHAIR, COORDINATOR, MEMBER_AUTHORITY, Manifest, ManifestSource
from shared.pb.cagnet.v1 import coordinator_pb2, coordinator_pb2_grpc, envelope_pb2, node_pb2
from shared.policy import AggregateRule, PolicySource
from shared.serde import envelope_from_proto, envelope_to_proto

log = logging.getLogger(__name__)

SERVICE = "cagnet.v1.Coordinator"
JOINT_QUERY = f"/{SERVICE}/JointQuery"


class CoordinatorSettings(BaseSettings):
    """Read from CAGNET_COORDINATOR_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="CAGNET_COORDINATOR_")

    node_deadline_ms: int = 5000
    max_node_deadline_ms: int = 30000


@dataclass
class CoordinatorRuntime:
    netdir: Path
    identity: Identity
    manifests: ManifestSource
    policies: PolicySource
    settings: CoordinatorSettings = field(default_factory=CoordinatorSettings)
    nonces: NonceCache = field(default_factory=NonceCache)
    clients: NodeClients = field(init=False)

    def __post_init__(self) -> None:
        self.clients = NodeClients(self.identity)

    @classmethod
    def open(cls, netdir: Path) -> CoordinatorRuntime:
        identity = network.coordinator_identity(netdir)
        policies = PolicySource(network.policy_path(netdir), identity.public_key)
        policies.current()  # the coordinator combines nothing without a valid network policy
        return cls(netdir, identity, ManifestSource(network.manifest_path(netdir), identity.public_key), policies)

    def authenticate(self, method: str, envelope: dsse.Envelope, peer: str | None) -> Verified[Any]:
        if method != JOINT_QUERY:
            raise InvalidRequest("unknown method")
        verified = verify_request(
            envelope,
            coordinator_pb2.JointQueryRequest,
            manifest=self.manifests.current(),
            audience=COORDINATOR,
            method=method,
            nonces=self.nonces,
            peer_party_id=peer,
        )
        require_role(verified.principal, (CAG_CHAIR, MEMBER_AUTHORITY), method)
        return verified

    def on_reject(self, method: str, peer: str | None, error: CagnetError) -> None:
        log.info("rejected %s from %s: %s", method, peer, error.public_message)

    def joint_query(self, query_envelope: dsse.Envelope, query: coordinator_pb2.JointQueryRequest) -> dsse.Envelope:
        spec = KINDS.get(query.kind)
        if spec is None:
            raise InvalidRequest(f"unknown query kind; this coordinator answers: {', '.join(KINDS)}")
        deadline_ms = query.node_deadline_ms or self.settings.node_deadline_ms
        if not 0 < deadline_ms <= self.settings.max_node_deadline_ms:
            raise InvalidRequest(f"node deadline must be between 1 and {self.settings.max_node_deadline_ms} ms")
        manifest = self.manifests.current()
        policy = self.policies.current()
        if query.header.policy_digest and query.header.policy_digest != policy.digest:
            raise StalePolicy()
        # Each node checks this too; refusing here spares them the round trip.
        rule = policy.require_any_role(query.kind, manifest.party(query.header.issuer).roles)

        def build(member: Any) -> Any:
            header = request_header(
                self.identity,
                audience=member.id,
                method=spec.method,
                on_behalf_of=query_envelope,
                policy_digest=policy.digest,
            )
            return forwarded_request(spec.request_cls, header, query)

        rounds = Round(
            self.clients, self.identity, manifest, policy, rule, query_envelope, query, deadline_s=deadline_ms / 1000
        )
        result: Any = None
        if spec.kind == "common-providers":
            answered, missing = common_providers(rounds, spec)
        elif spec.kind == "vfm":
            answered, missing, result = vfm_benchmarks(rounds, spec)
        else:
            # Figures made under two policies are not comparable: Round.ask never combines them.
            answered, missing = rounds.ask(manifest.members, spec.rpc, build, spec.response_cls)
            if spec.receipt_cls is not None:
                _check_receipts(answered, missing, manifest)
        try:
            require_min_authorities(len(answered), rule)
        except DisclosureRefused as exc:
            # Say why each authority is missing (rules and reasons only, never figures).
            by_reason: dict[str, list[str]] = {}
            for m in sorted(missing, key=lambda m: m.authority):
                by_reason.setdefault(m.reason, []).append(m.authority)
            why = "; ".join(f"{', '.join(codes)}: {reason}" for reason, codes in by_reason.items())
            raise DisclosureRefused(f"{exc.public_message} ({why})" if why else exc.public_message) from None
        if spec.kind == "repeat-movers":
            result = self._repeat_movers(answered, rule)
        bundle = build_bundle(
            manifest=manifest,
            query=query_envelope,
            query_message=query,
            answered=answered,
            missing=missing,
            policy_digest=policy.digest,
            result=result,
        )
        log.info("joint %s: %d answered, %d missing", query.kind, len(answered), len(missing))
        return sign_bundle(bundle, self.identity.signing_key)

    def _repeat_movers(self, answered: list[Contribution], rule: AggregateRule) -> RepeatMovers:
        # The tokens exist only in this call: never logged, stored, or put in the bundle.
        return count_repeat_movers(
            ((c.authority, c.message.tokens, c.message.groups) for c in answered),
            rule,
            secret=load_secret(network.rounding_key_path(self.netdir)),
        )


def _check_receipts(answered: list[Contribution], missing: list[Missing], manifest: Manifest) -> None:
    """Keep only answers whose signed receipt attests exactly the tokens sent, made under the
    linkage key most answers share (a node with another key would match nobody)."""
    good = []
    for c in answered:
        try:
            receipt = verify_response(
                envelope_from_proto(c.message.receipt),
                node_pb2.LinkageReceipt,
                signer=manifest.party(c.authority),
                request_digest=digest(c.request.payload),
            )
        except CagnetError:
            missing.append(Missing(c.authority, "its receipt for the linkage tokens failed verification"))
            continue
        if receipt.tokens_digest != tokens_digest(c.message.tokens, c.message.groups) or (
            receipt.key_check != c.message.key_check
        ):
            missing.append(Missing(c.authority, "its receipt does not match the linkage tokens it sent"))
            continue
        good.append(c)
    checks = Counter(c.message.key_check for c in good)
    common = checks.most_common(1)[0][0] if checks else ""
    answered[:] = [c for c in good if c.message.key_check == common]
    for c in good:
        if c.message.key_check != common:
            missing.append(Missing(c.authority, "it holds a different network linkage key"))


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServicer):
    def __init__(self, runtime: CoordinatorRuntime) -> None:
        self.rt = runtime

    def JointQuery(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        verified = current_request()
        return envelope_to_proto(self.rt.joint_query(envelope_from_proto(request), verified.message))


def create_server(
    runtime: CoordinatorRuntime, *, address: str, max_workers: int = 8, register: RegisterRuntime | None = None
) -> tuple[grpc.Server, int]:
    """The coordinator's server, also hosting the accreditation register (`register`, by default
    opened from the network folder; its store opens on first use)."""
    interceptor = SignedEnvelopeInterceptor((SERVICE,), runtime.authenticate, runtime.on_reject)
    register = register or RegisterRuntime(runtime.netdir, runtime.identity, runtime.manifests, nonces=runtime.nonces)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers), interceptors=[interceptor, register.interceptor()]
    )
    coordinator_pb2_grpc.add_CoordinatorServicer_to_server(CoordinatorServicer(runtime), server)
    add_to_server(server, register)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    identity = runtime.identity
    port = server.add_secure_port(
        address, server_credentials(identity.ca_cert_pem, identity.tls_key_pem, identity.tls_cert_pem)
    )
    if port == 0:
        raise InvalidRequest(f"could not listen on {address}")
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set(REGISTER_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    return server, port


def serve(netdir: Path, *, listen: str) -> None:
    """Run until SIGTERM or SIGINT, then stop gracefully."""
    network.set_endpoint(netdir, COORDINATOR, listen)
    runtime = CoordinatorRuntime.open(netdir)
    register = RegisterRuntime.open(netdir)
    server, port = create_server(runtime, address=listen, register=register)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("coordinator serving on port %d", port)
    stop.wait()
    server.stop(grace=5).wait()
    runtime.clients.close()
    register.close()
