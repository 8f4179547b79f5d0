"""The feed store's migrations (`coordinator.feeds.snapshot.FeedStore`, where the schema is declared
beside its table); this package holds env.py and the revisions."""

from __future__ import annotations

from coordinator.feeds.snapshot import SCHEMA, STORE

__all__ = ["SCHEMA", "STORE"]
