"""The manifest document: the parties (authorities, the coordinator, principals such as the CAG
chair), their roles, endpoints, signing keys and certificate fingerprints, the governance rules, and
its signing. `shared.manifest` re-exports all of it beside the chain on disk (`ManifestSource`); this
module is apart so that `shared.governance` can check versions without importing that source."""

from __future__ import annotations

import base64
import functools

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared import dsse
from shared.authorities import register_text_check
from shared.canonical import canonical_json
from shared.errors import InvalidRequest, UnknownIssuer
from shared.reference import reference_text_check
from shared.roles import MEMBER_AUTHORITY

MANIFEST_PAYLOAD_TYPE = "application/vnd.cagnet.v1.manifest+json"


class Party(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    roles: tuple[str, ...]
    signing_key: str  # base64 of the raw 32-byte Ed25519 public key
    cert_fingerprint: str
    endpoint: str = ""
    population: int = 0
    # Key rotation: the key this one replaced, accepted on requests until `previous_key_until_ms`.
    previous_key: str = ""
    previous_key_until_ms: int = 0

    @property
    def public_key(self) -> Ed25519PublicKey:
        return _public_key(self.signing_key)

    def keys_at(self, now_ms: int) -> tuple[Ed25519PublicKey, ...]:
        """The keys that may sign a request from this party at `now_ms` (the new key first)."""
        if self.previous_key and now_ms < self.previous_key_until_ms:
            return (self.public_key, _public_key(self.previous_key))
        return (self.public_key,)

    def holds_keyid(self, keyid: str, now_ms: int) -> bool:
        if keyid == self.keyid:
            return True
        return bool(self.previous_key) and now_ms < self.previous_key_until_ms and keyid == _keyid(self.previous_key)

    @property
    def keyid(self) -> str:
        return _keyid(self.signing_key)

    def has_role(self, role: str) -> bool:
        return role in self.roles


# Every verification looks a signer up by key id and loads its key: from the key's text, once.
@functools.lru_cache(maxsize=1024)
def _public_key(signing_key: str) -> Ed25519PublicKey:
    return dsse.load_public_key(base64.b64decode(signing_key))


@functools.lru_cache(maxsize=1024)
def _keyid(signing_key: str) -> str:
    return dsse.keyid(_public_key(signing_key))


class Governance(BaseModel):
    """The network's voting rules (its terms of reference), carried in the manifest itself.

    `quorum`: member authorities whose signatures a new version needs (0: a simple majority).
    `loosening_quorum`: the same for a version whose policy loosens any rule (0: every member).
    A version is checked against the rules of the version before it, so changing these needs the
    old quorum.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    quorum: int = Field(default=0, ge=0)
    loosening_quorum: int = Field(default=0, ge=0)

    def required(self, members: int, *, loosens: bool) -> int:
        """Signatures needed from `members` member authorities (never fewer than one)."""
        wanted = (self.loosening_quorum or members) if loosens else (self.quorum or members // 2 + 1)
        return max(1, min(wanted, members))


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    network: str
    version: int
    ca_fingerprint: str
    coordinator_endpoint: str = ""
    parties: tuple[Party, ...] = ()
    # Set from the charter version on: every later version needs a quorum of member authorities
    # (shared.governance); absent in the founding phase, when the founding coordinator key signs.
    governance: Governance | None = None
    # The network policy's exact TOML text, once governed: it changes only with a new version.
    policy: str = ""
    # The authority register's canonical CSV text (shared.authorities), from version 1 on: members'
    # names, districts and populations come from here. Empty in manifests made before it was signed.
    authorities: str = ""
    # Need indicators and grant allocations (shared.reference) as canonical CSV text; empty, and then
    # left out of the signed bytes, until the network sets some, so earlier versions read as they were.
    reference: str = ""

    @field_validator("reference")
    @classmethod
    def _reference_reads(cls, text: str) -> str:
        if text:
            reference_text_check(text)
        return text

    @field_validator("authorities")
    @classmethod
    def _register_reads(cls, text: str) -> str:
        # A manifest whose register does not read is refused with the manifest, not at first use.
        if text:
            register_text_check(text)
        return text

    def party(self, party_id: str) -> Party:
        for p in self.parties:
            if p.id == party_id:
                return p
        raise UnknownIssuer(detail=party_id)

    def by_keyid(self, keyid: str, now_ms: int | None = None) -> Party:
        """The party holding the key `keyid` (a hint only: callers verify the signature). With
        `now_ms`, a rotated-out key still names its party until the overlap window ends."""
        for p in self.parties:
            if p.keyid == keyid or (now_ms is not None and p.holds_keyid(keyid, now_ms)):
                return p
        raise UnknownIssuer()

    @property
    def governed(self) -> bool:
        return self.governance is not None

    @property
    def members(self) -> tuple[Party, ...]:
        """Member authorities in a stable order (by GSS code)."""
        return tuple(sorted((p for p in self.parties if p.has_role(MEMBER_AUTHORITY)), key=lambda p: p.id))

    def with_party(self, party: Party) -> Manifest:
        """A new version with `party` added, or replaced if its id is already listed."""
        others = tuple(p for p in self.parties if p.id != party.id)
        return self.model_copy(update={"version": self.version + 1, "parties": (*others, party)})

    def canonical_bytes(self) -> bytes:
        data = self.model_dump(mode="json")
        if not data["reference"]:
            del data["reference"]  # a manifest without reference data has the bytes it always had
        return canonical_json(data)


def encode_key(key: Ed25519PublicKey) -> str:
    return base64.b64encode(dsse.public_key_raw(key)).decode()


def sign_manifest(manifest: Manifest, key: Ed25519PrivateKey) -> dsse.Envelope:
    return dsse.sign(MANIFEST_PAYLOAD_TYPE, manifest.canonical_bytes(), key)


def parse_manifest(envelope: dsse.Envelope, trusted_key: Ed25519PublicKey) -> Manifest:
    """A single founding-phase manifest signed by `trusted_key` (no chain: see ManifestSource)."""
    payload = dsse.verify(envelope, trusted_key)
    if envelope.payload_type != MANIFEST_PAYLOAD_TYPE:
        raise InvalidRequest("not a cagnet manifest")
    try:
        return Manifest.model_validate_json(payload)
    except ValidationError as exc:
        raise InvalidRequest("the manifest is malformed", detail=str(exc)) from None
