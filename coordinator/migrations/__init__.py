"""The coordinator's migrations: the accreditation register's (register/) and the feed store's
(feeds/); its audit log's are `shared.migrations.audit`. `databases` lists the three databases a
coordinator keeps, where its settings put them, for `cagnet coordinator upgrade NETDIR`."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import create_engine

# Aliased: importing this package's feeds/ and register/ would rebind plain `feeds` and `register`.
from coordinator import audit
from coordinator.feeds import snapshot as feed_snapshot
from coordinator.register import store as register_store
from coordinator.register.server import RegisterSettings
from coordinator.register.server import default_database_url as default_register_url
from coordinator.settings import CoordinatorSettings
from shared.audit import LOG_STORE
from shared.migrate import Store, ensure_current


def check_databases(netdir: Path) -> None:
    """Refuse (SchemaMismatch) when any of the coordinator's databases needs an upgrade, before the
    coordinator starts rather than at the first call that opens it; an empty one is made current."""
    for store, url in databases(netdir):
        engine = create_engine(url)
        try:
            ensure_current(engine, store)
        finally:
            engine.dispose()


def databases(netdir: Path) -> list[tuple[Store, str]]:
    """The coordinator's databases and their URLs, as `cagnet coordinator serve` would open them."""
    settings = CoordinatorSettings.load(netdir)
    return [
        (register_store.STORE, RegisterSettings().database_url or default_register_url(netdir)),
        (feed_snapshot.STORE, settings.feed_database_url or feed_snapshot.default_database_url(netdir)),
        (LOG_STORE, settings.audit_database_url or audit.default_database_url(netdir)),
    ]
