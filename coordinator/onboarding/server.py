"""The Onboarding gRPC service: what an authority with no certificate yet may ask the coordinator
(proto/cagnet/v1/onboarding.proto, docs/onboarding.md).

It runs as a gRPC server of its own on its own port (the onboarding port), with TLS server
authentication only: gRPC Python's server credentials either require a client certificate or do
not ask for one, and a server serves every service it hosts on every port, so the mTLS port stays
exactly as it was and this server hosts nothing but Onboarding and health. Each call is checked
here, in order: a signed envelope whose payload names the joiner's key, the signature under that
key, the header (audience `coordinator`, method, expiry, nonce), then the invite
(`coordinator.onboarding.check`). Only public files and the caller's own join status are served.
Every call answered, or refused once its invite is known, goes in the coordinator's audit log, as
the joiner's authority (or the invite) with the role `joiner`. Before any of that (`shared.guard`):
a request over 64 KiB, a body that does not parse or an envelope with more than 4 signatures is
refused before a signature is tried, and each client address may make 30 calls at once, then 10 a
second (RESOURCE_EXHAUSTED beyond). Calls refused before their invite is known are counted in the
metrics and written to the audit log as one row per client address per minute, not one each.
"""

from __future__ import annotations

import base64
import logging
from concurrent import futures
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from coordinator.audit import CoordinatorAudit, request_parameters
from coordinator.governance.server import GovernanceRuntime
from coordinator.onboarding import invites as onboarding
from shared import dsse
from shared.auth import NONCE_BYTES, check_header, digest, now_ms, payload_type_for, response_header, sign_message
from shared.errors import BadSignature, CagnetError, InvalidRequest, InviteRefused
from shared.guard import (
    ONBOARDING_MAX_MESSAGE,
    RefusalSummary,
    RequestGuard,
    TokenBucket,
    client_address,
    server_options,
)
from shared.identity import Identity
from shared.manifest import COORDINATOR
from shared.metrics import CallObserver, ServerMetrics
from shared.pb.cagnet.v1 import envelope_pb2, onboarding_pb2, onboarding_pb2_grpc
from shared.serde import envelope_from_proto, envelope_to_proto
from shared.serving import bind

log = logging.getLogger(__name__)

SERVICE = "cagnet.v1.Onboarding"
PUBLIC_FILES = f"/{SERVICE}/PublicFiles"
FILE_JOIN = f"/{SERVICE}/FileJoin"
JOIN_STATUS = f"/{SERVICE}/JoinStatus"
JOINER = "joiner"
UNAUTHENTICATED = "unauthenticated"
# A joiner makes a handful of calls, then asks its status every few seconds: 10 a second with a
# burst of 30 never slows one, and holds a client trying invites to 10 a second instead of 460.
RATE_PER_S = 10.0
BURST = 30

M = TypeVar("M", bound=Message)


def _opened(envelope: dsse.Envelope, message_cls: type[M], method: str, runtime: GovernanceRuntime) -> M:
    """The request, if it is signed by the key it names and its header is good for `method`."""
    if envelope.payload_type != payload_type_for(message_cls):
        raise InvalidRequest(f"expected a {message_cls.DESCRIPTOR.name} payload")
    message = message_cls()
    try:
        message.ParseFromString(envelope.payload)
    except DecodeError:
        raise InvalidRequest(f"malformed {message_cls.DESCRIPTOR.name} payload") from None
    invite = message.invite  # type: ignore[attr-defined]
    try:
        key = dsse.load_public_key(base64.b64decode(invite.signing_key, validate=True))
    except (CagnetError, ValueError):
        raise BadSignature("the request names no valid signing key") from None
    dsse.verify(envelope, key)
    now = now_ms()
    header = message.header  # type: ignore[attr-defined]
    check_header(header, audience=COORDINATOR, method=method, now=now)
    if len(header.nonce) < NONCE_BYTES:
        raise InvalidRequest("the request nonce is too short")
    runtime.nonces.check_and_add(header.nonce, header.expires_at_ms, now)
    return message


def _shows_secret(runtime: GovernanceRuntime, message: Any) -> bool:
    """Whether the request holds a real invite's secret (whatever the invite's state now)."""
    try:
        onboarding.check(runtime.netdir, _proof(message))
    except InviteRefused as exc:
        return type(exc) is not InviteRefused or "revoked" in exc.public_message
    return True


def _proof(message: Any) -> onboarding.Proof:
    invite = message.invite
    return onboarding.Proof(
        invite_id=invite.invite_id, secret=bytes(invite.secret), network=invite.network, signing_key=invite.signing_key
    )


def guard(runtime: GovernanceRuntime) -> RequestGuard:
    """The onboarding port's cheap checks, rate limit and summary of anonymous refusals, written
    to the coordinator's audit log (`shared.guard`)."""

    def write(address: str, parameters: dict[str, object], decision: str) -> None:
        runtime.audit.record(
            principal=f"address {address}",
            role=UNAUTHENTICATED,
            method=f"/{SERVICE}/*",
            parameters=parameters,
            decision=decision,
        )

    return RequestGuard(
        (f"/{SERVICE}/",), limiter=TokenBucket(rate=RATE_PER_S, burst=BURST), summary=RefusalSummary(write)
    )


