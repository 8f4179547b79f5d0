"""The network's X.509 PKI: one CA per network issues every party's TLS certificate for mTLS.

A party's id travels in the certificate as the URI SAN `urn:cagnet:party:<id>` (and as a DNS SAN,
so gRPC can check the server's name); TLS keys are ECDSA P-256, which gRPC/BoringSSL handles well.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509 import ObjectIdentifier
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.errors import InvalidRequest, VerificationError

__all__ = [
    "PARTY_URI_PREFIX",
    "cert_pem",
    "create_ca",
    "dns_name_for",
    "fingerprint",
    "issue_certificate",
    "key_pem",
    "load_cert",
    "load_tls_key",
    "new_tls_key",
    "party_id_from_certificate",
    "verify_certificate",
]

PARTY_URI_PREFIX = "urn:cagnet:party:"
_DNS_SUFFIX = ".cagnet"
# A party id must be one DNS label, so that dns_name_for() gives a name TLS can check.
_PARTY_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
# Certificates start an hour in the past, so a peer whose clock runs a little behind still
# accepts a certificate issued a moment ago (public CAs backdate for the same reason).
_BACKDATE = timedelta(hours=1)


def dns_name_for(party_id: str) -> str:
    """The DNS SAN for a party: "E06000035" -> "e06000035.cagnet"."""
    return _checked_party_id(party_id).lower() + _DNS_SUFFIX


def create_ca(
    network_name: str, *, valid_days: int = 3650, now: datetime | None = None
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A new self-signed network CA that may sign leaf certificates only (path length 0)."""
    if not network_name:
        raise InvalidRequest("the network needs a name")
    issued_at = _utc(now)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cagnet"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"cagnet network CA: {network_name}"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(issued_at - _BACKDATE)
        .not_valid_after(issued_at + timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def new_tls_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 key for a party's TLS certificate."""
    return ec.generate_private_key(ec.SECP256R1())


def issue_certificate(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    *,
    party_id: str,
    public_key: CertificatePublicKeyTypes,
    server: bool,
    hosts: Sequence[str] = (),
    valid_days: int = 825,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    extended_key_usage: Sequence[ObjectIdentifier] | None = None,
) -> x509.Certificate:
    """A leaf TLS certificate for `party_id`, signed by the network CA.

    Every party is a TLS client (clientAuth); a server certificate also gets serverAuth and a SAN
    for each of `hosts` (an IP address if it parses as one, else a DNS name). `not_before`,
    `not_after` and `extended_key_usage` exist so tests can issue broken certificates.
    """
    party_id = _checked_party_id(party_id)
    start = _utc(not_before) if not_before is not None else _utc(None) - _BACKDATE
    end = _utc(not_after) if not_after is not None else start + timedelta(days=valid_days)
    if end <= start:
        raise InvalidRequest("certificate validity ends before it starts")

    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(PARTY_URI_PREFIX + party_id),
        x509.DNSName(dns_name_for(party_id)),
    ]
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))

    if extended_key_usage is None:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    else:
        usages = list(extended_key_usage)
        if not usages:
            # No EKU extension at all would mean "any purpose": the opposite of what a test wants.
            raise InvalidRequest("extended_key_usage needs at least one purpose")

    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, party_id)]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(_authority_key_identifier(ca_cert), critical=False)
    )
    return builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False).sign(ca_key, hashes.SHA256())


def party_id_from_certificate(cert: x509.Certificate) -> str:
    """The party id from the certificate's single `urn:cagnet:party:` URI SAN."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise VerificationError("certificate carries no cagnet party id") from None
    ids = [
        uri[len(PARTY_URI_PREFIX) :]
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier)
        if uri.startswith(PARTY_URI_PREFIX)
    ]
    if len(ids) > 1:
        raise VerificationError("certificate carries more than one cagnet party id")
    if not ids or not _PARTY_ID.fullmatch(ids[0]):
        raise VerificationError("certificate carries no cagnet party id")
    return ids[0]


def fingerprint(cert: x509.Certificate) -> str:
    """Lowercase hex SHA-256 of the certificate's DER encoding."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def verify_certificate(cert: x509.Certificate, ca_cert: x509.Certificate, *, now: datetime | None = None) -> str:
    """The party id of a leaf certificate issued by this network's CA and valid at `now`.

    Raises VerificationError with the reason; never returns a falsy "no".
    """
    at = _utc(now)
    if cert.issuer != ca_cert.subject:
        raise VerificationError("not issued by this network's CA")
    ca_public_key = ca_cert.public_key()
    if not isinstance(ca_public_key, ec.EllipticCurvePublicKey):
        raise VerificationError("the network CA key is not an ECDSA key")
    if not isinstance(cert.signature_hash_algorithm, hashes.SHA256):
        raise VerificationError("signature does not verify")
    try:
        ca_public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise VerificationError("signature does not verify") from None
    if at > ca_cert.not_valid_after_utc:
        raise VerificationError("network CA certificate expired")
    if at > cert.not_valid_after_utc:
        raise VerificationError("certificate expired")
    if at < cert.not_valid_before_utc:
        raise VerificationError("certificate not yet valid")
    return party_id_from_certificate(cert)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(pem: bytes) -> x509.Certificate:
    """A certificate from PEM; raises InvalidRequest on anything else."""
    try:
        return x509.load_pem_x509_certificate(pem)
    except (ValueError, TypeError) as exc:
        raise InvalidRequest("not a PEM X.509 certificate") from exc


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS8 PEM, unencrypted (gRPC reads the key as bytes): protect the file, not the bytes."""
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def load_tls_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """An unencrypted PEM private key, which must be an EC key; anything else raises InvalidRequest."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidRequest("not a PEM private key (unencrypted PKCS8 expected)") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidRequest("TLS key is not an EC private key")
    return key


def _checked_party_id(party_id: str) -> str:
    if not isinstance(party_id, str) or not _PARTY_ID.fullmatch(party_id):
        raise InvalidRequest("a party id is letters, digits and inner hyphens, at most 63 characters")
    return party_id


def _utc(moment: datetime | None) -> datetime:
    if moment is None:
        return datetime.now(UTC)
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("timestamps must be timezone-aware")
    return moment.astimezone(UTC)


def _authority_key_identifier(ca_cert: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        ca_public_key = ca_cert.public_key()
        if not isinstance(ca_public_key, ec.EllipticCurvePublicKey):
            raise InvalidRequest("the network CA key is not an ECDSA key") from None
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public_key)
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)
