"""The network manifest: who the parties are (authorities, the coordinator, principals such as the
CAG chair), their roles, endpoints, signing keys and certificate fingerprints.

The manifest travels as a signed DSSE envelope (JSON form) in `manifest.json`. Nodes trust only
parties listed in a manifest whose signature checks out against the key they pinned at init.
"""

from __future__ import annotations

import base64
import functools
import json
from pathlib import Path
from threading import Lock

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, ValidationError

from shared import dsse
from shared.errors import InvalidRequest, UnknownIssuer

MANIFEST_PAYLOAD_TYPE = "application/vnd.cagnet.v1.manifest+json"

MEMBER_AUTHORITY = "member-authority"
CAG_CHAIR = "cag-chair"
REGIONAL_BOARD = "regional-board"
COORDINATOR = "coordinator"
ROLES = (MEMBER_AUTHORITY, CAG_CHAIR, REGIONAL_BOARD, COORDINATOR)


class Party(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    name: str
    roles: tuple[str, ...]
    signing_key: str  # base64 of the raw 32-byte Ed25519 public key
    cert_fingerprint: str
    endpoint: str = ""
    population: int = 0

    @property
    def public_key(self) -> Ed25519PublicKey:
        return _public_key(self.signing_key)

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


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    network: str
    version: int
    ca_fingerprint: str
    coordinator_endpoint: str = ""
    parties: tuple[Party, ...] = ()

    def party(self, party_id: str) -> Party:
        for p in self.parties:
            if p.id == party_id:
                return p
        raise UnknownIssuer(detail=party_id)

    def by_keyid(self, keyid: str) -> Party:
        for p in self.parties:
            if p.keyid == keyid:
                return p
        raise UnknownIssuer()

    @property
    def members(self) -> tuple[Party, ...]:
        """Member authorities in a stable order (by GSS code)."""
        return tuple(sorted((p for p in self.parties if p.has_role(MEMBER_AUTHORITY)), key=lambda p: p.id))

    def with_party(self, party: Party) -> Manifest:
        """A new version with `party` added, or replaced if its id is already listed."""
        others = tuple(p for p in self.parties if p.id != party.id)
        return self.model_copy(update={"version": self.version + 1, "parties": (*others, party)})

    def canonical_bytes(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


def encode_key(key: Ed25519PublicKey) -> str:
    return base64.b64encode(dsse.public_key_raw(key)).decode()


def sign_manifest(manifest: Manifest, key: Ed25519PrivateKey) -> dsse.Envelope:
    return dsse.sign(MANIFEST_PAYLOAD_TYPE, manifest.canonical_bytes(), key)


def write_manifest(path: Path, manifest: Manifest, key: Ed25519PrivateKey) -> None:
    envelope = sign_manifest(manifest, key)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(envelope.to_json(), indent=2) + "\n")
    tmp.replace(path)  # atomic: a node reloading never sees half a manifest


def parse_manifest(envelope: dsse.Envelope, trusted_key: Ed25519PublicKey) -> Manifest:
    payload = dsse.verify(envelope, trusted_key)
    if envelope.payload_type != MANIFEST_PAYLOAD_TYPE:
        raise InvalidRequest("not a cagnet manifest")
    try:
        return Manifest.model_validate_json(payload)
    except ValidationError as exc:
        raise InvalidRequest("the manifest is malformed", detail=str(exc)) from None


def read_manifest(path: Path, trusted_key: Ed25519PublicKey) -> Manifest:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidRequest(f"no manifest at {path}") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"{path} is not JSON: {exc}") from None
    return parse_manifest(dsse.Envelope.from_json(data), trusted_key)


class ManifestSource:
    """The current manifest from a file, re-read (and re-verified) whenever the file changes."""

    def __init__(self, path: Path, trusted_key: Ed25519PublicKey) -> None:
        self._path, self._key = path, trusted_key
        self._lock = Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._manifest: Manifest | None = None
        self.current()

    def current(self) -> Manifest:
        st = self._path.stat()
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # a replaced file is a new inode
        with self._lock:
            if self._manifest is None or stamp != self._stamp:
                self._manifest = read_manifest(self._path, self._key)
                self._stamp = stamp
            return self._manifest
