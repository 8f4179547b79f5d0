"""The network manifest: who the parties are (authorities, the coordinator, principals such as the
CAG chair), their roles, endpoints, signing keys and certificate fingerprints.

The manifest travels as a signed DSSE envelope (JSON form) in `manifest.json`, and every version
ever published in `manifests/` beside it. Nodes trust only parties listed in a manifest whose chain
of versions checks out from version 1 (see `shared.governance` and docs/governance.md).
"""

from __future__ import annotations

import base64
import functools
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from threading import Lock

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shared import dsse
from shared.errors import InvalidRequest, UnknownIssuer
from shared.roles import CAG_CHAIR, COORDINATOR, MEMBER_AUTHORITY, REGIONAL_BOARD, ROLES  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)

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

    @field_validator("authorities")
    @classmethod
    def _register_reads(cls, text: str) -> str:
        # A manifest whose register does not read is refused with the manifest, not at first use.
        if text:
            from shared.authorities import register_text_check

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
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


def encode_key(key: Ed25519PublicKey) -> str:
    return base64.b64encode(dsse.public_key_raw(key)).decode()


def claimed_version(payload: bytes) -> int | None:
    """The manifest version a piece of signed JSON evidence (a bundle, a feed snapshot) says it was
    made under, read before anything is verified: it only picks which verified version to check
    the evidence against, and the evidence must then verify under it."""
    try:
        version = json.loads(payload).get("manifest_version")
    except (ValueError, AttributeError):
        return None
    return version if isinstance(version, int) and not isinstance(version, bool) else None


def manifest_at(history: Sequence[Manifest], version: int, *, what: str) -> Manifest:
    """Version `version` of a verified chain (`history`, as `ManifestSource.history` gives it): the
    parties and the keys they held when `what` was made. Evidence is checked against these, not
    the current keys, so a key rotated since does not make it stop verifying."""
    for manifest in history:
        if manifest.version == version:
            return manifest
    held = f"versions {history[0].version} to {history[-1].version}" if history else "no versions"
    raise InvalidRequest(
        f"{what} was made under manifest version {version}, which this folder's verified manifest "
        f"chain does not hold ({held})"
    )


def sign_manifest(manifest: Manifest, key: Ed25519PrivateKey) -> dsse.Envelope:
    return dsse.sign(MANIFEST_PAYLOAD_TYPE, manifest.canonical_bytes(), key)


def write_manifest(path: Path, manifest: Manifest, key: Ed25519PrivateKey) -> None:
    """Publish a founding-phase version signed by the founding coordinator key (see governance)."""
    publish_manifest(path, sign_manifest(manifest, key))


def publish_manifest(path: Path, envelope: dsse.Envelope) -> None:
    """Write a signed version into the history beside `path`, then make it the current one."""
    from shared import governance

    version = governance.parse_unverified(envelope).version
    governance.write_envelope(governance.history_file(governance.history_dir(path), version), envelope)
    governance.write_envelope(path, envelope)


def parse_manifest(envelope: dsse.Envelope, trusted_key: Ed25519PublicKey) -> Manifest:
    """A single founding-phase manifest signed by `trusted_key` (no chain: see ManifestSource)."""
    payload = dsse.verify(envelope, trusted_key)
    if envelope.payload_type != MANIFEST_PAYLOAD_TYPE:
        raise InvalidRequest("not a cagnet manifest")
    try:
        return Manifest.model_validate_json(payload)
    except ValidationError as exc:
        raise InvalidRequest("the manifest is malformed", detail=str(exc)) from None


def read_manifest(path: Path, trusted_key: Ed25519PublicKey) -> Manifest:
    """The current manifest at `path`, verified along its whole chain from version 1."""
    return ManifestSource(path, trusted_key).current()


