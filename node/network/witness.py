"""The node as a witness of the accreditation register: one round checks the coordinator's newest
checkpoint against the last one this node cosigned, and cosigns it only if the log has grown
honestly.

A round: verify the checkpoint's signature and origin; refuse a log that shrank, a second root
for a size already cosigned, or a checkpoint dated in the future; check the consistency proof
from the last cosigned checkpoint; fetch every entry added since, check each one's signature,
and recompute the new root from them and the remembered right edge of the tree; audit a sample
of older entries with inclusion proofs (all of them while the log is small); then cosign the
checkpoint's exact bytes. What the node remembers is NODEDIR/witness.json; a refused checkpoint
is kept, signed, in NODEDIR/witness-evidence/ as proof of what the coordinator served.
"""

from __future__ import annotations

import base64
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from node.config import NodeConfig
from shared import dsse, merkle
from shared.accreditation import verify_entry
from shared.auth import CLOCK_SKEW_S, now_ms
from shared.checkpoint import Checkpoint, cosign, verify_checkpoint
from shared.errors import InconsistentLog, InvalidRequest, NotPermitted, VerificationError
from shared.identity import Identity
from shared.manifest import Manifest, ManifestSource
from shared.register_client import RegisterClient

__all__ = ["AUDIT_SAMPLE", "WitnessRound", "WitnessState", "load_state", "witness", "witness_round"]

STATE_FILE = "witness.json"
EVIDENCE_DIR = "witness-evidence"
# Older entries re-checked each round; every one of them while the log is no larger than this.
AUDIT_SAMPLE = 16


