"""The node database's migrations: every table a node keeps except the audit log (whose own
history, `shared.migrations.audit`, runs on the same database). Revisions are in versions/; the
schema and the store are declared beside the tables, in `node.store`."""

from __future__ import annotations

from node.store import SCHEMA, STORE

__all__ = ["SCHEMA", "STORE"]
