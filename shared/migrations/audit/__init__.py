"""The audit log's migrations (`shared.audit`): one table, audit_log, wherever a log is kept: in a
node's database beside the node schema, and in the coordinator's audit database."""

from __future__ import annotations

from sqlalchemy import MetaData

from shared.migrate import Schema, Store
from shared.migrations.nonces import SCHEMA as NONCES


def _metadata() -> MetaData:
    import shared.audit

    return shared.audit.AuditEntry.metadata


SCHEMA = Schema(
    name="audit",
    package="shared.migrations.audit",
    metadata=_metadata,
    core_tables=frozenset({"audit_log"}),
    only_tables=frozenset({"audit_log"}),
)

# Only the coordinator keeps an audit log in a database of its own (a node's is in its node database),
# and beside it the nonces of the requests it accepted (`shared.nonces`).
LOG_STORE = Store(
    title="the coordinator's audit log", schemas=(SCHEMA, NONCES), upgrade_command="cagnet coordinator upgrade NETDIR"
)
