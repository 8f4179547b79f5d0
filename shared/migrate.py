"""Schema migrations for every store, with Alembic: one migration environment per schema.

A *schema* is a set of tables that one piece of code owns and one history of revisions shapes:

    node      node/migrations                 the node database's tables (all but the audit log)
    audit     shared/migrations/audit         audit_log, in the node database and the coordinator's
    nonces    shared/migrations/nonces        accepted_nonce, beside the coordinator's audit log
    register  coordinator/migrations/register the accreditation register's log
    feeds     coordinator/migrations/feeds    the coordinator's feed snapshots

Each schema keeps its revision in a version table of its own (`alembic_version_<schema>`), so two
schemas can share one database (a node's database holds the node and audit schemas; an operator
may put the coordinator's three in one PostgreSQL database) without either seeing the other's
tables as strangers.

Opening a store calls `ensure_current`: an empty database is made at the newest revision at once
(its tables from the models, stamped at the head); a database at the newest revision opens as it
is; anything else is refused with `SchemaMismatch`, before a row is read or written. An older
database is upgraded only by the operator's `cagnet node upgrade NODEDIR` or `cagnet coordinator
upgrade NETDIR` (which call `upgrade`), after a backup: a schema change to an authority's records
is a step someone chose to take, never a side effect of a restart. A database made before cagnet
had migrations (its tables there, no version table) is recognised by its tables and taken as
revision 0001 (which adds any baseline table it lacks) before upgrading. How to add a revision: docs/migrations.md.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from alembic.autogenerate.api import AutogenContext
from alembic.config import Config
from alembic.migration import MigrationContext, MigrationInfo
from alembic.runtime.environment import EnvironmentContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.types import TypeDecorator
from sqlmodel.sql.sqltypes import AutoString

from shared.errors import SchemaMismatch, Unavailable

__all__ = [
    "BASELINE",
    "Schema",
    "Store",
    "Upgrade",
    "current_revision",
    "ensure_current",
    "head_revision",
    "missing_sqlite_file",
    "run_environment",
    "safe_url",
    "script_directory",
    "upgrade",
    "upgrade_database",
]

# Alembic's INFO lines ("Context impl SQLiteImpl.") would land in every server's log at each start;
# `upgrade_database` tells the operator what was done instead.
logging.getLogger("alembic").setLevel(logging.WARNING)

BASELINE = "0001"
"""Every schema's first revision: its tables exactly as cagnet made them before it had migrations.
It makes only the tables a database lacks, so on a database made before migrations it adds what its
commands had not yet made and is then stamped like any revision."""


@dataclass(frozen=True)
class Schema:
    """One migration environment: the tables it owns and where its revisions live."""

    name: str  # "node", "audit", "nonces", "register", "feeds"
    package: str  # the package holding env.py and versions/, e.g. "node.migrations"
    # The tables as the code declares them: the store's own module makes its Schema, so nothing
    # here imports a store (a store imported late by its own migrations was an import cycle).
    metadata: MetaData
    # Tables that every database an earlier cagnet made has (its commands made them whenever they
    # opened it): how a database made before migrations is told from an empty or a foreign one.
    core_tables: frozenset[str]
    # Which tables on `metadata` are this schema's: only `only_tables` when given, else every one but
    # `foreign_tables` (SQLModel's one metadata carries the node's tables and the audit log's).
    only_tables: frozenset[str] | None = None
    foreign_tables: frozenset[str] = field(default_factory=frozenset)

    @property
    def version_table(self) -> str:
        return f"alembic_version_{self.name}"

    @property
    def directory(self) -> Path:
        module = importlib.import_module(self.package)
        assert module.__file__ is not None
        return Path(module.__file__).parent

    def owns(self, table: str) -> bool:
        if self.only_tables is not None:
            return table in self.only_tables
        return not table.startswith("alembic_version") and table not in self.foreign_tables

    def include_object(self, obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        """Alembic's filter: compare and generate only this schema's tables (and what is on them)."""
        return type_ != "table" or (name is not None and self.owns(name))


@dataclass(frozen=True)
class Store:
    """A database as an operator knows it: the schemas in it, and the command that upgrades it."""

    title: str  # "the node database"
    schemas: tuple[Schema, ...]
    upgrade_command: str  # "cagnet node upgrade NODEDIR"


@dataclass(frozen=True)
class Upgrade:
    """What `upgrade` did to one schema."""

    schema: str
    before: str | None  # None: an empty database, or one made before migrations
    after: str
    adopted: bool  # made before migrations: recognised by its tables, taken as revision 0001
    applied: tuple[str, ...]  # the revisions run, in order

    def describe(self) -> str:
        before = self.before or ("made before migrations" if self.adopted else "empty")
        if not self.applied:
            return f"{self.schema}: {before} → {self.after} (already up to date)"
        return f"{self.schema}: {before} → {self.after} (ran {', '.join(self.applied)})"


def safe_url(engine_or_url: Engine | str) -> str:
    """The database's URL with any password hidden, for messages."""
    from sqlalchemy.engine import make_url

    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.render_as_string(hide_password=True)