class OnboardingServicer(onboarding_pb2_grpc.OnboardingServicer):
    def __init__(self, runtime: GovernanceRuntime, identity: Identity, summary: RefusalSummary | None = None) -> None:
        self.rt = runtime
        self.identity = identity
        self.summary = summary

    @property
    def audit(self) -> CoordinatorAudit:
        return self.rt.audit

    def _serve(
        self, method: str, request: envelope_pb2.Envelope, message_cls: type[M], answer: Any, context: Any
    ) -> Any:
        who, asked = "unknown", {}
        known = False  # whether the caller has shown an invite's secret
        try:
            envelope = envelope_from_proto(request)
            message = _opened(envelope, message_cls, method, self.rt)
            asked = {k: v for k, v in request_parameters(message).items() if k != "invite"}
            asked["invite"] = message.invite.invite_id  # type: ignore[attr-defined]  # never the secret
            who = f"invite {message.invite.invite_id}"  # type: ignore[attr-defined]
            known = _shows_secret(self.rt, message)
            reply, outcome, who = answer(message, who)
            reply.header.CopyFrom(response_header(self.identity, request_digest=digest(envelope.payload)))
            signed = sign_message(reply, self.identity)
            self.audit.record(
                principal=who,
                role=JOINER,
                method=method,
                parameters={**asked, **outcome},
                decision="released",
                released=signed.payload,
            )
            return envelope_to_proto(signed)
        except CagnetError as exc:
            if not known and self.summary is not None:
                # Anyone can reach this port: one row per address per minute, not one per call.
                log.info("onboarding refused %s from %s: %s", method, client_address(context), exc.public_message)
                self.summary.note(client_address(context), method, exc)
                context.abort(exc.code, exc.public_message)
            log.warning("onboarding refused %s from %s: %s", method, who, exc.public_message)
            self._record_refusal(who, method, asked, f"refused: {exc.public_message}")
            context.abort(exc.code, exc.public_message)
        except Exception:
            log.exception("unexpected error in %s", method)
            self._record_refusal(who, method, asked, "rejected: internal error")
            context.abort(grpc.StatusCode.INTERNAL, "internal error")

    def _record_refusal(self, who: str, method: str, asked: dict[str, object], decision: str) -> None:
        try:
            self.audit.record(principal=who, role=JOINER, method=method, parameters=asked, decision=decision)
        except Exception:
            log.exception("could not write a refused onboarding call to the coordinator's audit log")

    def PublicFiles(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        def answer(message: onboarding_pb2.PublicFilesRequest, who: str) -> tuple[Message, dict[str, object], str]:
            record = onboarding.check(self.rt.netdir, _proof(message))
            manifests, policy, ca = onboarding.public_files(self.rt.netdir)
            reply = onboarding_pb2.PublicFilesResponse(
                manifests=[envelope_to_proto(e) for e in manifests], policy=policy, ca_certificate=ca
            )
            return reply, {"manifest_version": len(manifests)}, str(record.get("party_id") or who)

        return self._serve(PUBLIC_FILES, request, onboarding_pb2.PublicFilesRequest, answer, context)

    def FileJoin(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        def answer(message: onboarding_pb2.FileJoinRequest, who: str) -> tuple[Message, dict[str, object], str]:
            if not message.HasField("join_request"):
                raise InvalidRequest("join_request: the signed join request is missing")
            join_request = envelope_from_proto(message.join_request)
            filed = onboarding.file_join(self.rt.netdir, _proof(message), join_request)
            log.info("onboarding: join request filed for %s (%s)", filed.party_id, filed.name)
            return self._status(message), {"state": onboarding.FILED}, filed.party_id

        return self._serve(FILE_JOIN, request, onboarding_pb2.FileJoinRequest, answer, context)

    def JoinStatus(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        def answer(message: onboarding_pb2.JoinStatusRequest, who: str) -> tuple[Message, dict[str, object], str]:
            reply = self._status(message)
            record = onboarding.check(self.rt.netdir, _proof(message))
            return reply, {"state": reply.state}, str(record.get("party_id") or who)

        return self._serve(JOIN_STATUS, request, onboarding_pb2.JoinStatusRequest, answer, context)

    def _status(self, message: Any) -> onboarding_pb2.JoinStatusResponse:
        found = onboarding.state(self.rt.netdir, _proof(message))
        return onboarding_pb2.JoinStatusResponse(
            state=found.state,
            proposal_id=found.proposal_id,
            approvals=found.approvals,
            needed=found.needed,
            certificate=found.certificate,
            sealed_linkage_key=envelope_to_proto(found.sealed) if found.sealed is not None else None,
            manifest_version=found.manifest_version,
        )


def create_server(
    runtime: GovernanceRuntime,
    *,
    address: str,
    max_workers: int = 4,
    metrics: ServerMetrics | None = None,
    checks: RequestGuard | None = None,
) -> tuple[grpc.Server, int]:
    """The onboarding server on `address` (TLS, no client certificate asked for). It presents the
    coordinator's certificate with the network CA after it, so that a joiner holding only the CA's
    fingerprint can check the chain (`shared.onboarding_client`). With `metrics`, its calls are
    counted and logged with the coordinator's (`shared.metrics`). `checks`: the port's guard (by
    default `guard(runtime)`); whoever stops the server flushes its summary."""
    identity = runtime.identity
    checks = checks or guard(runtime)
    observers: list[grpc.ServerInterceptor] = [CallObserver(metrics)] if metrics is not None else []
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        interceptors=[*observers, checks],
        options=server_options(ONBOARDING_MAX_MESSAGE),
    )
    servicer = OnboardingServicer(runtime, identity, checks.summary)
    onboarding_pb2_grpc.add_OnboardingServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    chain = identity.tls_cert_pem + identity.ca_cert_pem
    credentials = grpc.ssl_server_credentials([(identity.tls_key_pem, chain)], require_client_auth=False)
    port = bind(server, address, credentials, what="the onboarding port")
    server.start()
    health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    return server, port
