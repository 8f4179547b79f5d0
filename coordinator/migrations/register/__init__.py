"""The accreditation register's migrations (`coordinator.register_store`)."""

from __future__ import annotations

from sqlalchemy import MetaData

from shared.migrate import Schema, Store


def _metadata() -> MetaData:
    from coordinator.register import store as register_store

    return register_store.metadata


SCHEMA = Schema(
    name="register",
    package="coordinator.migrations.register",
    metadata=_metadata,
    core_tables=frozenset(
        {
            "register_leaf",
            "register_provider_index",
            "register_node",
            "register_tree",
            "register_checkpoint",
            "register_cosignature",
        }
    ),
)

STORE = Store(
    title="the accreditation register's database",
    schemas=(SCHEMA,),
    upgrade_command="cagnet coordinator upgrade NETDIR",
)