def _config(schema: Schema) -> Config:
    # A new one per command: its attributes carry the connection, and two threads may migrate at once.
    config = Config()
    config.set_main_option("script_location", str(schema.directory))
    return config


@functools.cache
def script_directory(schema: Schema) -> ScriptDirectory:
    return ScriptDirectory.from_config(_config(schema))


def head_revision(schema: Schema) -> str:
    head = script_directory(schema).get_current_head()
    assert head is not None, f"{schema.package} has no revisions"
    return head


def _known(schema: Schema, revision: str) -> bool:
    return revision in {script.revision for script in script_directory(schema).walk_revisions()}


def current_revision(conn: Connection, schema: Schema) -> str | None:
    """The revision stamped in the database, or None (empty, or made before migrations)."""
    context = MigrationContext.configure(conn, opts={"version_table": schema.version_table})
    return context.get_current_revision()


def _present(conn: Connection, schema: Schema) -> set[str]:
    return {t for t in inspect(conn).get_table_names() if t in schema.core_tables}


def _connect(engine: Engine, store: Store) -> Connection:
    try:
        return engine.connect()
    except OperationalError as exc:
        raise Unavailable(
            f"cannot reach {store.title}", detail=f"{safe_url(engine)}: {str(exc.orig).strip()}"
        ) from None


def _too_new(engine: Engine, store: Store, schema: Schema, revision: str) -> SchemaMismatch:
    return SchemaMismatch(
        f"{store.title} is at a schema revision this cagnet does not know",
        detail=f"{safe_url(engine)}: {schema.name} schema revision {revision!r}, newer than this cagnet's "
        f"{head_revision(schema)!r}; a newer cagnet upgraded it: run that version (or restore the backup taken "
        "before the upgrade)",
    )


_State = tuple[Schema, str | None, set[str]]


def _states_on(conn: Connection, schemas: tuple[Schema, ...]) -> list[_State]:
    """Each schema's revision and, with none, which of its core tables are there."""
    states = []
    for schema in schemas:
        revision = current_revision(conn, schema)
        states.append((schema, revision, _present(conn, schema) if revision is None else set()))
    return states


def _locked_state(engine: Engine, store: Store, schema: Schema) -> _State:
    """One schema's state read under the lock that making or upgrading it takes: settled."""
    with _migrating(engine, store, schema) as conn:
        [state] = _states_on(conn, (schema,))
    return state


def _states(engine: Engine, store: Store) -> list[_State]:
    with _connect(engine, store) as conn:
        return _states_on(conn, store.schemas)


def _refuse_strangers(engine: Engine, store: Store, states: list[_State]) -> None:
    """Refuse a schema newer than this code, or a database with some of the core tables and not all."""
    for schema, revision, present in states:
        if revision is not None and not _known(schema, revision):
            raise _too_new(engine, store, schema, revision)
        missing = sorted(schema.core_tables - present)
        if revision is None and present and missing:
            raise SchemaMismatch(
                f"{store.title} has some of cagnet's tables but not all",
                detail=f"{safe_url(engine)}: no {schema.version_table} and no {', '.join(missing)}: "
                "not a database an earlier cagnet made, so it is left alone",
            )


