"""The accreditation register's migrations (`coordinator.register.store`, where the schema is
declared beside its tables); this package holds env.py and the revisions."""

from __future__ import annotations

from coordinator.register.store import SCHEMA, STORE

__all__ = ["SCHEMA", "STORE"]
