"""A member's or the CAG chair's client for the accreditation register on the coordinator.

Every call is a signed request over mTLS and every answer must verify as the coordinator's reply
to exactly that request. Nothing the coordinator says is taken on trust past that: `fetch_history`
checks the checkpoint's signatures and every entry's signature and inclusion proof before a
status is derived from them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import dsse, merkle
from shared.accreditation import LoggedEntry, verify_entry
from shared.channel import CoordinatorChannel, ServiceRefused
from shared.checkpoint import VerifiedCheckpoint, make_receipt, verify_checkpoint
from shared.errors import InconsistentLog
from shared.identity import Identity
from shared.manifest import Manifest
from shared.pb.cagnet.v1 import register_pb2, register_pb2_grpc
from shared.serde import envelope_from_proto

SERVICE = "cagnet.v1.Register"


class RegisterRefused(ServiceRefused):
    """The register refused a request: its gRPC status and its message (a rule, never data)."""


class RegisterClient(CoordinatorChannel):
    """One mTLS channel to the coordinator's register, acting as `identity`."""

    service = SERVICE
    what = "the register"
    refused = RegisterRefused

    def __init__(self, identity: Identity, manifest: Callable[[], Manifest], *, endpoint: str | None = None) -> None:
        super().__init__(identity, manifest, endpoint=endpoint)
        self._stub = register_pb2_grpc.RegisterStub(self._channel)

    def submit(self, data: bytes) -> tuple[int, int]:
        """Submit an entry (its canonical DSSE JSON bytes); returns (leaf index, tree size)."""
        reply = self._call("Submit", register_pb2.SubmitRequest(entry=data), register_pb2.SubmitResponse)
        if reply.leaf_hash != merkle.leaf_hash(data) or not 0 <= reply.leaf_index < reply.tree_size:
            raise InconsistentLog("the register's receipt is not for the entry submitted")
        return reply.leaf_index, reply.tree_size

    def checkpoint(self) -> dsse.Envelope:
        reply = self._call("GetCheckpoint", register_pb2.CheckpointRequest(), register_pb2.CheckpointResponse)
        return envelope_from_proto(reply.checkpoint)

    def cosign(self, tree_size: int, root: bytes, signature: bytes) -> tuple[int, int, bool]:
        request = register_pb2.CosignRequest(tree_size=tree_size, root_hash=root, signature=signature)
        reply = self._call("Cosign", request, register_pb2.CosignResponse)
        return reply.cosignatures, reply.quorum, reply.final

    def inclusion_proof(self, leaf_index: int, tree_size: int) -> tuple[bytes, list[bytes]]:
        request = register_pb2.InclusionProofRequest(leaf_index=leaf_index, tree_size=tree_size)
        reply = self._call("InclusionProof", request, register_pb2.InclusionProofResponse)
        if reply.leaf_index != leaf_index or reply.tree_size != tree_size:
            raise InconsistentLog("the register answered for another leaf")
        return bytes(reply.entry), [bytes(p) for p in reply.path]

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        request = register_pb2.ConsistencyProofRequest(first=first, second=second)
        reply = self._call("ConsistencyProof", request, register_pb2.ConsistencyProofResponse)
        if reply.first != first or reply.second != second:
            raise InconsistentLog("the register answered for other tree sizes")
        return [bytes(p) for p in reply.path]

    def entries(self, start: int, end: int) -> list[bytes]:
        """Entries [start, end), fetched a page at a time."""
        found: list[bytes] = []
        while start + len(found) < end:
            at = start + len(found)
            reply = self._call("Entries", register_pb2.EntriesRequest(start=at, end=end), register_pb2.EntriesResponse)
            if reply.start != at or not reply.entries:
                raise InconsistentLog("the register returned no entries for a range it holds")
            found.extend(bytes(e) for e in reply.entries)
        if len(found) != end - start:
            raise InconsistentLog("the register returned more entries than asked for")
        return found

    def history(self, provider: str) -> register_pb2.HistoryResponse:
        return self._call("History", register_pb2.HistoryRequest(provider=provider), register_pb2.HistoryResponse)


@dataclass(frozen=True)
class History:
    """A provider's entries as verified: the key asked, the checkpoint, and a receipt to keep."""

    provider: str
    checkpoint: VerifiedCheckpoint
    entries: tuple[LoggedEntry, ...]
    receipt: dict[str, Any]


def fetch_history(
    client: RegisterClient,
    provider: str,
    *,
    quorum: int | None = None,
    network_dir: Path | None = None,
    chain: Sequence[Manifest] = (),
) -> History:
    """A provider's entries, each checked: signed by the authority it names (with a key it held at
    some version of the verified `chain`, so one rotated since still verifies), for this register,
    about this provider, and included in a checkpoint the coordinator signed."""
    manifest = client.manifest
    reply = client.history(provider)
    envelope = envelope_from_proto(reply.checkpoint)
    checkpoint = verify_checkpoint(envelope, manifest, quorum=quorum)
    size, root = checkpoint.checkpoint.size, checkpoint.checkpoint.root
    entries, proofs = [], []
    for logged in reply.entries:
        data, path = bytes(logged.entry), [bytes(p) for p in logged.path]
        merkle.verify_inclusion(merkle.leaf_hash(data), logged.leaf_index, size, path, root)
        entry, _ = verify_entry(data, manifest, register=checkpoint.checkpoint.origin, earlier=chain)
        if reply.provider not in entry.provider.keys:
            raise InconsistentLog("the register returned an entry about another provider")
        entries.append(LoggedEntry(leaf_index=logged.leaf_index, entry=entry))
        proofs.append((logged.leaf_index, data, path))
    receipt = make_receipt(envelope, proofs, network_dir=network_dir, manifest_version=manifest.version)
    return History(reply.provider, checkpoint, tuple(entries), receipt)


@dataclass(frozen=True)
class WholeRegister:
    """Every entry in the register as verified against a checkpoint."""

    checkpoint: VerifiedCheckpoint
    entries: tuple[LoggedEntry, ...]


def fetch_register(
    client: RegisterClient, *, quorum: int | None = None, chain: Sequence[Manifest] = ()
) -> WholeRegister:
    """Every entry up to the newest checkpoint, each checked: signed by the authority it names (with
    a key it held at some version of the verified `chain`) and for this register; and all of them
    together hash to the checkpoint's root, so the coordinator can have left none out."""
    manifest = client.manifest
    envelope = client.checkpoint()
    checkpoint = verify_checkpoint(envelope, manifest, quorum=quorum)
    size = checkpoint.checkpoint.size
    data = client.entries(0, size) if size else []
    if merkle.root_of([merkle.leaf_hash(d) for d in data]) != checkpoint.checkpoint.root:
        raise InconsistentLog("the register's entries do not hash to its checkpoint")
    entries = []
    for index, item in enumerate(data):
        entry, _ = verify_entry(item, manifest, register=checkpoint.checkpoint.origin, earlier=chain)
        entries.append(LoggedEntry(leaf_index=index, entry=entry))
    return WholeRegister(checkpoint, tuple(entries))
