"""DSSE envelopes signed with Ed25519: how cagnet signs requests, releases and bundles.

The payload travels as the exact bytes that were signed, with its type, and every signature is
over PAE(type, payload) (https://github.com/secure-systems-lab/dsse, protocol v1).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.errors import BadSignature, InvalidRequest

__all__ = [
    "Envelope",
    "Signature",
    "add_signature",
    "keyid",
    "load_private_key",
    "load_public_key",
    "pae",
    "private_key_pem",
    "public_key_raw",
    "sign",
    "verify",
    "verify_threshold",
]

_RAW_KEY_LENGTH = 32


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_json(self) -> dict[str, object]:
        """The standard DSSE JSON envelope (standard base64, padded)."""
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "signatures": [{"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")} for s in self.signatures],
        }

    @classmethod
    def from_json(cls, data: object) -> Envelope:
        """Parse a DSSE JSON envelope: a parsed JSON object, or its text as str/bytes.

        Follows the DSSE parsing rules: `payloadType`, `payload`, `signatures` and each `sig` are
        required; an unset `keyid` is the same as an empty one; unknown fields are ignored.
        Raises InvalidRequest on anything malformed. Nothing here is verified: call `verify`.
        """
        if isinstance(data, str | bytes | bytearray):
            try:
                data = json.loads(data)
            except (ValueError, RecursionError) as exc:
                raise InvalidRequest("DSSE envelope is not valid JSON") from exc
        if not isinstance(data, Mapping):
            raise InvalidRequest("DSSE envelope must be a JSON object")

        payload_type = data.get("payloadType")
        if not isinstance(payload_type, str):
            raise InvalidRequest("DSSE envelope field 'payloadType' is missing or not a string")
        _utf8(payload_type)
        payload = _b64decode(data.get("payload"), "payload")

        raw_signatures = data.get("signatures")
        if not isinstance(raw_signatures, list):
            raise InvalidRequest("DSSE envelope field 'signatures' is missing or not a list")
        signatures: list[Signature] = []
        for entry in raw_signatures:
            if not isinstance(entry, Mapping):
                raise InvalidRequest("DSSE signature entry must be a JSON object")
            key_hint = entry.get("keyid", "")
            if key_hint is None:
                key_hint = ""
            if not isinstance(key_hint, str):
                raise InvalidRequest("DSSE signature field 'keyid' must be a string")
            signatures.append(Signature(keyid=key_hint, sig=_b64decode(entry.get("sig"), "sig")))
        return cls(payload_type=payload_type, payload=payload, signatures=tuple(signatures))


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSEv1 Pre-Authentication Encoding: the exact bytes every signature covers."""
    type_bytes = _utf8(payload_type)
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), bytes(payload))


def keyid(public_key: Ed25519PublicKey) -> str:
    """Lowercase hex SHA-256 of the raw public key: a hint for finding the key, never trusted."""
    return hashlib.sha256(public_key_raw(public_key)).hexdigest()


def sign(payload_type: str, payload: bytes, key: Ed25519PrivateKey) -> Envelope:
    """A new envelope carrying one signature over PAE(payload_type, payload)."""
    return add_signature(Envelope(payload_type=payload_type, payload=bytes(payload), signatures=()), key)


def add_signature(envelope: Envelope, key: Ed25519PrivateKey) -> Envelope:
    """The same envelope with one more signature (co-signing); the payload is untouched."""
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidRequest("signing key must be an Ed25519 private key")
    signature = Signature(
        keyid=keyid(key.public_key()),
        sig=key.sign(pae(envelope.payload_type, envelope.payload)),
    )
    return Envelope(
        payload_type=envelope.payload_type,
        payload=envelope.payload,
        signatures=(*envelope.signatures, signature),
    )


def verify(envelope: Envelope, public_key: Ed25519PublicKey) -> bytes:
    """The payload bytes, if any signature verifies under `public_key`; else raises BadSignature.

    The keyid only orders the attempts (matching hints first): an attacker controls it, so a
    wrong hint neither rejects a good signature nor lets a bad one through.
    """
    if not isinstance(public_key, Ed25519PublicKey):
        raise InvalidRequest("verification key must be an Ed25519 public key")
    if not envelope.signatures:
        raise BadSignature(detail="the envelope carries no signatures")
    message = pae(envelope.payload_type, envelope.payload)
    if _any_verifies(public_key, _hinted_first(envelope.signatures, keyid(public_key)), message):
        return envelope.payload
    raise BadSignature(detail="no signature verifies under the expected key")