def _is_current(engine: Engine, store: Store) -> bool:
    """Whether every schema is stamped at its head, in one round trip; False (and the full check
    follows) on anything else, a missing version table included."""
    query = " UNION ALL ".join(
        f"SELECT '{schema.name}', version_num FROM {schema.version_table}" for schema in store.schemas
    )
    with _connect(engine, store) as conn:
        try:
            rows = conn.exec_driver_sql(query).all()
        except DBAPIError:
            return False
    return sorted(rows) == sorted((schema.name, head_revision(schema)) for schema in store.schemas)


def ensure_current(engine: Engine, store: Store) -> None:
    """Refuse a database that is not at this code's revisions; make an empty one at them.

    Called by every store's open function: one statement reading every version table when the
    database is current. Every schema is checked before any is made, so a refused database is left
    as it was."""
    if _is_current(engine, store):
        return
    states = _states(engine, store)
    if all(revision == head_revision(schema) for schema, revision, _ in states):
        return
    if any(revision is None and present for _, revision, present in states):
        # The revision and the tables were read by two statements: a process making this empty
        # database at the same moment may have committed between them, which would look like a
        # database made before migrations. Read again under the lock such a process holds.
        states = [_locked_state(engine, store, schema) for schema in store.schemas]
    _refuse_strangers(engine, store, states)
    for schema, revision, present in states:
        if (revision is not None and revision != head_revision(schema)) or (revision is None and present):
            at = f"revision {revision}" if revision is not None else "made before schema migrations"
            raise SchemaMismatch(
                f"{store.title} was made by an older cagnet",
                detail=f"{safe_url(engine)}: {schema.name} schema {at}, this cagnet runs on "
                f"{head_revision(schema)}; back it up, then run `{store.upgrade_command}`",
            )
    for schema, revision, _ in states:
        if revision is None:
            _create_current(engine, store, schema)


def _create_current(engine: Engine, store: Store, schema: Schema) -> None:
    """An empty database's tables made from the models and stamped at the newest revision, as
    Alembic's documentation advises: a third of the cost of running every revision on each new store
    (`bench/migrations.py`), and the same tables, which tests/test_migrations.py checks constraint by
    constraint on both backends."""
    with _migrating(engine, store, schema) as conn:
        [(_, revision, present)] = _states_on(conn, (schema,))
        if revision is not None or present:
            return  # another process made it meanwhile; the next open checks its revision
        metadata = schema.metadata
        metadata.create_all(conn, tables=[table for table in metadata.sorted_tables if schema.owns(table.name)])
        context = MigrationContext.configure(conn, opts={"version_table": schema.version_table})
        context.stamp(script_directory(schema), "head")


def upgrade(engine: Engine, store: Store, progress: Callable[[Upgrade], None] | None = None) -> list[Upgrade]:
    """Bring every schema of the database to this code's newest revision; idempotent. Every schema
    is checked before any is changed; `progress` hears of each as soon as it is done."""
    _refuse_strangers(engine, store, _states(engine, store))
    done = []
    for schema in store.schemas:
        done.append(_upgrade_schema(engine, store, schema))
        if progress is not None:
            progress(done[-1])
    return done


def _upgrade_schema(engine: Engine, store: Store, schema: Schema) -> Upgrade:
    """One schema to its newest revision, in one transaction holding the database's write lock
    (SQLite BEGIN IMMEDIATE; PostgreSQL an advisory lock per schema): two processes upgrading at
    once run the migrations once, and a failure leaves the database as it was."""
    head = head_revision(schema)
    with _migrating(engine, store, schema) as conn:
        # Read again under the lock: another process may have upgraded it meanwhile.
        [(_, before, present)] = _states_on(conn, (schema,))
        _refuse_strangers(engine, store, [(schema, before, present)])
        # Made before migrations: revision 0001 adds the tables its commands had not yet made,
        # exactly as they would have, and leaves the others (and their rows) as they are.
        adopted = before is None and bool(present)
        applied: list[str] = []
        if before != head:
            _run_upgrade(conn, schema, applied)
        if conn.dialect.name == "sqlite":
            # Foreign keys were off while tables were rebuilt (SQLite's documented procedure); check them now.
            problems = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
            if problems:
                raise SchemaMismatch(
                    f"upgrading {store.title} would break its foreign keys",
                    detail=f"{safe_url(engine)}: {len(problems)} rows, first in {problems[0][0]}; nothing changed",
                )
        after = current_revision(conn, schema)
    assert after == head, (after, head)
    return Upgrade(schema.name, before, head, adopted, tuple(applied))


