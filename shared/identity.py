"""A party's key material on disk: its Ed25519 signing key, its TLS key and certificate, and
the network CA certificate. Key material is only ever read from these files, never from flags.

Layout of an identity folder: signing.key, tls.key, tls.crt, ca.crt (keys mode 0600, encrypted when
CAGNET_KEY_PASSPHRASE is set: `shared.keyfile`), and for a node that joined over the wire
sealing.key (X25519, what the network linkage key was sealed to).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared import dsse, keyfile, pki
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
            signing = keyfile.read_signing_key(directory / "signing.key")
            _, tls_key = keyfile.read_tls_key(directory / "tls.key")
            tls_cert = (directory / "tls.crt").read_bytes()
            ca = (directory / "ca.crt").read_bytes()
        except FileNotFoundError as exc:
            raise InvalidRequest(
                f"identity folder {directory} is incomplete: {Path(exc.filename).name} is missing"
            ) from None
        party_id = pki.party_id_from_certificate(pki.load_cert(tls_cert))
        return cls(party_id, signing, tls_key, tls_cert, ca)


def write_keys(
    directory: Path,
    *,
    signing: Ed25519PrivateKey | None = None,
    tls_key: ec.EllipticCurvePrivateKey | None = None,
) -> tuple[Ed25519PrivateKey, ec.EllipticCurvePrivateKey]:
    """Write a signing key and a TLS key in `directory`, fresh unless given (a joiner makes them
    in memory first, and writes them once the network has answered); the private halves never
    leave it."""
    directory.mkdir(parents=True, exist_ok=True)
    signing = signing or Ed25519PrivateKey.generate()
    tls_key = tls_key or pki.new_tls_key()
    keyfile.write_private_key(directory / "signing.key", signing)
    keyfile.write_private_key(directory / "tls.key", tls_key)
    return signing, tls_key


SEALING_KEY = "sealing.key"


def write_sealing_key(directory: Path) -> x25519.X25519PrivateKey:
    """A fresh X25519 key a sponsoring member seals the network linkage key to (`shared.sealing`)."""
    key = x25519.X25519PrivateKey.generate()
    keyfile.write_private_key(directory / SEALING_KEY, key)
    return key


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
