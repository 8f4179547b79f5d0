"""A party's key material on disk: its Ed25519 signing key, its TLS key and certificate, and
the network CA certificate. Key material is only ever read from these files, never from flags.

Layout of an identity folder: signing.key, tls.key, tls.crt, ca.crt (keys mode 0600).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared import dsse, pki
from shared.errors import InvalidRequest


@dataclass(frozen=True)
class Identity:
    party_id: str
    signing_key: Ed25519PrivateKey
    tls_key_pem: bytes
    tls_cert_pem: bytes
    ca_cert_pem: bytes

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    @property
    def keyid(self) -> str:
        return dsse.keyid(self.public_key)

    @property
    def certificate(self) -> x509.Certificate:
        return pki.load_cert(self.tls_cert_pem)

    @classmethod
    def load(cls, directory: Path) -> Identity:
        try:
            signing = dsse.load_private_key((directory / "signing.key").read_bytes())
            tls_key = (directory / "tls.key").read_bytes()
            tls_cert = (directory / "tls.crt").read_bytes()
            ca = (directory / "ca.crt").read_bytes()
        except FileNotFoundError as exc:
            raise InvalidRequest(
                f"identity folder {directory} is incomplete: {Path(exc.filename).name} is missing"
            ) from None
        party_id = pki.party_id_from_certificate(pki.load_cert(tls_cert))
        return cls(party_id, signing, tls_key, tls_cert, ca)


def _write_secret(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    os.chmod(path, 0o600)


def write_keys(directory: Path) -> tuple[Ed25519PrivateKey, ec.EllipticCurvePrivateKey]:
    """Make a fresh signing key and TLS key in `directory` (the private halves never leave it)."""
    directory.mkdir(parents=True, exist_ok=True)
    signing = Ed25519PrivateKey.generate()
    tls_key = pki.new_tls_key()
    _write_secret(directory / "signing.key", dsse.private_key_pem(signing))
    _write_secret(directory / "tls.key", pki.key_pem(tls_key))
    return signing, tls_key


def install_certificate(directory: Path, *, cert: x509.Certificate, ca_cert: x509.Certificate) -> None:
    (directory / "tls.crt").write_bytes(pki.cert_pem(cert))
    (directory / "ca.crt").write_bytes(pki.cert_pem(ca_cert))


def create_identity(
    directory: Path,
    *,
    party_id: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    server: bool,
    hosts: tuple[str, ...] = (),
) -> Identity:
    """Keys and a CA-issued certificate in one step, for parties created by the network itself."""
    _, tls_key = write_keys(directory)
    cert = pki.issue_certificate(
        ca_key, ca_cert, party_id=party_id, public_key=tls_key.public_key(), server=server, hosts=hosts
    )
    install_certificate(directory, cert=cert, ca_cert=ca_cert)
    return Identity.load(directory)