class ManifestSource:
    """The current manifest from a file, re-read whenever the file changes, and accepted only as
    the next link of the chain this source holds (verified from version 1; versions it has not
    seen are fetched from the published history beside the file).

    With `keep`, every accepted version is also kept in that folder (a node's own copy), so a
    restarted node still refuses an older or forked manifest. A refused file does not replace the
    manifest in force: `current()` keeps answering with the last good version and `refused` says
    why the newer file was not taken.
    """

    def __init__(self, path: Path, trusted_key: Ed25519PublicKey, *, keep: Path | None = None) -> None:
        from shared import governance

        self._path, self._key, self._keep = path, trusted_key, keep
        self._lock = Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._chain = governance.Chain(trusted_key)
        self.refused: str | None = None
        if keep is not None and any(keep.glob("[0-9]*.json")):
            self._chain = governance.load_chain(keep, trusted_key)
        self.current()

    @property
    def last_accepted(self) -> Manifest:
        """The version in force as of the last `current()`, without looking at the file again."""
        with self._lock:
            return self._chain.head

    @property
    def history(self) -> list[tuple[Manifest, dsse.Envelope]]:
        """Every accepted version, oldest first, with its signed envelope."""
        with self._lock:
            return list(self._chain.versions)

    def current(self) -> Manifest:
        from shared import governance
        from shared.errors import CagnetError

        try:
            st = self._path.stat()
        except FileNotFoundError:
            raise InvalidRequest(f"no manifest at {self._path}") from None
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)  # a replaced file is a new inode
        with self._lock:
            if stamp != self._stamp:
                history = governance.history_dir(self._path)
                try:
                    envelope = governance.read_envelope(self._path)
                    added = self._chain.advance(
                        envelope, lambda v: governance.read_envelope(governance.history_file(history, v))
                    )
                except (CagnetError, ValueError) as exc:
                    if not self._chain.versions:
                        raise
                    # Keep the version in force; a refused file is not retried until it changes.
                    self.refused = str(exc)
                    log.warning("manifest at %s refused: %s", self._path, exc)
                else:
                    self.refused = None
                    if self._keep is not None:
                        for env in added:
                            version = governance.parse_unverified(env).version
                            governance.write_envelope(governance.history_file(self._keep, version), env)
                self._stamp = stamp
            return self._chain.head

    def offer(self, envelope: dsse.Envelope, fetch: Callable[[int], dsse.Envelope]) -> list[dsse.Envelope]:
        """Advance with a version obtained from elsewhere (the coordinator's Manifest RPC), by the
        same rules as a new file: the next link only, any skipped versions fetched by number and
        checked one by one. Raises ManifestRefused (or BadSignature) and keeps the head on
        anything else. Accepted versions go to `keep` and to the manifest file (with the history
        beside it) when the file is behind, so every reader of the file sees them too."""
        from shared import governance

        fetched: dict[int, dsse.Envelope] = {}

        def remember(version: int) -> dsse.Envelope:
            if version not in fetched:
                fetched[version] = fetch(version)
            return fetched[version]

        self.current()  # take any newer file first: a version already held is then no news
        with self._lock:
            trial = self._chain.copy()
        trial.advance(envelope, remember)  # the fetching happens here, without holding the lock
        with self._lock:
            added = self._chain.advance(envelope, remember)
            if not added:
                return []
            for env in added:
                version = governance.parse_unverified(env).version
                if self._keep is not None:
                    governance.write_envelope(governance.history_file(self._keep, version), env)
            if self._file_version() < self._chain.head.version:
                history = governance.history_dir(self._path)
                for env in added:
                    version = governance.parse_unverified(env).version
                    governance.write_envelope(governance.history_file(history, version), env)
                governance.write_envelope(self._path, added[-1])
                st = self._path.stat()
                self._stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            return added

    def _file_version(self) -> int:
        from shared import governance
        from shared.errors import CagnetError

        try:
            return governance.parse_unverified(governance.read_envelope(self._path)).version
        except (CagnetError, ValueError):
            return 0
