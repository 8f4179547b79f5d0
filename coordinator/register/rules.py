"""The accreditation register's rules on the coordinator side, as plain functions of its store.

Only a member authority may submit, and only an entry it signed about its own decision; the
coordinator signs checkpoints of the tree as stored and records members' cosignatures. The
servicer in `coordinator.register_server` authenticates and converts; everything else is here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from coordinator.register import store
from shared import dsse, merkle
from shared.accreditation import open_entry, verify_entry
from shared.auth import now_ms
from shared.checkpoint import CHECKPOINT_PAYLOAD_TYPE, Checkpoint, default_quorum, register_origin
from shared.errors import InconsistentLog, InvalidRequest, NotPermitted
from shared.identity import Identity
from shared.manifest import MEMBER_AUTHORITY, Manifest, Party
from shared.provider_identity import parse_key

# A provider's history larger than this is refused rather than sent in one message.
MAX_HISTORY = 1000


@dataclass(frozen=True)
class Register:
    """What the register's functions need: the store and the key that signs checkpoints."""

    engine: Engine
    identity: Identity
    quorum: int | None = None

    def quorum_for(self, manifest: Manifest) -> int:
        return self.quorum or default_quorum(len(manifest.members))


def prepare(data: bytes, manifest: Manifest, *, issuer: Party) -> store.PreparedEntry:
    """Check a submitted entry: well formed, for this register, about the issuer's own decision,
    signed by the issuer's key, with a passport only from another member."""
    _, entry = open_entry(data)
    if entry.authority != issuer.id or not issuer.has_role(MEMBER_AUTHORITY):
        raise NotPermitted("a member authority may submit entries only for its own decisions")
    entry, _ = verify_entry(data, manifest, register=register_origin(manifest))
    return store.PreparedEntry(
        data=bytes(data),
        payload_digest=hashlib.sha256(entry.canonical_bytes()).hexdigest(),
        authority=entry.authority,
        provider_keys=entry.provider.keys,
        decision=entry.decision,
    )


def submit(register: Register, manifest: Manifest, *, issuer: Party, data: bytes) -> tuple[int, int]:
    """Append one entry; returns (leaf index, tree size after the append)."""
    prepared = prepare(data, manifest, issuer=issuer)
    (index,) = store.append(register.engine, [prepared])
    return index, index + 1


def checkpoint_envelope(register: Register, stored: store.StoredCheckpoint) -> dsse.Envelope:
    """The checkpoint with the coordinator's signature and every cosignature recorded for it."""
    signatures = [dsse.Signature(stored.keyid, stored.signature)]
    for _, keyid, sig in store.cosignatures(register.engine, stored.tree_size):
        signatures.append(dsse.Signature(keyid, sig))
    return dsse.Envelope(CHECKPOINT_PAYLOAD_TYPE, stored.payload, tuple(signatures))


def current_checkpoint(register: Register, manifest: Manifest) -> store.StoredCheckpoint:
    """The newest checkpoint, signing one for the tree as it stands if the tree has grown."""
    size, root = store.tree_head(register.engine)
    latest = store.latest_checkpoint(register.engine)
    if latest is not None and latest.tree_size >= size:
        return latest
    # Sign only a root the stored subtrees agree with: a damaged store is refused, not certified.
    if store.root_at(register.engine, size) != root:
        raise InconsistentLog("the register's stored tree does not match its head")
    time_ms = max(now_ms(), latest.time_ms if latest is not None else 0)
    checkpoint = Checkpoint(register_origin(manifest), size, root, time_ms)
    envelope = dsse.sign(CHECKPOINT_PAYLOAD_TYPE, checkpoint.body(), register.identity.signing_key)
    signature = envelope.signatures[0]
    return store.add_checkpoint(
        register.engine,
        store.StoredCheckpoint(size, root, time_ms, checkpoint.body(), signature.keyid, signature.sig),
    )


def cosign(
    register: Register, manifest: Manifest, *, witness: Party, tree_size: int, root: bytes, signature: bytes
) -> tuple[int, int]:
    """Record a member's cosignature of the checkpoint of `tree_size`; returns (cosignatures, quorum)."""
    if not witness.has_role(MEMBER_AUTHORITY):
        raise NotPermitted("only a member authority witnesses the register")
    stored = store.checkpoint_at(register.engine, tree_size)
    if stored.root != root:
        raise InvalidRequest("the cosignature is for another root than the checkpoint of that size")
    one = dsse.Envelope(CHECKPOINT_PAYLOAD_TYPE, stored.payload, (dsse.Signature(witness.keyid, signature),))
    dsse.verify(one, witness.public_key)
    store.add_cosignature(
        register.engine, tree_size=tree_size, witness=witness.id, keyid=witness.keyid, signature=signature
    )
    members = {p.id for p in manifest.members}
    count = sum(1 for w, _, _ in store.cosignatures(register.engine, tree_size) if w in members)
    return count, register.quorum_for(manifest)


def entries_page(register: Register, *, start: int, end: int, page: int) -> list[bytes]:
    size, _ = store.tree_head(register.engine)
    if not 0 <= start <= end <= size:
        raise InvalidRequest("the range must lie inside the log")
    return store.entries(register.engine, start, min(end, start + page))


def history(
    register: Register, manifest: Manifest, provider: str
) -> tuple[str, store.StoredCheckpoint, list[tuple[int, bytes, list[bytes]]]]:
    """A provider's entries, each with its inclusion proof in the current checkpoint."""
    try:
        key = parse_key(provider)
    except ValueError:
        raise InvalidRequest("not a provider key or name") from None
    checkpoint = current_checkpoint(register, manifest)
    indexes = store.leaf_indexes_for(register.engine, key, below=checkpoint.tree_size)
    if len(indexes) > MAX_HISTORY:
        raise InvalidRequest(f"more than {MAX_HISTORY} entries for one provider")
    found = []
    for index in indexes:
        (data,) = store.entries(register.engine, index, index + 1)
        found.append((index, data, store.inclusion_proof(register.engine, index, checkpoint.tree_size)))
    return key, checkpoint, found


def leaf_hash(data: bytes) -> bytes:
    return merkle.leaf_hash(data)
