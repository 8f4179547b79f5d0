"""The accreditation register's gRPC service, hosted by the coordinator process.

The same signed-envelope interceptor and request checks as every cagnet service (issuer,
audience "coordinator", method, expiry, nonce, signature, TLS peer = signer), then a role check:
Submit and Cosign are for member authorities; reading (checkpoints, proofs, entries, history) for
member authorities and the CAG chair. The servicer converts and signs; `coordinator.register`
holds the rules. The store opens on first use, at CAGNET_REGISTER_DATABASE_URL or
NETDIR/register.db.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import Engine

from coordinator import network
from coordinator.audit import CoordinatorAudit, request_parameters
from coordinator.register import rules as logic
from coordinator.register import store
from shared import dsse
from shared.auth import NonceCache, Verified, response_header, sign_message
from shared.errors import CagnetError
from shared.identity import Identity
from shared.interceptor import SignedEnvelopeInterceptor, current_request
from shared.manifest import CAG_CHAIR, MEMBER_AUTHORITY, ManifestSource
from shared.pb.cagnet.v1 import envelope_pb2, register_pb2, register_pb2_grpc
from shared.serde import envelope_to_proto

log = logging.getLogger(__name__)

SERVICE = "cagnet.v1.Register"
# Response fields written to the audit log beside the request's: where an entry landed, how far a
# checkpoint got. Entries, proofs and checkpoints themselves are covered by the response's digest.
_OUTCOME = ("leaf_index", "tree_size", "cosignatures", "quorum", "final")
READERS = (MEMBER_AUTHORITY, CAG_CHAIR)
METHODS: dict[str, tuple[type[Message], tuple[str, ...]]] = {
    f"/{SERVICE}/Submit": (register_pb2.SubmitRequest, (MEMBER_AUTHORITY,)),
    f"/{SERVICE}/Cosign": (register_pb2.CosignRequest, (MEMBER_AUTHORITY,)),
    f"/{SERVICE}/GetCheckpoint": (register_pb2.CheckpointRequest, READERS),
    f"/{SERVICE}/InclusionProof": (register_pb2.InclusionProofRequest, READERS),
    f"/{SERVICE}/ConsistencyProof": (register_pb2.ConsistencyProofRequest, READERS),
    f"/{SERVICE}/Entries": (register_pb2.EntriesRequest, READERS),
    f"/{SERVICE}/History": (register_pb2.HistoryRequest, READERS),
}


class RegisterSettings(BaseSettings):
    """Read from CAGNET_REGISTER_* environment variables."""

    model_config = SettingsConfigDict(env_prefix="CAGNET_REGISTER_")

    database_url: str | None = None
    # Cosignatures that make a checkpoint final; default: a simple majority of member authorities.
    quorum: int | None = None
    page_size: int = 256


def default_database_url(netdir: Path) -> str:
    return f"sqlite:///{(netdir / 'register.db').resolve()}"


@dataclass
class RegisterRuntime:
    netdir: Path
    identity: Identity
    manifests: ManifestSource
    settings: RegisterSettings = field(default_factory=RegisterSettings)
    nonces: NonceCache = field(default_factory=NonceCache)
    _engine: Engine | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    # The coordinator's audit log; `coordinator.server.create_server` puts in the one its services share.
    audit: CoordinatorAudit = field(init=False)

    def __post_init__(self) -> None:
        self.audit = CoordinatorAudit(self.netdir, self.manifests)

    @classmethod
    def open(cls, netdir: Path, *, database_url: str | None = None, quorum: int | None = None) -> RegisterRuntime:
        identity = network.coordinator_identity(netdir)
        settings = RegisterSettings()
        if database_url is not None:
            settings.database_url = database_url
        if quorum is not None:
            settings.quorum = quorum
        return cls(netdir, identity, ManifestSource(network.manifest_path(netdir), identity.public_key), settings)

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = store.open_register(self.settings.database_url or default_database_url(self.netdir))
            return self._engine

    @property
    def register(self) -> logic.Register:
        return logic.Register(self.engine, self.identity, self.settings.quorum)

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def authenticate(self, method: str, envelope: dsse.Envelope, peer: str | None) -> Verified[Any]:
        return self.audit.authenticate(METHODS, method, envelope, peer, nonces=self.nonces)

    def on_reject(self, method: str, peer: str | None, error: CagnetError, verified: Verified[Any] | None) -> None:
        log.info("register rejected %s from %s: %s", method, peer, error.public_message)
        self.audit.on_reject(method, peer, error, verified)

    def interceptor(self) -> SignedEnvelopeInterceptor:
        return SignedEnvelopeInterceptor((SERVICE,), self.authenticate, self.on_reject)


class RegisterServicer(register_pb2_grpc.RegisterServicer):
    def __init__(self, runtime: RegisterRuntime) -> None:
        self.rt = runtime

    def _reply(
        self, method: str, verified: Verified[Any], message_cls: Callable[..., Message], **fields: Any
    ) -> envelope_pb2.Envelope:
        """Sign the response and write the call to the audit log: what was asked, and where it was
        appended or cosigned (the response's own digest covers the rest)."""
        header = response_header(self.rt.identity, request_digest=verified.request_digest)
        signed = sign_message(message_cls(header=header, **fields), self.rt.identity)
        parameters = request_parameters(verified.message)
        parameters.update({k: v for k, v in fields.items() if k in _OUTCOME})
        self.rt.audit.released(verified.principal, method, parameters, signed)
        return envelope_to_proto(signed)

    def Submit(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        verified = current_request()
        data = bytes(verified.message.entry)
        index, size = logic.submit(self.rt.register, self.rt.manifests.current(), issuer=verified.issuer, data=data)
        log.info("register: %s appended leaf %d", verified.issuer.id, index)
        return self._reply(
            f"/{SERVICE}/Submit",
            verified,
            register_pb2.SubmitResponse,
            leaf_index=index,
            tree_size=size,
            leaf_hash=logic.leaf_hash(data),
        )

    def GetCheckpoint(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        verified = current_request()
        manifest = self.rt.manifests.current()
        register = self.rt.register
        checkpoint = logic.checkpoint_envelope(register, logic.current_checkpoint(register, manifest))
        return self._reply(
            f"/{SERVICE}/GetCheckpoint",
            verified,
            register_pb2.CheckpointResponse,
            checkpoint=envelope_to_proto(checkpoint),
            quorum=register.quorum_for(manifest),
        )

    def Cosign(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        verified = current_request()
        message = verified.message
        manifest = self.rt.manifests.current()
        count, quorum = logic.cosign(
            self.rt.register,
            manifest,
            witness=verified.issuer,
            tree_size=message.tree_size,
            root=bytes(message.root_hash),
            signature=bytes(message.signature),
        )
        return self._reply(
            f"/{SERVICE}/Cosign",
            verified,
            register_pb2.CosignResponse,
            cosignatures=count,
            quorum=quorum,
            final=count >= quorum,
        )

    def InclusionProof(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        verified = current_request()
        m = verified.message
        engine = self.rt.engine
        path = store.inclusion_proof(engine, m.leaf_index, m.tree_size)
        (data,) = store.entries(engine, m.leaf_index, m.leaf_index + 1)
        return self._reply(
            f"/{SERVICE}/InclusionProof",
            verified,
            register_pb2.InclusionProofResponse,
            leaf_index=m.leaf_index,
            tree_size=m.tree_size,
            entry=data,
            path=path,
        )

    def ConsistencyProof(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        verified = current_request()
        m = verified.message
        path = store.consistency_proof(self.rt.engine, m.first, m.second)
        return self._reply(
            f"/{SERVICE}/ConsistencyProof",
            verified,
            register_pb2.ConsistencyProofResponse,
            first=m.first,
            second=m.second,
            path=path,
        )

    def Entries(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        verified = current_request()
        m = verified.message
        page = logic.entries_page(self.rt.register, start=m.start, end=m.end, page=self.rt.settings.page_size)
        return self._reply(f"/{SERVICE}/Entries", verified, register_pb2.EntriesResponse, start=m.start, entries=page)

    def History(self, request: envelope_pb2.Envelope, context: grpc.ServicerContext) -> envelope_pb2.Envelope:
        verified = current_request()
        manifest = self.rt.manifests.current()
        register = self.rt.register
        key, checkpoint, found = logic.history(register, manifest, verified.message.provider)
        return self._reply(
            f"/{SERVICE}/History",
            verified,
            register_pb2.HistoryResponse,
            provider=key,
            checkpoint=envelope_to_proto(logic.checkpoint_envelope(register, checkpoint)),
            quorum=register.quorum_for(manifest),
            entries=[register_pb2.LoggedEntry(leaf_index=i, entry=d, path=p) for i, d, p in found],
        )


def add_to_server(server: grpc.Server, runtime: RegisterRuntime) -> None:
    register_pb2_grpc.add_RegisterServicer_to_server(RegisterServicer(runtime), server)
