"""The audit log's migrations (`shared.audit`): one table, audit_log, wherever a log is kept: in a
node's database beside the node schema, and in the coordinator's audit database. The schema is
declared beside its table, in `shared.audit`; this package holds env.py and the revisions."""

from __future__ import annotations

from shared.audit import LOG_STORE, SCHEMA

__all__ = ["LOG_STORE", "SCHEMA"]