def verify_threshold(envelope: Envelope, keys: Mapping[str, Ed25519PublicKey], threshold: int) -> set[str]:
    """The parties (names in `keys`) whose key verified a distinct signature; at least `threshold`.

    Each signature counts for at most one party and each party at most once, so a party signing
    twice, or one signature copied into the envelope twice, cannot make up a quorum. Raises
    BadSignature, saying only how many were needed and how many verified, below the threshold.
    """
    if threshold < 1:
        # A threshold of 0 would accept an unsigned envelope: that is a caller's bug, not a policy.
        raise ValueError("threshold must be at least 1")
    for party, key in keys.items():
        if not isinstance(key, Ed25519PublicKey):
            raise InvalidRequest(f"verification key for party {party!r} must be an Ed25519 public key")

    message = pae(envelope.payload_type, envelope.payload)
    # Identical signature bytes are one signature (Ed25519 is deterministic).
    distinct_sigs = list(dict.fromkeys(s.sig for s in envelope.signatures))
    verifies: dict[str, list[int]] = {}
    for party, key in keys.items():
        verifies[party] = [i for i, sig in enumerate(distinct_sigs) if _verifies(key, sig, message)]

    # A bipartite matching (parties to signatures), so that no signature is counted twice even if
    # two parties were configured with the same key.
    owner: dict[int, str] = {}

    def assign(party: str, seen: set[int]) -> bool:
        for index in verifies[party]:
            if index in seen:
                continue
            seen.add(index)
            if index not in owner or assign(owner[index], seen):
                owner[index] = party
                return True
        return False

    verified = {party for party in keys if verifies[party] and assign(party, set())}
    if len(verified) < threshold:
        raise BadSignature(f"{len(verified)} of {threshold} required signatures verified")
    return verified


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    """An unencrypted PEM private key, which must be Ed25519; anything else raises InvalidRequest."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidRequest("not a PEM private key (unencrypted PKCS8 expected)") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise InvalidRequest("signing key is not an Ed25519 private key")
    return key


def load_public_key(data: bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from its 32 raw bytes or a PEM SubjectPublicKeyInfo."""
    data = bytes(data)
    if len(data) == _RAW_KEY_LENGTH:
        try:
            return Ed25519PublicKey.from_public_bytes(data)
        except ValueError as exc:
            raise InvalidRequest("not a valid raw Ed25519 public key") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidRequest("not an Ed25519 public key (32 raw bytes or PEM expected)") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InvalidRequest("public key is not an Ed25519 key")
    return key


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    """PKCS8 PEM, unencrypted: protect the file, not the bytes."""
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def public_key_raw(key: Ed25519PublicKey) -> bytes:
    """The 32 raw bytes of the public key."""
    return key.public_bytes(encoding=serialization.Encoding.Raw, format=serialization.PublicFormat.Raw)


def _utf8(payload_type: str) -> bytes:
    try:
        return payload_type.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest("DSSE payload type is not valid UTF-8 text") from exc


def _b64decode(value: object, field: str) -> bytes:
    """RFC 4648 base64, standard or URL-safe alphabet (DSSE allows either), padded and canonical."""
    if not isinstance(value, str):
        raise InvalidRequest(f"DSSE envelope field {field!r} is missing or not a string")
    if ("-" in value or "_" in value) and ("+" in value or "/" in value):
        raise InvalidRequest(f"DSSE envelope field {field!r} mixes base64 alphabets")
    standard = value.replace("-", "+").replace("_", "/")
    try:
        decoded = base64.b64decode(standard, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"DSSE envelope field {field!r} is not valid base64") from exc
    # b64decode tolerates surplus padding and stray trailing bits; one text per byte string.
    if base64.b64encode(decoded).decode("ascii") != standard:
        raise InvalidRequest(f"DSSE envelope field {field!r} is not canonical base64")
    return decoded


def _hinted_first(signatures: Iterable[Signature], hint: str) -> list[Signature]:
    signatures = list(signatures)
    return [s for s in signatures if s.keyid == hint] + [s for s in signatures if s.keyid != hint]


def _any_verifies(public_key: Ed25519PublicKey, signatures: Iterable[Signature], message: bytes) -> bool:
    return any(_verifies(public_key, s.sig, message) for s in signatures)


def _verifies(public_key: Ed25519PublicKey, sig: bytes, message: bytes) -> bool:
    # Private helper: the public verifiers turn a False into BadSignature.
    try:
        public_key.verify(sig, message)
    except InvalidSignature:
        return False
    return True
