"""The network manifest: who the parties are (authorities, the coordinator, principals such as the
CAG chair), their roles, endpoints, signing keys and certificate fingerprints.

The manifest travels as a signed DSSE envelope (JSON form) in `manifest.json`, and every version
ever published in `manifests/` beside it. Nodes trust only parties listed in a manifest whose chain
of versions checks out from version 1 (see `shared.governance` and docs/governance.md).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from threading import Lock

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared import dsse, governance
from shared.errors import CagnetError, InvalidRequest
from shared.manifest_document import (
    DIAL_OUT,
    LISTEN,
    MANIFEST_PAYLOAD_TYPE,
    TRANSPORTS,
    Governance,
    Manifest,
    Party,
    encode_key,
    parse_manifest,
    sign_manifest,
)
from shared.roles import CAG_CHAIR, COORDINATOR, MEMBER_AUTHORITY, REGIONAL_BOARD, ROLES

__all__ = [
    "CAG_CHAIR",
    "COORDINATOR",
    "DIAL_OUT",
    "LISTEN",
    "MANIFEST_PAYLOAD_TYPE",
    "MEMBER_AUTHORITY",
    "REGIONAL_BOARD",
    "ROLES",
    "TRANSPORTS",
    "Governance",
    "Manifest",
    "ManifestSource",
    "Party",
    "claimed_version",
    "encode_key",
    "manifest_at",
    "parse_manifest",
    "publish_manifest",
    "read_manifest",
    "sign_manifest",
    "write_manifest",
]

log = logging.getLogger(__name__)


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


def write_manifest(path: Path, manifest: Manifest, key: Ed25519PrivateKey) -> None:
    """Publish a founding-phase version signed by the founding coordinator key (see governance)."""
    publish_manifest(path, sign_manifest(manifest, key))


def publish_manifest(path: Path, envelope: dsse.Envelope) -> None:
    """Write a signed version into the history beside `path`, then make it the current one."""
    version = governance.parse_unverified(envelope).version
    governance.write_envelope(governance.history_file(governance.history_dir(path), version), envelope)
    governance.write_envelope(path, envelope)


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
        try:
            return governance.parse_unverified(governance.read_envelope(self._path)).version
        except (CagnetError, ValueError):
            return 0
