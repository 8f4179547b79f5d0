"""Sealing the network linkage key to a joining node, so that the coordinator carries it but
cannot read it (docs/onboarding.md).

A sponsoring member encrypts the key to the X25519 public key the joiner listed in its own signed
join request: an ephemeral X25519 key agreement, HKDF-SHA256 over the shared secret (salt: both
public keys), and ChaCha20-Poly1305 with the digest of the join request and the joiner's id as
associated data, so a sealed key cannot be moved to another request. The member signs the result
(DSSE, payload type below) with its own key, so the joiner knows a member sealed it, not the
coordinator, which could encrypt a key of its own choosing to a public key.
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, ValidationError

from shared import dsse
from shared.canonical import canonical_json
from shared.errors import BadSignature, InvalidRequest
from shared.manifest import Manifest

SEALED_PAYLOAD_TYPE = "application/vnd.cagnet.v1.sealed-linkage-key+json"
_INFO = b"cagnet/linkage-key-seal/v1"


class SealedKey(BaseModel):
    """What a sponsoring member signs: the ciphertext and what binds it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    network: str
    party_id: str  # the joiner
    join_request_digest: str  # hex SHA-256 of the join request's payload
    sealed_by: str  # the member authority that sealed and signed it
    ephemeral_key: str  # base64 raw X25519
    nonce: str  # base64, 12 bytes
    ciphertext: str  # base64


def join_request_digest(join_request: dsse.Envelope) -> str:
    return hashlib.sha256(join_request.payload).hexdigest()


def public_key_b64(key: x25519.X25519PublicKey) -> str:
    return base64.b64encode(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()


def _aad(party_id: str, request_digest: str) -> bytes:
    return _INFO + b"\x00" + party_id.encode() + b"\x00" + bytes.fromhex(request_digest)


def _key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient, info=_INFO).derive(shared)


def seal(
    secret: bytes,
    *,
    network: str,
    party_id: str,
    recipient_key: str,
    join_request: dsse.Envelope,
    sealed_by: str,
    signing_key: Ed25519PrivateKey,
) -> dsse.Envelope:
    """`secret` encrypted to `recipient_key` (base64 raw X25519) and signed by member `sealed_by`."""
    try:
        recipient = x25519.X25519PublicKey.from_public_bytes(base64.b64decode(recipient_key, validate=True))
    except ValueError:
        raise InvalidRequest("the join request's sealing key is not an X25519 public key") from None
    ephemeral = x25519.X25519PrivateKey.generate()
    eph_raw = base64.b64decode(public_key_b64(ephemeral.public_key()))
    rec_raw = base64.b64decode(recipient_key)
    key = _key(ephemeral.exchange(recipient), eph_raw, rec_raw)
    nonce = os.urandom(12)
    digest = join_request_digest(join_request)
    ciphertext = ChaCha20Poly1305(key).encrypt(nonce, secret, _aad(party_id, digest))
    sealed = SealedKey(
        network=network,
        party_id=party_id,
        join_request_digest=digest,
        sealed_by=sealed_by,
        ephemeral_key=base64.b64encode(eph_raw).decode(),
        nonce=base64.b64encode(nonce).decode(),
        ciphertext=base64.b64encode(ciphertext).decode(),
    )
    payload = canonical_json(sealed.model_dump())
    return dsse.sign(SEALED_PAYLOAD_TYPE, payload, signing_key)


def parse(envelope: dsse.Envelope) -> SealedKey:
    """The sealed key's fields, before any signature is checked."""
    if envelope.payload_type != SEALED_PAYLOAD_TYPE:
        raise InvalidRequest("not a sealed linkage key")
    try:
        return SealedKey.model_validate_json(envelope.payload)
    except ValidationError as exc:
        raise InvalidRequest("the sealed linkage key is malformed", detail=str(exc)) from None


def verify(envelope: dsse.Envelope, manifest: Manifest) -> SealedKey:
    """The sealed key, if it is signed by the member authority it names in `manifest`."""
    sealed = parse(envelope)
    members = {p.id: p for p in manifest.members}
    if sealed.sealed_by not in members:
        raise BadSignature(f"the linkage key was sealed by {sealed.sealed_by}, not a member authority")
    dsse.verify(envelope, members[sealed.sealed_by].public_key)
    return sealed


def unseal(
    envelope: dsse.Envelope, manifest: Manifest, *, private_key: x25519.X25519PrivateKey, join_request: dsse.Envelope
) -> bytes:
    """The secret, if a member of `manifest` sealed it for exactly this join request and nothing
    was changed on the way (else BadSignature)."""
    sealed = verify(envelope, manifest)
    digest = join_request_digest(join_request)
    if sealed.join_request_digest != digest or sealed.network != manifest.network:
        raise BadSignature("the sealed linkage key is for another join request")
    try:
        eph_raw = base64.b64decode(sealed.ephemeral_key, validate=True)
        ephemeral = x25519.X25519PublicKey.from_public_bytes(eph_raw)
        rec_raw = base64.b64decode(public_key_b64(private_key.public_key()))
        key = _key(private_key.exchange(ephemeral), eph_raw, rec_raw)
        return ChaCha20Poly1305(key).decrypt(
            base64.b64decode(sealed.nonce, validate=True),
            base64.b64decode(sealed.ciphertext, validate=True),
            _aad(sealed.party_id, digest),
        )
    except (InvalidTag, ValueError):
        raise BadSignature("the sealed linkage key does not open: it was changed on the way") from None
