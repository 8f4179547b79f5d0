"""Signing-key rotation on the key holder's side (a node, a principal, the coordinator).

`cagnet node rotate-key` / `cagnet network rotate-key` make the next key beside the current one
(`signing.next.key` in the identity folder) and propose it; the members' quorum decides. The holder
keeps signing with its current key until a manifest version lists the next key as its own, then
switches: the old key stays valid for requests until the overlap the proposal set, so nothing in
flight breaks.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import keyfile
from shared.errors import InvalidRequest
from shared.manifest import Manifest, encode_key

log = logging.getLogger(__name__)

CURRENT = "signing.key"
NEXT = "signing.next.key"


def next_key(identity_dir: Path) -> Ed25519PrivateKey:
    """The key waiting to replace the current one: made now if there is none, else the one already
    made (so a rotation proposed again after it lapsed offers the same key)."""
    path = identity_dir / NEXT
    if path.exists():
        return keyfile.read_signing_key(path)
    if not (identity_dir / CURRENT).exists():
        raise InvalidRequest(f"{identity_dir} holds no signing key: is this an identity folder?")
    key = Ed25519PrivateKey.generate()
    keyfile.write_private_key(path, key)
    return key


def promote_if_listed(identity_dir: Path, manifest: Manifest, party_id: str) -> bool:
    """Make the next key the current one if `manifest` (verified by the caller) lists it for
    `party_id`; whether it did.

    The current key is overwritten rather than kept: once the manifest names the new key, the old
    private key only adds risk (requests it signed stop counting when the overlap ends)."""
    path = identity_dir / NEXT
    try:
        waiting = keyfile.read_signing_key(path)
    except FileNotFoundError:
        return False
    listed = next((p for p in manifest.parties if p.id == party_id), None)
    if listed is None or listed.signing_key != encode_key(waiting.public_key()):
        return False
    try:
        path.replace(identity_dir / CURRENT)  # atomic: a reader sees the old key or the new, never neither
    except FileNotFoundError:
        return False  # another thread of this node switched first
    log.info("manifest version %d lists %s's new signing key: switched to it", manifest.version, party_id)
    return True
