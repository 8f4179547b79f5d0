"""The coordinator's accepted nonces (`shared.nonces`, where the schema is declared beside its
table): one table, accepted_nonce, in the coordinator's audit database beside the audit log (a node
keeps its own in its node schema); this package holds env.py and the revisions."""

from __future__ import annotations

from shared.nonces import SCHEMA

__all__ = ["SCHEMA"]
