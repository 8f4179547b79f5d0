"""The coordinator's audit log: every call to its three services (Coordinator, Register, Governance)
and every feed snapshot it publishes on a schedule, in the same hash chain a node keeps
(`shared.audit`), in a database of its own: `CAGNET_COORDINATOR_AUDIT_DATABASE_URL` (or
`audit_database_url` in NETDIR/coordinator.toml), by default NETDIR/coordinator-audit.db.

The decisions are a node's: "released" (a signed response was sent; `release_digest` is the SHA-256
of its payload, the exact bytes signed), "refused: <rule>" (a caller whose request verified, refused
by role, by the policy or by a check of what it asked) and "rejected: <reason>" (the call did not
verify, or failed inside; the principal is then the TLS peer's party id). `parameters` holds what
was asked, never figures: the request's fields, with bytes and signed envelopes as their digests.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.message import Message
from sqlalchemy.engine import Connection, Engine

from coordinator.settings import CoordinatorSettings
from shared import audit, dsse
from shared.auth import NonceCache, Verified, require_role
from shared.errors import CagnetError, NotPermitted
from shared.interceptor import verify_call
from shared.manifest import COORDINATOR, ManifestSource, Party
from shared.pb.cagnet.v1 import envelope_pb2
from shared.policy import PolicySource

log = logging.getLogger(__name__)

AUDIT_DATABASE = "coordinator-audit.db"

Methods = Mapping[str, tuple[type[Message], tuple[str, ...]]]


def default_database_url(netdir: Path) -> str:
    return f"sqlite:///{(netdir / AUDIT_DATABASE).resolve()}"


def database_url(netdir: Path) -> str:
    """Where the coordinator of `netdir` keeps its audit log, as its settings say."""
    return CoordinatorSettings.load(netdir).audit_database_url or default_database_url(netdir)


def request_parameters(message: Message) -> dict[str, object]:
    """What a request asked, for the audit log: every field set except the header, bytes as their
    SHA-256 and a signed envelope (a feed's queries, a proposal, a mandate) as its payload's."""
    asked: dict[str, object] = {}
    for descriptor, value in message.ListFields():
        if descriptor.name == "header":
            continue
        if descriptor.is_repeated:
            asked[descriptor.name] = [_parameter(v) for v in value]
        else:
            asked[descriptor.name] = _parameter(value)
    return asked


def _parameter(value: Any) -> object:
    if isinstance(value, bytes):
        return audit.digest_of(value)
    if isinstance(value, envelope_pb2.Envelope):
        return audit.digest_of(value.payload)
    if isinstance(value, Message):
        return audit.digest_of(value.SerializeToString(deterministic=True))
    return value


@dataclass
class CoordinatorAudit:
    """The log the three services share, opened on first use. `url` None: as the settings say."""

    netdir: Path
    manifests: ManifestSource
    policies: PolicySource | None = None
    url: str | None = None
    _engine: Engine | None = field(default=None, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                self._engine = audit.open_log(self.url or database_url(self.netdir))
            return self._engine

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    def record(
        self,
        *,
        principal: str,
        role: str,
        method: str,
        parameters: Mapping[str, object],
        decision: str,
        via: str = "",
        released: bytes | None = None,
        policy_digest: str | None = None,
        also: Callable[[Connection], None] | None = None,
    ) -> None:
        """Append one entry: the one writer for every service. `policy_digest` None: the network
        policy in force now (or "" without a valid one). `also` writes what must be stored with
        the entry, in its transaction (a query's spent nonce: `shared.nonces.SpentNonces`)."""
        if policy_digest is None:
            policy_digest = ""
            if self.policies is not None:
                with contextlib.suppress(CagnetError):  # a call refused because the policy is gone is still written
                    policy_digest = self.policies.current().digest
        audit.write(
            self.engine,
            principal=principal,
            role=role,
            via=via,
            method=method,
            parameters=parameters,
            decision=decision,
            release_digest="" if released is None else audit.digest_of(released),
            policy_digest=policy_digest,
            also=also,
        )

    def released(
        self,
        principal: Party,
        method: str,
        parameters: Mapping[str, object],
        response: dsse.Envelope,
        *,
        via: str = "",
        policy_digest: str | None = None,
        also: Callable[[Connection], None] | None = None,
    ) -> None:
        """A signed response about to be sent. Raises if it cannot be written: nothing leaves unrecorded."""
        self.record(
            also=also,
            principal=principal.id,
            role=",".join(principal.roles),
            via=via,
            method=method,
            parameters=parameters,
            decision="released",
            released=response.payload,
            policy_digest=policy_digest,
        )

    def refused(
        self,
        principal: Party,
        method: str,
        parameters: Mapping[str, object],
        error: CagnetError,
        *,
        via: str = "",
        policy_digest: str | None = None,
    ) -> None:
        """A verified caller refused; marks `error` as written so `on_reject` does not write it again."""
        self.record(
            principal=principal.id,
            role=",".join(principal.roles),
            via=via,
            method=method,
            parameters=parameters,
            decision=f"refused: {error.public_message}",
            policy_digest=policy_digest,
        )
        error.audited = True

    def authenticate(
        self,
        methods: Methods,
        method: str,
        envelope: dsse.Envelope,
        peer: str | None,
        *,
        nonces: NonceCache,
        route: Callable[[Party, str], str] = lambda _principal, _method: "",
    ) -> Verified[Any]:
        """Verify a call to a coordinator service (`shared.interceptor.verify_call`) and check the
        caller's role; a caller refused by role is written as who they are and what they asked,
        and told its `route` to what it wanted where it has one."""
        verified = verify_call(
            methods,
            method,
            envelope,
            manifest=self.manifests.current(),
            audience=COORDINATOR,
            nonces=nonces,
            peer=peer,
        )
        try:
            require_role(verified.principal, methods[method][1], method)
        except NotPermitted as exc:
            instead = route(verified.principal, method)
            refusal = NotPermitted(f"{exc.public_message}; {instead}") if instead else exc
            self.refused(verified.principal, method, request_parameters(verified.message), refusal)
            raise refusal from None
        return verified

    def on_reject(self, method: str, peer: str | None, error: CagnetError, verified: Verified[Any] | None) -> None:
        """Every service's interceptor calls this for a call that failed: written unless the
        servicer already wrote it with more to say."""
        if error.audited:
            return
        try:
            if verified is not None and error.code != grpc.StatusCode.INTERNAL:
                self.refused(verified.principal, method, request_parameters(verified.message), error)
            else:
                self.record(
                    principal=peer or "unknown",
                    role="",
                    method=method,
                    parameters={},
                    decision=f"rejected: {error.public_message}",
                )
        except Exception:
            log.exception("could not write a refused call to the coordinator's audit log")
