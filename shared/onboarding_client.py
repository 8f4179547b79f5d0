"""A joining authority's client for the coordinator's onboarding port (docs/onboarding.md).

The joiner has an invite and keys it has just made, but no certificate. It trusts nothing the
coordinator says beyond what the invite pins: the network CA certificate is taken from the TLS
handshake only if its SHA-256 is the invite's fingerprint, and gRPC then checks the coordinator's
certificate against it; the manifest chain is verified from version 1 under the founding key the
invite pins; every response must be signed by the coordinator key that verified chain lists, over
exactly the request sent.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import ssl
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf.message import Message

from shared import dsse, governance, pki
from shared.auth import digest, request_header, sign_message, verify_response
from shared.channel import ServiceRefused
from shared.errors import BadSignature, InvalidRequest, ManifestRefused, Unavailable, VerificationError
from shared.governance import Chain
from shared.identity import Identity
from shared.invite import Invite
from shared.manifest import COORDINATOR, Manifest, encode_key
from shared.pb.cagnet.v1 import onboarding_pb2, onboarding_pb2_grpc
from shared.serde import envelope_from_proto, envelope_to_proto

SERVICE = "cagnet.v1.Onboarding"
R = TypeVar("R", bound=Message)
# How long a call refused for rate waits before each retry: 7.5 s in all, longer than the port's
# bucket takes to refill by a few calls (docs/onboarding.md, "Rate limit").
RATE_LIMIT_WAITS_S = (0.5, 1.0, 2.0, 4.0)


def _chain_der(tls: ssl.SSLSocket) -> list[bytes]:
    """The certificates the server presented, unverified (Python 3.13 has the public method; 3.11
    and 3.12 have it on the underlying object)."""
    public = getattr(tls, "get_unverified_chain", None)
    if public is not None:
        return [bytes(c) for c in public()]
    chain = tls._sslobj.get_unverified_chain() or []  # type: ignore[attr-defined]
    return [c.public_bytes(ssl._ssl.ENCODING_DER) for c in chain]  # type: ignore[attr-defined]


def fetch_network_ca(endpoint: str, fingerprint: str, *, timeout_s: float = 10.0) -> bytes:
    """The network CA certificate (PEM) the onboarding port presents after its own, if its SHA-256
    is `fingerprint`; else VerificationError. Nothing is trusted from this handshake but the bytes
    the fingerprint pins: gRPC then checks the coordinator's certificate against them."""
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidRequest(f"{endpoint!r} is not HOST:PORT")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # checked below by the pinned fingerprint, then by gRPC
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s) as raw,
            context.wrap_socket(raw) as tls,
        ):
            presented = _chain_der(tls)
    except OSError as exc:
        raise Unavailable(f"the coordinator's onboarding port at {endpoint} is not reachable ({exc})") from None
    for der in presented:
        if hashlib.sha256(der).hexdigest() == fingerprint:
            return x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM)
    raise VerificationError(
        f"the server at {endpoint} does not present the network CA the invite pins"
        " (an invite for another network, or not the coordinator)"
    )


@dataclass(frozen=True)
class PublicFiles:
    """The network's public files, verified: the chain from version 1, the policy file, the CA."""

    chain: Chain
    policy: bytes
    ca_pem: bytes

    @property
    def manifest(self) -> Manifest:
        return self.chain.head