def upgrade_database(engine: Engine, store: Store, echo: Callable[[str], None]) -> list[Upgrade]:
    """`upgrade`, telling an operator which database and, schema by schema, from which revision to which."""
    echo(f"{store.title} at {safe_url(engine)}")
    return upgrade(engine, store, progress=lambda done: echo("  " + done.describe()))


def missing_sqlite_file(url: str) -> Path | None:
    """The file an SQLite URL names when it does not exist yet (upgrading it would only make it)."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    path = Path(parsed.database)
    return None if path.exists() else path


@contextmanager
def _migrating(engine: Engine, store: Store, schema: Schema) -> Iterator[Connection]:
    with _connect(engine, store) as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # SQLite rebuilds a table to alter it (Alembic's batch mode); with foreign keys on, dropping
            # the old copy would cascade. The pragma is ignored inside a transaction, so it goes first.
            conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
            conn.commit()
        try:
            with conn.begin():
                if sqlite:
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                elif conn.dialect.name == "postgresql":
                    key = int.from_bytes(hashlib.sha256(schema.version_table.encode()).digest()[:8], "big", signed=True)
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
                yield conn
        finally:
            if sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()


def _run_upgrade(conn: Connection, schema: Schema, applied: list[str]) -> None:
    """`alembic upgrade head` on `conn`, as `alembic.command.upgrade` runs it but with the schema's
    revisions read once per process rather than once per call: every new store in a process (and
    the test suite makes hundreds) would otherwise re-read and re-run env.py and each revision file."""
    script = script_directory(schema)
    config = _config(schema)
    config.attributes.update(connection=conn, applied=applied)

    def steps(revision: Any, _context: MigrationContext) -> Any:
        return script._upgrade_revs("head", revision)  # what command.upgrade hands the environment

    with EnvironmentContext(config, script, fn=steps, destination_rev="head"):
        run_environment(schema)


def _render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Write a column's type as the plain SQLAlchemy type it is stored as, never as a cagnet or
    SQLModel class: a revision must read the same whatever later becomes of the models' code."""
    if type_ != "type":
        return False
    stored = obj.impl_instance if isinstance(obj, TypeDecorator) else obj
    if isinstance(stored, AutoString):
        return f"sa.String(length={stored.length})"
    if stored is not obj:
        return f"sa.{stored!r}"
    return False


def run_environment(schema: Schema) -> None:
    """The body of each migrations/env.py: run Alembic's command on the connection `upgrade` holds,
    or (for a developer's `alembic revision --autogenerate`) on the database its `-x url=...` names."""
    from alembic import context
    from sqlalchemy import create_engine

    applied: list[str] = context.config.attributes.get("applied", [])

    def note(ctx: MigrationContext, step: MigrationInfo, heads: Collection[Any], run_args: Mapping[str, Any]) -> None:
        if step.up_revision_id is not None and step.is_upgrade and not step.is_stamp:
            applied.append(step.up_revision_id)

    def configure(conn: Connection, **options: Any) -> None:
        context.configure(
            **options,
            connection=conn,
            target_metadata=schema.metadata,
            version_table=schema.version_table,
            include_object=schema.include_object,
            render_as_batch=conn.dialect.name == "sqlite",
            compare_type=True,
            render_item=_render_item,
            on_version_apply=note,
        )

    conn = context.config.attributes.get("connection")
    if conn is not None:
        # `upgrade` holds one transaction for the whole run (on SQLite too, opened BEGIN IMMEDIATE).
        configure(conn, transactional_ddl=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("name the database: alembic -x url=DATABASE_URL ... (or use scripts/new_migration.py)")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            configure(conn)
            context.run_migrations()
    finally:
        engine.dispose()
