"""The feed store's migrations (`coordinator.feeds.FeedStore`)."""

from __future__ import annotations

from sqlalchemy import MetaData

from shared.migrate import Schema, Store


def _metadata() -> MetaData:
    from coordinator.feeds import snapshot as feeds

    return feeds.metadata


SCHEMA = Schema(
    name="feeds",
    package="coordinator.migrations.feeds",
    metadata=_metadata,
    core_tables=frozenset({"feed_snapshot"}),
)

STORE = Store(title="the feed store's database", schemas=(SCHEMA,), upgrade_command="cagnet coordinator upgrade NETDIR")
