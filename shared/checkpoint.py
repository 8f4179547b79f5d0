"""Register checkpoints, witness cosignatures and receipts: what anyone checks offline.

A checkpoint is the text body of a C2SP tlog checkpoint, in a DSSE envelope signed by the
coordinator (the log's key):

    cagnet.register/<CA fingerprint>\\n<tree size>\\n<base64 root hash>\\ntime <unix ms>\\n

A member authority's node witnesses it by adding its own Ed25519 signature over the same
PAE(type, bytes); it is final once a quorum of member authorities (by default a simple majority)
has cosigned. A receipt holds a checkpoint, entries and their inclusion proofs, and verifies with
nothing but the network's manifest.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from shared import dsse, merkle
from shared.accreditation import LoggedEntry, verify_entry
from shared.errors import BadSignature, InconsistentLog, InvalidRequest, UnknownIssuer
from shared.manifest import COORDINATOR, Manifest

__all__ = [
    "CHECKPOINT_PAYLOAD_TYPE",
    "RECEIPT_TYPE",
    "Checkpoint",
    "VerifiedCheckpoint",
    "cosign",
    "default_quorum",
    "make_receipt",
    "parse_checkpoint",
    "register_origin",
    "sign_checkpoint",
    "verify_checkpoint",
    "verify_receipt",
    "verify_receipt_in_chain",
]

CHECKPOINT_PAYLOAD_TYPE = "application/vnd.cagnet.v1.checkpoint+text"
RECEIPT_TYPE = "cagnet.register.receipt/v1"
_BODY = re.compile(r"([^\n]+)\n(0|[1-9][0-9]{0,18})\n([A-Za-z0-9+/=]{44})\ntime (0|[1-9][0-9]{0,18})\n")


def register_origin(manifest: Manifest) -> str:
    """The register's name: unique to the network through its CA, with no spaces (C2SP origin)."""
    return f"cagnet.register/{manifest.ca_fingerprint}"


def default_quorum(members: int) -> int:
    """A simple majority of the member authorities."""
    return members // 2 + 1


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    time_ms: int

    def body(self) -> bytes:
        root = base64.b64encode(self.root).decode("ascii")
        return f"{self.origin}\n{self.size}\n{root}\ntime {self.time_ms}\n".encode()


