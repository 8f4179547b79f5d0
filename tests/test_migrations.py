"""Schema migrations (`shared.migrate`), on SQLite and PostgreSQL.

Every schema's newest revision is exactly what the code declares (so a model change without a
revision fails here); a node database made before migrations, or left at revision 0001, full of
synthetic records, upgrades in place with `cagnet node upgrade` and then serves a signed supply
map; the coordinator's databases likewise; and a database that is older, newer, foreign or
unreachable is refused with an error that says what to do.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, create_engine, inspect, select, text
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

import cagnet
import coordinator
import node
import shared
from cagnet.cli import app
from cagnet.demo import join_founding_member
from coordinator import network
from coordinator.joint.client import joint_query
from coordinator.migrations import check_databases, databases
from coordinator.migrations import feeds as feed_migrations
from coordinator.migrations import register as register_migrations
from coordinator.register.store import open_register
from node import migrations as node_migrations
from node import stamps
from node.answers.supply import supply_map
from node.client_records import load_person_key
from node.config import load_config
from node.store import open_store, row_counts, store_engine
from node.synthetic.supply import load as load_synthetic
from shared import audit, migrate
from shared.errors import SchemaMismatch, Unavailable
from shared.migrations import audit as audit_migrations
from shared.migrations import nonces as nonce_migrations
from tests.netutil import LiveNetwork, running

PREMIGRATION = Path(__file__).parent / "data" / "premigration"
MEDWAY = "E06000035"
SCHEMAS = (
    node_migrations.SCHEMA,
    audit_migrations.SCHEMA,
    nonce_migrations.SCHEMA,
    register_migrations.SCHEMA,
    feed_migrations.SCHEMA,
)
# The tables an older node made only when a command that used them ran (the server): a node that
# had imported its records but never served lacks them.
MADE_BY_SERVING = ("release_ledger", "released_answer", "mandate_slot", "seen_nonce")

runner = CliRunner()


def _import_everything() -> None:
    """Every module of the shipped packages, so that every table declared anywhere is on its metadata."""
    for package in (shared, node, coordinator, cagnet):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            # Alembic runs env.py and the revisions itself; `python -m cagnet` would run the CLI.
            if module.name.endswith((".env", ".__main__")) or ".versions." in module.name:
                continue
            importlib.import_module(module.name)


def _dialect(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def _run_premigration_sql(engine: Engine, store: str, *, leave_out: tuple[str, ...] = ()) -> None:
    """The tables exactly as an older cagnet's `create_all` made them (frozen in tests/data)."""
    script = (PREMIGRATION / f"{store}.{_dialect(str(engine.url))}.sql").read_text()
    body = "\n".join(line for line in script.splitlines() if not line.startswith("--"))
    with engine.begin() as conn:
        for statement in filter(None, (s.strip() for s in body.split(";"))):
            if any(f"TABLE {name} " in statement or f"ON {name} " in statement for name in leave_out):
                continue
            conn.exec_driver_sql(statement)


def _upgrade_to(engine: Engine, schema: migrate.Schema, revision: str) -> None:
    """A database as an older cagnet with migrations left it: stopped at `revision`."""
    config = Config()
    config.set_main_option("script_location", str(schema.directory))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def _contents(engine: Engine) -> dict[str, list[dict[str, object]]]:
    """Every row of every table but the version tables, in primary-key order, by column name."""
    metadata = MetaData()
    metadata.reflect(engine)
    contents = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            if table.name.startswith("alembic_version"):
                continue
            order = list(table.primary_key.columns) or list(table.columns)
            contents[table.name] = [dict(row) for row in conn.execute(select(table).order_by(*order)).mappings()]
    return contents


# --- (a) the newest revision is the models, exactly ---------------------------------------------------


def _differences(engine: Engine, schema: migrate.Schema) -> list[object]:
    """What Alembic's autogenerate would put in a new revision: nothing when the database is the models."""
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_object": schema.include_object, "compare_type": True})
        return list(compare_metadata(context, schema.metadata))


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.name)
def test_newest_revision_is_exactly_the_models(schema: migrate.Schema, database_url: str) -> None:
    _import_everything()
    engine = create_engine(database_url)
    try:
        done = migrate.upgrade(engine, migrate.Store("a test database", (schema,), "(none)"))
        assert [(u.before, u.after) for u in done] == [(None, migrate.head_revision(schema))]
        assert _differences(engine, schema) == [], (
            f"the {schema.name} models differ from its migrations: add a revision"
        )
        owned = {t for t in inspect(engine).get_table_names() if not t.startswith("alembic_version")}
        assert owned == {t.name for t in schema.metadata.sorted_tables if schema.owns(t.name)}
    finally:
        engine.dispose()


