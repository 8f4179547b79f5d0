"""What a node answers, as plain functions of its store: who it is, and its supply map.

The gRPC servicer in `node.server` only authenticates, converts and signs; what an aggregate
releases is decided in `node.release` (the disclosure-control path) and every request, released,
refused or rejected, is written to the audit log here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

from sqlalchemy.engine import Connection, Engine

from shared import __version__, audit
from shared.authorities import Register, shipped_register
from shared.kinds.registry import KINDS
from shared.manifest import Party
from shared.models import NodeDescription

# Every joint query kind this node answers: all of the registry.
CAPABILITIES = tuple(KINDS)


def describe(*, authority_code: str, key_fingerprint: str, register: Register | None = None) -> NodeDescription:
    info = (register or shipped_register()).authority(authority_code)
    return NodeDescription(
        authority=info.code,
        name=info.name,
        population=info.population,
        districts=tuple((d.code, d.name) for d in info.districts),
        capabilities=CAPABILITIES,
        key_fingerprint=key_fingerprint,
        software_version=__version__,
    )


def record(
    engine: Engine,
    *,
    principal: Party | None,
    via: str,
    method: str,
    parameters: Mapping[str, object],
    decision: str,
    released: bytes = b"",
    policy_digest: str = "",
    principal_id: str | None = None,
    also: Callable[[Connection], None] | None = None,
) -> None:
    """Append one request to the node's audit log: who, what, the decision, and what left (with
    `also`, what the request spent, in the same transaction: `node.ledger.SpentNonces`)."""
    audit.write(
        engine,
        principal=principal.id if principal else (principal_id or "unknown"),
        role=",".join(principal.roles) if principal else "",
        via=via,
        method=method,
        parameters=parameters,
        decision=decision,
        release_digest=("sha256:" + hashlib.sha256(released).hexdigest()) if released else "",
        policy_digest=policy_digest,
        also=also,
    )