class OnboardingClient:
    """One TLS channel to the onboarding port, acting as the joiner `party_id` with its new key."""

    def __init__(
        self,
        endpoint: str,
        invite: Invite,
        *,
        party_id: str,
        signing_key: Ed25519PrivateKey,
        ca_pem: bytes,
        rate_limit_waits_s: tuple[float, ...] = RATE_LIMIT_WAITS_S,
    ) -> None:
        self.invite, self.target, self.ca_pem = invite, endpoint, ca_pem
        self.rate_limit_waits_s = rate_limit_waits_s
        # A joiner's identity before it has a certificate: it signs, it presents nothing over TLS.
        self.identity = Identity(party_id, signing_key, b"", b"", ca_pem)
        self._channel = grpc.secure_channel(
            endpoint,
            grpc.ssl_channel_credentials(root_certificates=ca_pem),
            options=[("grpc.ssl_target_name_override", pki.dns_name_for(COORDINATOR))],
        )
        self._stub = onboarding_pb2_grpc.OnboardingStub(self._channel)
        self._coordinator: Any = None  # the coordinator party, from the verified chain

    def _proof(self) -> onboarding_pb2.InviteProof:
        return onboarding_pb2.InviteProof(
            invite_id=self.invite.invite_id,
            secret=self.invite.secret,
            network=self.invite.network,
            signing_key=encode_key(self.identity.public_key),
        )

    def _send(self, name: str, request: Message) -> tuple[dsse.Envelope, bytes]:
        # The onboarding port limits calls per client address, and joiners can share one (several
        # authorities behind one shared-services gateway, a demo on one machine): a refusal for
        # rate is waited out, with a fresh header each time, before it is reported.
        for wait_s in (*self.rate_limit_waits_s, None):
            request.header.CopyFrom(  # type: ignore[attr-defined]
                request_header(self.identity, audience=COORDINATOR, method=f"/{SERVICE}/{name}")
            )
            request.invite.CopyFrom(self._proof())  # type: ignore[attr-defined]
            envelope = sign_message(request, self.identity)
            try:
                reply = getattr(self._stub, name)(envelope_to_proto(envelope), timeout=30.0)
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    raise Unavailable(f"the coordinator's onboarding port at {self.target} is not reachable") from None
                if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and wait_s is not None:
                    time.sleep(wait_s)
                    continue
                raise ServiceRefused(exc.code(), exc.details() or "") from None
            return envelope_from_proto(reply), digest(envelope.payload)
        raise AssertionError("unreachable: the last wait is None")

    def public_files(self) -> PublicFiles:
        """The manifest chain (verified from version 1 under the invite's key, for the invite's
        network and CA), the policy file and the CA certificate, in a response signed by the
        coordinator key the chain lists."""
        reply, request_digest = self._send("PublicFiles", onboarding_pb2.PublicFilesRequest())
        unverified = onboarding_pb2.PublicFilesResponse()
        unverified.ParseFromString(reply.payload)
        envelopes = [envelope_from_proto(e) for e in unverified.manifests]
        if not envelopes:
            raise ManifestRefused("the coordinator sent no manifest")
        root = dsse.load_public_key(base64.b64decode(self.invite.coordinator_key))
        chain = Chain(root)
        by_version = {governance.parse_unverified(e).version: e for e in envelopes}
        chain.advance(envelopes[-1], lambda v: by_version[v] if v in by_version else _missing(v))
        head = chain.head
        if head.network != self.invite.network:
            raise ManifestRefused(f"the coordinator serves network {head.network!r}, the invite is for another")
        if head.ca_fingerprint != self.invite.ca_fingerprint:
            raise ManifestRefused("the manifest names another CA than the invite pins")
        self._coordinator = head.party(COORDINATOR)
        message = verify_response(
            reply, onboarding_pb2.PublicFilesResponse, signer=self._coordinator, request_digest=request_digest
        )
        if hashlib.sha256(
            pki.load_cert(message.ca_certificate).public_bytes(serialization.Encoding.DER)
        ).hexdigest() != (self.invite.ca_fingerprint):
            raise BadSignature("the CA certificate sent is not the one the invite pins")
        return PublicFiles(chain, bytes(message.policy), bytes(message.ca_certificate))

    def _verified(self, reply: dsse.Envelope, request_digest: bytes, cls: type[R]) -> R:
        if self._coordinator is None:
            self.public_files()
        return verify_response(reply, cls, signer=self._coordinator, request_digest=request_digest)

    def file_join(self, join_request: dsse.Envelope) -> onboarding_pb2.JoinStatusResponse:
        request = onboarding_pb2.FileJoinRequest(join_request=envelope_to_proto(join_request))
        reply, request_digest = self._send("FileJoin", request)
        return self._verified(reply, request_digest, onboarding_pb2.JoinStatusResponse)

    def status(self) -> onboarding_pb2.JoinStatusResponse:
        reply, request_digest = self._send("JoinStatus", onboarding_pb2.JoinStatusRequest())
        return self._verified(reply, request_digest, onboarding_pb2.JoinStatusResponse)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> OnboardingClient:
        return self

    def __exit__(self, *exc: tuple[type[BaseException] | None, BaseException | None, TracebackType | None]) -> None:
        self.close()


def _missing(version: int) -> dsse.Envelope:
    raise ManifestRefused(f"the coordinator's history lacks manifest version {version}")
