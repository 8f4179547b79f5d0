"""What `cagnet network status` reports about each party: whether it answers its health check, and
the certificate it actually presents, checked against the manifest's fingerprint and for expiry.

gRPC Python does not show a client the server's certificate, so the status check makes its own
TLS handshake (with the coordinator's client certificate, as the nodes require) to read it.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared import keyfile, pki
from shared.identity import Identity
from shared.interceptor import secure_channel
from shared.manifest import COORDINATOR, Party
from shared.relay import attached_service

EXPIRY_WARNING = timedelta(days=30)


@dataclass(frozen=True)
class PartyStatus:
    party: Party
    reachable: str  # "yes", "not serving", "no (UNAVAILABLE)", or "-" (no endpoint)
    certificate: str  # "expires 2027-11-23", "not the one the manifest lists", "-" ...
    warning: bool  # expires within EXPIRY_WARNING, or is not the listed certificate


def check(
    party: Party, me: Identity, identity_dir: Path, *, timeout_s: float, now: datetime, coordinator_endpoint: str = ""
) -> PartyStatus:
    """Health and presented certificate of a party with an endpoint; `identity_dir` holds `me`'s
    TLS key and certificate files (the handshake needs them as files). A dial-out node has no port:
    whether it is attached is asked of the coordinator at `coordinator_endpoint`, and its
    certificate was checked against the manifest when it attached."""
    if party.dials_out:
        if not coordinator_endpoint:
            return PartyStatus(party, "-", "-", False)
        attached = _health(party, me, timeout_s, endpoint=coordinator_endpoint, service=attached_service(party.id))
        unattached = "not attached (dial-out)"
        reachable = {"yes": "attached (dial-out)", "not serving": unattached, "no (NOT_FOUND)": unattached}.get(
            attached, attached
        )
        return PartyStatus(party, reachable, "checked when it attaches", False)
    if not party.endpoint:
        return PartyStatus(party, "-", "-", False)
    reachable = _health(party, me, timeout_s)
    try:
        cert = _presented_certificate(party.endpoint, me.ca_cert_pem, identity_dir, timeout_s)
    except (OSError, ssl.SSLError, ValueError) as exc:
        return PartyStatus(party, reachable, f"no handshake ({type(exc).__name__})", False)
    return replace(describe(party, cert, now=now), reachable=reachable)


def describe(party: Party, cert: x509.Certificate, *, now: datetime) -> PartyStatus:
    """Whether `cert` is the one the manifest lists for `party`, and when it expires."""
    expires = cert.not_valid_after_utc
    if pki.fingerprint(cert) != party.cert_fingerprint:
        return PartyStatus(party, "", "not the one the manifest lists", True)
    return PartyStatus(party, "", f"expires {expires:%Y-%m-%d}", expires < now + EXPIRY_WARNING)


def _health(party: Party, me: Identity, timeout_s: float, *, endpoint: str = "", service: str = "") -> str:
    # With `endpoint`, the coordinator is asked about `service` (a dial-out node's attachment).
    target, peer = (endpoint, COORDINATOR) if endpoint else (party.endpoint, party.id)
    channel = secure_channel(
        target, peer_party_id=peer, ca_pem=me.ca_cert_pem, key_pem=me.tls_key_pem, cert_pem=me.tls_cert_pem
    )
    try:
        request = health_pb2.HealthCheckRequest(service=service)
        reply = health_pb2_grpc.HealthStub(channel).Check(request, timeout=timeout_s)
        return "yes" if reply.status == health_pb2.HealthCheckResponse.SERVING else "not serving"
    except grpc.RpcError as exc:
        return f"no ({exc.code().name})"
    finally:
        channel.close()


def _presented_certificate(endpoint: str, ca_pem: bytes, identity_dir: Path, timeout_s: float) -> x509.Certificate:
    host, _, port = endpoint.rpartition(":")
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=ca_pem.decode())
    # The certificate names the party, not the host; it is checked by fingerprint instead.
    context.check_hostname = False
    context.load_cert_chain(identity_dir / "tls.crt", identity_dir / "tls.key", password=keyfile.passphrase())
    context.set_alpn_protocols(["h2"])
    address = (host.strip("[]"), int(port))
    with socket.create_connection(address, timeout=timeout_s) as raw, context.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    if der is None:
        raise ValueError("no certificate presented")
    return x509.load_der_x509_certificate(der)


def now() -> datetime:
    return datetime.now(UTC)