def _structure(engine: Engine, schema: migrate.Schema) -> dict[str, object]:
    """Every table of the schema as the database describes it: columns, keys, indexes and checks."""
    inspector = inspect(engine)
    structure: dict[str, object] = {}
    for table in sorted(inspector.get_table_names()):
        if not schema.owns(table):
            continue
        structure[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default")) for c in inspector.get_columns(table)
            ],
            "primary key": inspector.get_pk_constraint(table)["constrained_columns"],
            "foreign keys": sorted(
                (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]))
                for fk in inspector.get_foreign_keys(table)
            ),
            "unique": sorted(tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)),
            "indexes": sorted(
                (ix["name"], tuple(ix["column_names"]), ix["unique"]) for ix in inspector.get_indexes(table)
            ),
            "checks": sorted(
                (c["name"], " ".join(c["sqltext"].split())) for c in inspector.get_check_constraints(table)
            ),
        }
    return structure


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.name)
def test_a_new_store_is_made_exactly_as_the_revisions_make_it(schema: migrate.Schema, database_url: str) -> None:
    """Opening an empty database makes its tables from the models and stamps the newest revision
    (much quicker than running every revision); it must be what running them makes, down to the
    check constraints Alembic's comparison leaves out."""
    _import_everything()
    store = migrate.Store("a test database", (schema,), "(none)")
    engine = create_engine(database_url)
    try:
        migrate.ensure_current(engine, store)
        made = _structure(engine, schema)
        assert made and all(revision.before == revision.after for revision in migrate.upgrade(engine, store))
        reflected = MetaData()
        reflected.reflect(engine)
        reflected.drop_all(engine)
        done = migrate.upgrade(engine, store)
        assert done[0].applied and _structure(engine, schema) == made
    finally:
        engine.dispose()


def test_every_table_belongs_to_exactly_one_schema() -> None:
    _import_everything()
    owners: dict[str, list[str]] = {}
    for schema in SCHEMAS:
        for table in schema.metadata.sorted_tables:
            if schema.owns(table.name):
                owners.setdefault(table.name, []).append(schema.name)
    assert {name: names for name, names in owners.items() if len(names) != 1} == {}
    assert "audit_log" in owners and owners["audit_log"] == ["audit"]


# --- (b) from the previous schema -----------------------------------------------------------------------


@pytest.fixture
def medway(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveNetwork]:
    """A one-member network whose node keeps its database at `database_url` (not yet made)."""
    netdir = tmp_path / "network"
    network.init_network(netdir, name="Test CAG", coordinator_endpoint="127.0.0.1:0")
    join_founding_member(netdir, tmp_path / MEDWAY, authority=MEDWAY, endpoint="127.0.0.1:0", linkage_key=None)
    monkeypatch.setenv("CAGNET_NODE_DATABASE_URL", database_url)
    yield LiveNetwork(netdir, {MEDWAY: tmp_path / MEDWAY})


def _older_node_database(net: LiveNetwork, made: str) -> Engine:
    """Medway's database as an older cagnet left it, full of synthetic supply, client records,
    outcomes and audit entries: made before migrations (and never served), or at revision 0001 or
    0002 (the last before services had dates and history)."""
    config = load_config(net.nodedirs[MEDWAY])
    engine = store_engine(config.database_url)
    if made == "before-migrations":
        _run_premigration_sql(engine, "node", leave_out=MADE_BY_SERVING)
    else:
        _upgrade_to(engine, audit_migrations.SCHEMA, "0001")
        _upgrade_to(engine, node_migrations.SCHEMA, made.removeprefix("at-"))
    _load_as_an_older_cagnet(engine, net.netdir.parent / "scratch.db", load_person_key(config.person_key_path))
    for n in range(3):
        audit.write(
            engine,
            principal="cag-chair",
            role="cag-chair",
            via="coordinator",
            method="/cagnet.v1.Node/SupplyMap",
            parameters={"by_district": n == 1},
            decision="released",
            release_digest=audit.digest_of(f"release {n}".encode()),
        )
    return engine


def _load_as_an_older_cagnet(engine: Engine, scratch: Path, person_key: bytes) -> None:
    """Medway's synthetic supply, client records and outcomes in an older database: loaded by this
    cagnet into a scratch store at the newest revision, then copied row for row into the columns
    the older database has (today's importers read columns an older schema lacks)."""
    current = open_store(f"sqlite:///{scratch}")
    try:
        load_synthetic(current, authority_code=MEDWAY, seed=3, person_key=person_key, clients=400)
        older = MetaData()
        older.reflect(engine)
        newer = MetaData()
        newer.reflect(current)
        with current.connect() as source, engine.begin() as target:
            for table in newer.sorted_tables:
                if table.name not in older.tables or table.name.startswith("alembic_version"):
                    continue
                columns = [c.name for c in older.tables[table.name].columns if c.name in table.c]
                rows = [dict(r) for r in source.execute(select(*(table.c[c] for c in columns))).mappings()]
                if rows:
                    target.execute(older.tables[table.name].insert(), rows)
    finally:
        current.dispose()


