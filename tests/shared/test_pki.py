"""The network PKI: issuing and verifying party certificates, and mTLS against a real gRPC server."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from shared import pki
from shared.errors import InvalidRequest, VerificationError

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
NODE = "E06000035"
SERVER = "coordinator"


@dataclass(frozen=True)
class Ca:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


@pytest.fixture(scope="module")
def ca() -> Ca:
    return Ca(*pki.create_ca("test-network"))


@pytest.fixture(scope="module")
def other_ca() -> Ca:
    return Ca(*pki.create_ca("another-network"))


def _issue(ca: Ca, party_id: str = NODE, **kwargs: object) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = pki.new_tls_key()
    kwargs.setdefault("server", False)
    cert = pki.issue_certificate(ca.key, ca.cert, party_id=party_id, public_key=key.public_key(), **kwargs)  # type: ignore[arg-type]
    return key, cert


# --- the CA ------------------------------------------------------------------------------------


def test_ca_may_sign_leaf_certificates_only(ca: Ca) -> None:
    constraints = ca.cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca and constraints.value.path_length == 0
    usage = ca.cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    assert not usage.value.digital_signature
    ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert ca.cert.issuer == ca.cert.subject
    assert isinstance(ca.cert.public_key(), ec.EllipticCurvePublicKey)


def test_ca_validity_is_timezone_aware_and_starts_from_now() -> None:
    _, cert = pki.create_ca("dated", valid_days=10, now=NOW)
    assert cert.not_valid_before_utc <= NOW < cert.not_valid_after_utc
    assert cert.not_valid_after_utc == NOW + timedelta(days=10)


# --- issuing and verifying ---------------------------------------------------------------------


def test_issued_certificate_verifies_and_names_its_party(ca: Ca) -> None:
    _, cert = _issue(ca)
    assert pki.verify_certificate(cert, ca.cert) == NODE
    assert pki.party_id_from_certificate(cert) == NODE
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == NODE


def test_leaf_certificate_extensions(ca: Ca) -> None:
    _, cert = _issue(ca, "cag-chair")
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == ["urn:cagnet:party:cag-chair"]
    assert san.get_values_for_type(x509.DNSName) == ["cag-chair.cagnet"]
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and not constraints.value.ca
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest


def test_server_certificate_carries_server_auth_and_its_hosts(ca: Ca) -> None:
    _, cert = _issue(ca, SERVER, server=True, hosts=["127.0.0.1", "::1", "coordinator.example.org"])
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH}
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert san.get_values_for_type(x509.DNSName) == ["coordinator.cagnet", "coordinator.example.org"]


def test_dns_name_for_lowercases_the_party_id() -> None:
    assert pki.dns_name_for("E06000035") == "e06000035.cagnet"
    assert pki.dns_name_for("cag-chair") == "cag-chair.cagnet"
    for bad in ("", "a.b", "-x", "x" * 64, "E06 000035"):
        with pytest.raises(InvalidRequest):
            pki.dns_name_for(bad)


def test_certificate_from_another_ca_is_refused(ca: Ca, other_ca: Ca) -> None:
    _, cert = _issue(other_ca)
    with pytest.raises(VerificationError, match="not issued by this network's CA"):
        pki.verify_certificate(cert, ca.cert)


def test_certificate_signed_by_an_impostor_with_the_same_ca_name_is_refused(ca: Ca) -> None:
    impostor_key = ec.generate_private_key(ec.SECP256R1())
    key = pki.new_tls_key()
    cert = pki.issue_certificate(impostor_key, ca.cert, party_id=NODE, public_key=key.public_key(), server=False)
    assert cert.issuer == ca.cert.subject
    with pytest.raises(VerificationError, match="signature does not verify"):
        pki.verify_certificate(cert, ca.cert)


def test_expired_certificate_is_refused(ca: Ca) -> None:
    _, cert = _issue(ca, not_before=NOW - timedelta(days=30), not_after=NOW - timedelta(days=1))
    with pytest.raises(VerificationError, match="certificate expired"):
        pki.verify_certificate(cert, ca.cert, now=NOW)
    assert pki.verify_certificate(cert, ca.cert, now=NOW - timedelta(days=2)) == NODE


def test_not_yet_valid_certificate_is_refused(ca: Ca) -> None:
    _, cert = _issue(ca, not_before=NOW + timedelta(days=1), not_after=NOW + timedelta(days=30))
    with pytest.raises(VerificationError, match="certificate not yet valid"):
        pki.verify_certificate(cert, ca.cert, now=NOW)


def test_certificate_past_the_ca_lifetime_is_refused() -> None:
    ca = Ca(*pki.create_ca("short-lived", valid_days=1, now=NOW))
    _, cert = _issue(ca, not_before=NOW, not_after=NOW + timedelta(days=30))
    with pytest.raises(VerificationError, match="network CA certificate expired"):
        pki.verify_certificate(cert, ca.cert, now=NOW + timedelta(days=2))


def _leaf_without_party_uri(ca: Ca, names: list[x509.GeneralName] | None) -> x509.Certificate:
    key = pki.new_tls_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NODE)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
    )
    if names is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


@pytest.mark.parametrize(
    "names",
    [
        pytest.param(None, id="no-san"),
        pytest.param([x509.DNSName("e06000035.cagnet")], id="dns-only"),
        pytest.param([x509.UniformResourceIdentifier("urn:other:party:E06000035")], id="foreign-uri"),
        pytest.param([x509.UniformResourceIdentifier("urn:cagnet:party:")], id="empty-id"),
    ],
)
def test_certificate_without_a_party_uri_is_refused(ca: Ca, names: list[x509.GeneralName] | None) -> None:
    cert = _leaf_without_party_uri(ca, names)
    with pytest.raises(VerificationError, match="certificate carries no cagnet party id"):
        pki.verify_certificate(cert, ca.cert, now=NOW)


def test_certificate_with_two_party_uris_is_refused(ca: Ca) -> None:
    cert = _leaf_without_party_uri(
        ca,
        [
            x509.UniformResourceIdentifier("urn:cagnet:party:E06000035"),
            x509.UniformResourceIdentifier("urn:cagnet:party:coordinator"),
        ],
    )
    with pytest.raises(VerificationError, match="more than one"):
        pki.party_id_from_certificate(cert)


def test_naive_timestamps_are_refused(ca: Ca) -> None:
    _, cert = _issue(ca)
    with pytest.raises(ValueError, match="timezone-aware"):
        pki.verify_certificate(cert, ca.cert, now=datetime(2025, 6, 1))


def test_fingerprint_is_the_sha256_of_the_der_encoding(ca: Ca) -> None:
    _, cert = _issue(ca)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert pki.fingerprint(cert) == hashlib.sha256(der).hexdigest()
    assert pki.fingerprint(pki.load_cert(pki.cert_pem(cert))) == pki.fingerprint(cert)
    _, same_party_again = _issue(ca)
    assert pki.fingerprint(same_party_again) != pki.fingerprint(cert)


# --- PEM ---------------------------------------------------------------------------------------


def test_pem_round_trips(ca: Ca) -> None:
    key, cert = _issue(ca)
    assert pki.load_cert(pki.cert_pem(cert)) == cert
    loaded = pki.load_tls_key(pki.key_pem(key))
    assert loaded.private_numbers() == key.private_numbers()
    assert pki.key_pem(key).startswith(b"-----BEGIN PRIVATE KEY-----")


def test_load_cert_refuses_garbage() -> None:
    for garbage in (
        b"",
        b"not a certificate",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ):
        with pytest.raises(InvalidRequest):
            pki.load_cert(garbage)


@pytest.mark.parametrize(
    "other_key",
    [
        pytest.param(Ed25519PrivateKey.generate, id="ed25519"),
        pytest.param(lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), id="rsa"),
    ],
)
def test_load_tls_key_refuses_keys_that_are_not_ec(other_key: object) -> None:
    pem = other_key().private_bytes(  # type: ignore[operator]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InvalidRequest, match="not an EC"):
        pki.load_tls_key(pem)
    with pytest.raises(InvalidRequest):
        pki.load_tls_key(b"garbage")


# --- mTLS against a real gRPC server -----------------------------------------------------------


class _RecordingHealth(health.HealthServicer):
    """The standard health service, remembering the TLS auth context of the last caller."""

    def __init__(self) -> None:
        super().__init__()
        self.last_auth_context: dict[str, list[bytes]] = {}

    def Check(self, request: health_pb2.HealthCheckRequest, context: grpc.ServicerContext) -> object:
        self.last_auth_context = context.auth_context()
        return super().Check(request, context)


@dataclass(frozen=True)
class Served:
    port: int
    health: _RecordingHealth


@pytest.fixture(scope="module")
def mtls_server(ca: Ca) -> Iterator[Served]:
    key, cert = _issue(ca, SERVER, server=True, hosts=["127.0.0.1"])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = _RecordingHealth()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    credentials = grpc.ssl_server_credentials(
        [(pki.key_pem(key), pki.cert_pem(cert))],
        root_certificates=pki.cert_pem(ca.cert),
        require_client_auth=True,
    )
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield Served(port, servicer)
    finally:
        server.stop(None).wait()


def _check_health(
    port: int,
    trusted_ca: x509.Certificate,
    client: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None,
) -> health_pb2.HealthCheckResponse:
    if client is None:
        credentials = grpc.ssl_channel_credentials(root_certificates=pki.cert_pem(trusted_ca))
    else:
        key, cert = client
        credentials = grpc.ssl_channel_credentials(
            root_certificates=pki.cert_pem(trusted_ca),
            private_key=pki.key_pem(key),
            certificate_chain=pki.cert_pem(cert),
        )
    options = [
        ("grpc.ssl_target_name_override", pki.dns_name_for(SERVER)),
        # A private subchannel per channel: one test's failed handshake (and its reconnect backoff)
        # must not be shared with the next test's channel.
        ("grpc.use_local_subchannel_pool", 1),
    ]
    with grpc.secure_channel(f"127.0.0.1:{port}", credentials, options=options) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)


def _assert_refused(port: int, trusted_ca: x509.Certificate, client: object) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _check_health(port, trusted_ca, client)  # type: ignore[arg-type]
    # The server aborts the handshake; the client sees only a closed socket, never the reason.
    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE


def test_mtls_client_with_a_certificate_from_the_network_ca_connects(ca: Ca, mtls_server: Served) -> None:
    response = _check_health(mtls_server.port, ca.cert, _issue(ca))
    assert response.status == health_pb2.HealthCheckResponse.SERVING


def test_mtls_server_sees_the_client_party_in_the_auth_context(ca: Ca, mtls_server: Served) -> None:
    _check_health(mtls_server.port, ca.cert, _issue(ca))
    auth = mtls_server.health.last_auth_context
    assert auth["peer_uri"] == [b"urn:cagnet:party:E06000035"]
    peer_cert = pki.load_cert(auth["x509_pem_cert"][0])
    assert pki.verify_certificate(peer_cert, ca.cert) == NODE


def test_mtls_client_with_a_certificate_from_another_ca_is_refused(ca: Ca, other_ca: Ca, mtls_server: Served) -> None:
    _assert_refused(mtls_server.port, ca.cert, _issue(other_ca))


def test_mtls_client_without_a_certificate_is_refused(ca: Ca, mtls_server: Served) -> None:
    _assert_refused(mtls_server.port, ca.cert, None)


def test_mtls_client_with_an_expired_certificate_is_refused(ca: Ca, mtls_server: Served) -> None:
    now = datetime.now(UTC)
    expired = _issue(ca, not_before=now - timedelta(days=30), not_after=now - timedelta(days=1))
    _assert_refused(mtls_server.port, ca.cert, expired)


def test_mtls_client_certificate_without_client_auth_usage_is_refused(ca: Ca, mtls_server: Served) -> None:
    wrong_usage = _issue(ca, extended_key_usage=[ExtendedKeyUsageOID.SERVER_AUTH])
    _assert_refused(mtls_server.port, ca.cert, wrong_usage)


def test_mtls_client_refuses_a_server_it_cannot_chain_to_its_ca(ca: Ca, other_ca: Ca, mtls_server: Served) -> None:
    # The client trusts only another network's CA, so the server's certificate does not verify.
    _assert_refused(mtls_server.port, other_ca.cert, _issue(ca))