def parse_checkpoint(payload: bytes) -> Checkpoint:
    try:
        match = _BODY.fullmatch(payload.decode("utf-8"))
    except UnicodeDecodeError:
        match = None
    if match is None:
        raise InvalidRequest("malformed checkpoint")
    try:
        root = base64.b64decode(match.group(3), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("malformed checkpoint root") from None
    checkpoint = Checkpoint(match.group(1), int(match.group(2)), root, int(match.group(4)))
    if len(root) != merkle.HASH_SIZE or checkpoint.body() != payload:
        raise InvalidRequest("malformed checkpoint root")
    return checkpoint


def sign_checkpoint(checkpoint: Checkpoint, key: Ed25519PrivateKey) -> dsse.Envelope:
    return dsse.sign(CHECKPOINT_PAYLOAD_TYPE, checkpoint.body(), key)


def cosign(envelope: dsse.Envelope, key: Ed25519PrivateKey) -> dsse.Signature:
    """A witness's signature over exactly the checkpoint's bytes (as PAE(type, bytes))."""
    return dsse.add_signature(dsse.Envelope(envelope.payload_type, envelope.payload, ()), key).signatures[0]


@dataclass(frozen=True)
class VerifiedCheckpoint:
    checkpoint: Checkpoint
    envelope: dsse.Envelope
    cosigners: tuple[str, ...]
    quorum: int

    @property
    def final(self) -> bool:
        return len(self.cosigners) >= self.quorum


def verify_checkpoint(
    envelope: dsse.Envelope, manifest: Manifest, *, quorum: int | None = None, require_final: bool = False
) -> VerifiedCheckpoint:
    """The checkpoint, if the coordinator signed it for this network's register; and which member
    authorities cosigned it. With `require_final`, fewer than `quorum` cosigners raise."""
    if envelope.payload_type != CHECKPOINT_PAYLOAD_TYPE:
        raise InvalidRequest("not a register checkpoint")
    coordinator = next((p for p in manifest.parties if p.has_role(COORDINATOR)), None)
    if coordinator is None:
        raise InvalidRequest("the manifest lists no coordinator")
    dsse.verify(envelope, coordinator.public_key)
    checkpoint = parse_checkpoint(envelope.payload)
    if checkpoint.origin != register_origin(manifest):
        raise InconsistentLog("the checkpoint is for another register")
    members = manifest.members
    quorum = default_quorum(len(members)) if quorum is None else quorum
    if quorum < 1:
        raise InvalidRequest("a quorum is at least one member")
    try:
        cosigners = dsse.verify_threshold(envelope, {p.id: p.public_key for p in members}, 1)
    except BadSignature:
        cosigners = set()
    verified = VerifiedCheckpoint(checkpoint, envelope, tuple(sorted(cosigners)), quorum)
    if require_final and not verified.final:
        raise InconsistentLog(f"the checkpoint is not final: {len(cosigners)} of {quorum} member cosignatures")
    return verified


def make_receipt(
    checkpoint: dsse.Envelope,
    entries: Sequence[tuple[int, bytes, Sequence[bytes]]],
    *,
    network_dir: Path | None = None,
    manifest_version: int | None = None,
) -> dict[str, object]:
    """A receipt: the checkpoint, and for each entry its leaf index, exact bytes and inclusion proof;
    with `manifest_version`, the version whose keys it verifies under (`verify_receipt_in_chain`)."""
    receipt: dict[str, object] = {
        "type": RECEIPT_TYPE,
        "checkpoint": checkpoint.to_json(),
        "entries": [
            {
                "leaf_index": index,
                "entry": base64.b64encode(data).decode("ascii"),
                "inclusion_proof": [h.hex() for h in path],
            }
            for index, data, path in entries
        ],
    }
    if network_dir is not None:
        receipt["network_dir"] = str(network_dir.resolve())
    if manifest_version is not None:
        receipt["manifest_version"] = manifest_version
    return receipt


def verify_receipt(
    receipt: object,
    manifest: Manifest,
    *,
    quorum: int | None = None,
    require_final: bool = True,
    earlier: Sequence[Manifest] = (),
) -> tuple[VerifiedCheckpoint, list[LoggedEntry]]:
    """Check a receipt offline: the checkpoint's signatures (and quorum), each entry's signature by
    the authority it names (a key it held at `manifest` or any of the `earlier` versions: an entry
    is signed once, when it is submitted), and each entry's inclusion proof against the
    checkpoint's root."""
    if not isinstance(receipt, dict) or receipt.get("type") != RECEIPT_TYPE:
        raise InvalidRequest("not a register receipt")
    checkpoint = verify_checkpoint(
        dsse.Envelope.from_json(receipt.get("checkpoint")), manifest, quorum=quorum, require_final=require_final
    )
    raw_entries = receipt.get("entries")
    if not isinstance(raw_entries, list):
        raise InvalidRequest("the receipt's entries must be a list")
    verified = []
    for item in raw_entries:
        try:
            index = int(item["leaf_index"])
            data = base64.b64decode(item["entry"], validate=True)
            path = [bytes.fromhex(h) for h in item["inclusion_proof"]]
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise InvalidRequest("malformed receipt entry") from None
        # Inclusion first: an entry edited in the log's store no longer hashes to its leaf.
        head = checkpoint.checkpoint
        merkle.verify_inclusion(merkle.leaf_hash(data), index, head.size, path, head.root)
        entry, _ = verify_entry(data, manifest, register=checkpoint.checkpoint.origin, earlier=earlier)
        verified.append(LoggedEntry(leaf_index=index, entry=entry))
    return checkpoint, verified


def verify_receipt_in_chain(
    receipt: object, history: Sequence[Manifest], *, quorum: int | None = None, require_final: bool = True
) -> tuple[VerifiedCheckpoint, list[LoggedEntry], Manifest]:
    """`verify_receipt` against the keys the parties held when it was made, from the verified chain
    (oldest first): the version the receipt names (`manifest_version`, which receipts made before it
    was written lack), else each version from the newest back, until one verifies. The checkpoint's
    and entries' own bytes carry no version (the checkpoint is a C2SP note, the entries were signed
    as they are), so the version is a hint that only picks the keys; the signatures decide. Returns
    the version that verified too. With none verifying, the error under the newest is raised."""
    if not history:
        raise InvalidRequest("no verified manifest to check the receipt against")
    named = receipt.get("manifest_version") if isinstance(receipt, dict) else None
    if isinstance(named, int) and not isinstance(named, bool):
        manifest = next((m for m in history if m.version == named), None)
        candidates = [manifest] if manifest is not None else []
    else:
        candidates = list(reversed(history))
    first: Exception | None = None
    for manifest in candidates:
        try:
            upto = [m for m in history if m.version <= manifest.version]
            checkpoint, entries = verify_receipt(
                receipt, manifest, quorum=quorum, require_final=require_final, earlier=upto
            )
        except (BadSignature, InconsistentLog, UnknownIssuer) as exc:
            first = first or exc
            continue
        return checkpoint, entries, manifest
    if first is None:
        raise InvalidRequest(f"the receipt names manifest version {named}, which this folder's chain does not hold")
    raise first


def load_receipt(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidRequest(f"no such file: {path}") from None
    except json.JSONDecodeError as exc:
        raise InvalidRequest(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest(f"{path} is not a register receipt")
    return data