@pytest.mark.parametrize("made", ["before-migrations", "at-0001", "at-0002"])
def test_an_older_node_upgrades_in_place_and_serves(medway: LiveNetwork, made: str) -> None:
    engine = _older_node_database(medway, made)
    before = _contents(engine)
    counts = row_counts(engine)
    assert counts["service"] > 20 and len(before["client_record"]) == 400 and len(before["audit_log"]) == 3
    config = load_config(medway.nodedirs[MEDWAY])

    with pytest.raises(SchemaMismatch) as refused:
        open_store(config.database_url)
    assert "cagnet node upgrade NODEDIR" in str(refused.value)
    assert _contents(engine) == before  # refused before writing anything

    upgrade = ["node", "upgrade", str(medway.nodedirs[MEDWAY])]
    if made == "before-migrations":  # as an operator would run it: the installed command, in a process of its own
        environment = {**os.environ, "COLUMNS": "200"}
        cagnet_command = str(Path(sys.executable).with_name("cagnet"))  # the entry point installed beside python
        run = subprocess.run([cagnet_command, *upgrade], capture_output=True, text=True, env=environment, timeout=120)
        assert run.returncode == 0, run.stderr
        printed = run.stderr
    else:
        result = runner.invoke(app, upgrade, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        printed = result.output
    head = migrate.head_revision(node_migrations.SCHEMA)
    was = "made before migrations" if made == "before-migrations" else made.removeprefix("at-")
    assert f"node: {was} → {head} (ran " in printed
    again = runner.invoke(app, upgrade, env={"COLUMNS": "200"})
    assert again.exit_code == 0, again.output
    assert f"node: {head} → {head} (already up to date)" in again.output

    after = _contents(engine)
    # Every row as it was, in the columns it had; a column a revision added is empty (0003's
    # service dates: an older service is taken to run always).
    kept = {name: [{c: row[c] for c in before[name][0]} for row in after[name]] for name in before if before[name]}
    assert kept == {name: rows for name, rows in before.items() if rows}
    assert {(row["start_date"], row["end_date"]) for row in after["service"]} == {(None, None)}
    assert after["service_history"] == []
    assert after["kpi1_return"] == after["occupancy_return"] == []  # 0006: no returns until imported
    added_by_revisions = {"service_history", "grid_edition", "kpi1_return", "occupancy_return", "write_stamp"}
    assert set(after) - set(before) - added_by_revisions == (
        set(MADE_BY_SERVING) if made == "before-migrations" else set()
    )
    assert _differences(engine, node_migrations.SCHEMA) == _differences(engine, audit_migrations.SCHEMA) == []
    assert audit.verify_chain(engine) == 3
    indexes = {ix["name"] for ix in inspect(engine).get_indexes("client_record")}
    assert "ix_client_record_updated_at" in indexes
    assert len(after["client_record"]) == 400
    # 0007: each part of the records has a stamp, so the upgraded store's edition is a new one.
    assert all(len(str(part)) == 32 for part in stamps.edition(engine))
    raw = supply_map(engine, authority_code=MEDWAY, by_district=False)
    engine.dispose()

    with running(medway) as live:
        bundle, _ = joint_query(live.netdir, kind="supply-map")
    assert bundle.answered == (MEDWAY,)
    released = next(a for a in bundle.result.authorities if a.authority == MEDWAY)
    assert released.units == sum(c.units for c in raw.cells) > 0
    served = store_engine(config.database_url)
    try:
        # The node recorded its release in the tables the upgrade made, on the chain it kept.
        assert audit.verify_chain(served) == 4
        assert len(_contents(served)["release_ledger"]) >= 1
    finally:
        served.dispose()


def test_coordinator_databases_made_before_migrations_upgrade_in_place(tmp_path: Path) -> None:
    netdir = tmp_path / "network"
    network.init_network(netdir, name="Test CAG", coordinator_endpoint="127.0.0.1:0")
    stores = databases(netdir)
    for store, url in stores:
        engine = create_engine(url)
        _run_premigration_sql(engine, store.schemas[0].name)
        engine.dispose()
    register_url = stores[0][1]
    engine = create_engine(register_url)
    with engine.begin() as conn:
        conn.execute(
            text("INSERT INTO register_tree (id, size, root, frontier) VALUES (1, 0, :r, :f)"), {"r": b"", "f": b""}
        )
    engine.dispose()

    # `cagnet coordinator serve` checks its databases before it starts
    with pytest.raises(SchemaMismatch) as refused:
        check_databases(netdir)
    assert "cagnet coordinator upgrade NETDIR" in str(refused.value)

    result = runner.invoke(app, ["coordinator", "upgrade", str(netdir)])
    assert result.exit_code == 0, result.output
    for name in ("register", "feeds", "audit"):
        assert f"{name}: made before migrations → 0001 (ran 0001)" in result.output
    # The coordinator's nonces, a schema older cagnets did not have, are made beside its audit log.
    assert "nonces: empty → 0001 (ran 0001)" in result.output
    again = runner.invoke(app, ["coordinator", "upgrade", str(netdir)])
    assert again.exit_code == 0 and again.output.count("(already up to date)") == 4
    engine = open_register(register_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT size FROM register_tree WHERE id = 1")).scalar_one() == 0
    finally:
        engine.dispose()


# --- (c) refusals ---------------------------------------------------------------------------------------


def test_a_database_newer_than_this_code_is_refused_naming_its_revision(medway: LiveNetwork, database_url: str) -> None:
    open_store(database_url).dispose()
    engine = store_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version_node SET version_num = '0099'"))
    try:
        with pytest.raises(SchemaMismatch) as refused:
            open_store(database_url)
        assert "'0099'" in str(refused.value) and "newer than this cagnet" in str(refused.value)
        result = runner.invoke(app, ["node", "upgrade", str(medway.nodedirs[MEDWAY])])
        assert isinstance(result.exception, SchemaMismatch) and "'0099'" in str(result.exception)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version_node")).scalar_one() == "0099"
    finally:
        engine.dispose()


def test_a_database_with_only_some_of_the_tables_is_left_alone(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE provider (id INTEGER PRIMARY KEY, name VARCHAR(200))"))
        with pytest.raises(SchemaMismatch) as refused:
            migrate.upgrade(engine, node_migrations.STORE)
        assert "authority, contract, district, service" in str(refused.value)
        assert inspect(engine).get_table_names() == ["provider"]
    finally:
        engine.dispose()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_database_is_named_without_its_password(
    medway: LiveNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"postgresql+psycopg://cagnet:secret@127.0.0.1:{_closed_port()}/node"
    monkeypatch.setenv("CAGNET_NODE_DATABASE_URL", url)
    result = runner.invoke(app, ["node", "upgrade", str(medway.nodedirs[MEDWAY])])
    assert isinstance(result.exception, Unavailable)
    message = str(result.exception)
    assert "cannot reach the node database" in message
    assert "secret" not in message and "cagnet:***@127.0.0.1" in message
    with pytest.raises(Unavailable):
        open_store(url)


def test_processes_opening_an_empty_database_at_once_make_it_once(database_url: str) -> None:
    errors: list[BaseException] = []

    def open_it() -> None:
        try:
            open_store(database_url).dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_it) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version_node")).scalar_one() == 1
    finally:
        engine.dispose()


def test_a_database_made_between_reading_its_revision_and_its_tables_is_not_taken_for_an_old_one(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race above, made to happen every time: another opener makes the empty database just after
    this one found no revision and just before it looks for tables (seen in CI as 'made before
    schema migrations' on a brand-new SQLite file)."""
    present = migrate._present
    made: list[bool] = []

    def present_after_another_opener_made_it(conn: object, schema: object) -> set[str]:
        if not made:
            made.append(True)
            other = threading.Thread(target=lambda: open_store(database_url).dispose())
            other.start()
            other.join()
        return present(conn, schema)  # type: ignore[arg-type]

    monkeypatch.setattr(migrate, "_present", present_after_another_opener_made_it)
    open_store(database_url).dispose()
    assert made == [True]
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            for version_table in ("alembic_version_node", "alembic_version_audit"):
                assert conn.execute(text(f"SELECT count(*) FROM {version_table}")).scalar_one() == 1
    finally:
        engine.dispose()


def test_a_revision_that_fails_leaves_the_database_as_it_was(database_url: str) -> None:
    engine = store_engine(database_url)
    try:
        _upgrade_to(engine, audit_migrations.SCHEMA, "0001")
        _upgrade_to(engine, node_migrations.SCHEMA, "0001")
        with engine.begin() as conn:
            # A name 0002 means to use for its second index, taken: 0002 fails after making its first.
            conn.execute(text("CREATE INDEX ix_outcome_updated_at ON provider (name)"))
        with pytest.raises(Exception, match="ix_outcome_updated_at"):
            migrate.upgrade(engine, node_migrations.STORE)
        with engine.connect() as conn:
            assert migrate.current_revision(conn, node_migrations.SCHEMA) == "0001"
        assert "ix_client_record_updated_at" not in {ix["name"] for ix in inspect(engine).get_indexes("client_record")}
    finally:
        engine.dispose()
