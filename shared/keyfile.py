"""Private key files, optionally protected by a passphrase.

When CAGNET_KEY_PASSPHRASE is set, every private key cagnet writes (signing, TLS, sealing and CA
keys) is encrypted with it (PKCS8, cryptography's BestAvailableEncryption), and keys are read with
it. An encrypted key read without the passphrase, or with the wrong one, raises KeyLocked naming
the file, never a traceback. The passphrase comes from the environment (or a secrets manager that
sets it), never from the command line. gRPC takes a TLS key as unencrypted bytes, so a TLS key is
decrypted in memory only (`read_tls_key`).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from shared.errors import InvalidRequest, KeyLocked

__all__ = [
    "PASSPHRASE_ENV",
    "passphrase",
    "private_key_pem",
    "read_private_key",
    "read_signing_key",
    "read_tls_key",
    "read_x25519_key",
    "write_private_key",
]

PASSPHRASE_ENV = "CAGNET_KEY_PASSPHRASE"


def passphrase() -> bytes | None:
    """The passphrase from the environment, or None when unset or empty."""
    value = os.environ.get(PASSPHRASE_ENV, "")
    return value.encode("utf-8") if value else None


def private_key_pem(key: PrivateKeyTypes) -> bytes:
    """PKCS8 PEM, encrypted with the passphrase when one is set."""
    secret = passphrase()
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(secret) if secret else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)


def write_private_key(path: Path, key: PrivateKeyTypes) -> None:
    """Write `key` to `path` (mode 0600 from the start, replaced atomically)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_key_pem(key))
    tmp.replace(path)


def read_private_key(path: Path, data: bytes | None = None) -> PrivateKeyTypes:
    """The private key in `path` (or `data` read from it), decrypted with the passphrase if it is
    encrypted. KeyLocked when it is encrypted and the passphrase is missing or wrong."""
    pem = path.read_bytes() if data is None else data
    encrypted = b"ENCRYPTED PRIVATE KEY" in pem
    secret = passphrase()
    if encrypted and secret is None:
        raise KeyLocked(f"{path} is encrypted: set {PASSPHRASE_ENV} to its passphrase")
    try:
        return serialization.load_pem_private_key(pem, password=secret if encrypted else None)
    except ValueError as exc:
        if encrypted:
            raise KeyLocked(f"{path} is encrypted and {PASSPHRASE_ENV} is not its passphrase") from None
        raise InvalidRequest(f"{path} is not a PEM private key") from exc
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidRequest(f"{path} is not a PEM private key") from exc


def read_signing_key(path: Path) -> Ed25519PrivateKey:
    key = read_private_key(path)
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidRequest(f"{path} is not an Ed25519 signing key")
    return key


def read_tls_key(path: Path) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """The TLS key and its unencrypted PEM, for gRPC (kept in memory, never written)."""
    key = read_private_key(path)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidRequest(f"{path} is not an EC private key")
    clear = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key, clear


def read_x25519_key(path: Path) -> x25519.X25519PrivateKey:
    key = read_private_key(path)
    if not isinstance(key, x25519.X25519PrivateKey):
        raise InvalidRequest(f"{path} is not an X25519 key")
    return key
