"""The coordinator's accepted nonces (`shared.nonces`): one table, accepted_nonce, in the
coordinator's audit database beside the audit log (a node keeps its own in its node schema)."""

from __future__ import annotations

from sqlalchemy import MetaData

from shared.migrate import Schema


def _metadata() -> MetaData:
    import shared.nonces

    return shared.nonces.metadata


SCHEMA = Schema(
    name="nonces",
    package="shared.migrations.nonces",
    metadata=_metadata,
    core_tables=frozenset({"accepted_nonce"}),
    only_tables=frozenset({"accepted_nonce"}),
)
