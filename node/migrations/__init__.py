"""The node database's migrations: every table a node keeps except the audit log (whose own
history, `shared.migrations.audit`, runs on the same database). Revisions are in versions/."""

from __future__ import annotations

from sqlalchemy import MetaData

from shared.migrate import Schema, Store
from shared.migrations.audit import SCHEMA as AUDIT


def _metadata() -> MetaData:
    # Every module that declares a node table, so that the metadata is whole whatever was imported.
    import node.client_records
    import node.ledger
    import node.store
    import shared.audit  # noqa: F401

    return node.store.SQLModel.metadata


SCHEMA = Schema(
    name="node",
    package="node.migrations",
    metadata=_metadata,
    # What `node.store.open_store` always made; the client-record, ledger, mandate and nonce tables
    # were made only by the commands that imported them, so an older node may lack them (0001 adds them).
    core_tables=frozenset({"authority", "district", "provider", "service", "contract"}),
    foreign_tables=frozenset({"audit_log"}),
)

STORE = Store(title="the node database", schemas=(AUDIT, SCHEMA), upgrade_command="cagnet node upgrade NODEDIR")
"""A node's database: its audit log and its node tables, each schema with its own version table."""