@dataclass(frozen=True)
class WitnessState:
    """The last checkpoint this node cosigned, and the tree's right edge at that size."""

    origin: str
    size: int
    root: bytes
    time_ms: int
    frontier: tuple[bytes, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "size": self.size,
            "root": self.root.hex(),
            "time_ms": self.time_ms,
            "frontier": [h.hex() for h in self.frontier],
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> WitnessState:
        try:
            frontier = data["frontier"]
            assert isinstance(frontier, list)
            return cls(
                origin=str(data["origin"]),
                size=int(str(data["size"])),
                root=bytes.fromhex(str(data["root"])),
                time_ms=int(str(data["time_ms"])),
                frontier=tuple(bytes.fromhex(str(h)) for h in frontier),
            )
        except (KeyError, ValueError, AssertionError):
            raise InvalidRequest("the witness state file is malformed") from None


@dataclass(frozen=True)
class WitnessRound:
    authority: str
    previous_size: int
    size: int
    root: bytes
    new_entries: int
    audited: int
    cosignatures: int
    quorum: int
    final: bool


def load_state(path: Path) -> WitnessState | None:
    try:
        return WitnessState.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError:
        raise InvalidRequest(f"{path} is not JSON") from None


def _save_state(path: Path, state: WitnessState) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    tmp.replace(path)  # atomic: a crash never leaves half a state


def _save_evidence(directory: Path, envelope: dsse.Envelope, state: WitnessState | None, reason: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"refused-{now_ms()}.json"
    path.write_text(
        json.dumps(
            {
                "reason": reason,
                "checkpoint": envelope.to_json(),
                "last_cosigned": state.to_json() if state else None,
            },
            indent=2,
        )
        + "\n"
    )
    return path


def witness(
    client: RegisterClient,
    identity: Identity,
    *,
    state_path: Path,
    evidence_dir: Path,
    sample: int = AUDIT_SAMPLE,
    rng: random.Random | None = None,
    chain: Sequence[Manifest] = (),
) -> WitnessRound:
    """One witnessing round (see the module docstring). Raises InconsistentLog, having kept the
    checkpoint as evidence, when the coordinator's log does not check out. `chain` is the node's
    verified manifest chain: an entry signed with a key its authority has rotated since (before
    the rotation was published) still checks out."""
    manifest = client.manifest
    envelope = client.checkpoint()
    checkpoint = verify_checkpoint(envelope, manifest).checkpoint
    state = load_state(state_path)
    previous = state or WitnessState(checkpoint.origin, 0, merkle.EMPTY_ROOT, 0, ())
    try:
        new_entries, audited, frontier = _check(
            client, manifest, checkpoint, previous, sample, rng or random.Random(), chain
        )
    except (VerificationError, InvalidRequest, NotPermitted) as exc:
        reason = exc.public_message
        kept = _save_evidence(evidence_dir, envelope, state, reason)
        raise InconsistentLog(f"checkpoint refused: {reason}", detail=f"evidence kept in {kept}") from None

    signature = cosign(envelope, identity.signing_key)
    count, quorum, final = client.cosign(checkpoint.size, checkpoint.root, signature.sig)
    _save_state(
        state_path,
        WitnessState(checkpoint.origin, checkpoint.size, checkpoint.root, checkpoint.time_ms, tuple(frontier.hashes)),
    )
    return WitnessRound(
        authority=identity.party_id,
        previous_size=previous.size,
        size=checkpoint.size,
        root=checkpoint.root,
        new_entries=new_entries,
        audited=audited,
        cosignatures=count,
        quorum=quorum,
        final=final,
    )


def _check(
    client: RegisterClient,
    manifest: Manifest,
    checkpoint: Checkpoint,
    previous: WitnessState,
    sample: int,
    rng: random.Random,
    chain: Sequence[Manifest] = (),
) -> tuple[int, int, merkle.Frontier]:
    """Every check before a cosignature; returns (new entries, older entries audited, new frontier)."""
    if checkpoint.origin != previous.origin:
        raise InconsistentLog("the checkpoint is for another register than the one witnessed")
    if checkpoint.time_ms > now_ms() + CLOCK_SKEW_S * 1000:
        raise InconsistentLog("the checkpoint is dated in the future")
    if checkpoint.size < previous.size:
        raise InconsistentLog("the log has shrunk since the last checkpoint cosigned")
    if checkpoint.size == previous.size and checkpoint.root != previous.root:
        raise InconsistentLog("a second root for a tree size already cosigned")
    if checkpoint.time_ms < previous.time_ms:
        raise InconsistentLog("the checkpoint is older than the last one cosigned")
    proof = client.consistency_proof(previous.size, checkpoint.size)
    merkle.verify_consistency(previous.size, checkpoint.size, previous.root, checkpoint.root, proof)

    # The consistency proof holds the coordinator to its tree; the entries hold the tree to what
    # the authorities signed. Recompute the new root from them and the remembered right edge.
    frontier = merkle.Frontier(previous.size, previous.frontier)
    if frontier.root() != previous.root:
        raise InvalidRequest("the witness state's frontier does not give its root")
    added = client.entries(previous.size, checkpoint.size)
    for data in added:
        # New since the last cosignature: the key in force, or the one it replaced within its
        # overlap; never any retired key of the chain (a leaked one must not add entries).
        verify_entry(data, manifest, register=checkpoint.origin, now_ms=now_ms())
        frontier.append(merkle.leaf_hash(data))
    if frontier.root() != checkpoint.root:
        raise InconsistentLog("the entries added since the last checkpoint do not hash to the new root")

    # Entries cosigned before may have been edited in the store since: re-check some each round.
    older = range(previous.size)
    picked = list(older) if len(older) <= sample else rng.sample(older, sample)
    for index in picked:
        data, path = client.inclusion_proof(index, checkpoint.size)
        merkle.verify_inclusion(merkle.leaf_hash(data), index, checkpoint.size, path, checkpoint.root)
        verify_entry(data, manifest, register=checkpoint.origin, earlier=chain)
    return len(added), len(picked), frontier


def witness_round(config: NodeConfig, *, endpoint: str | None = None, sample: int = AUDIT_SAMPLE) -> WitnessRound:
    """One round as this node: its identity, its manifest and pinned coordinator key, its state."""
    identity = config.identity()
    trusted = dsse.load_public_key(base64.b64decode(config.coordinator_key))
    manifests = ManifestSource(config.manifest_path, trusted)
    with RegisterClient(identity, manifests.current, endpoint=endpoint) as client:
        return witness(
            client,
            identity,
            state_path=config.nodedir / STATE_FILE,
            evidence_dir=config.nodedir / EVIDENCE_DIR,
            sample=sample,
            chain=[m for m, _ in manifests.history],
        )
