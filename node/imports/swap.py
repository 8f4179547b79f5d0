"""A large import's last step on SQLite: the table's next version is built beside it, a few thousand
rows per short transaction, and swapped in by one transaction that only changes the schema.

SQLite has one writer per database. Writing a million staged rows into a table with five indexes in
one transaction held that lock for 18 s: every answer the node gave meanwhile (it appends to its
audit log, ledger and nonces) waited, and a joint query reported the node missing. Here the new
version of the table is written as `cagnet_build_<table>` (every stored row, with the staged changes
and new rows applied) in transactions sized to hold the lock about a tenth of a second, with a
pause between them, so a waiting writer gets in (the lambdas `_Pace` times run at once); readers
are never blocked (WAL). Those transactions commit without a disk sync or a checkpoint, and each
pause checkpoints instead (`_unsynced`, `_pause`): the swap is the commit that must be durable.
The swap then renames the live table away (to `cagnet_retired_<table>`) and the built one into
its place, indexes included, in one transaction that writes no rows but the records' new write
stamp (`node.stamps`: renaming the live table away is a write to it). The
retired table is then emptied the same way and dropped: dropping a million rows at once held the
lock for seconds too (`bench/import_lock.py`).

All or nothing holds: until the swap commits, the live table is untouched and the built one is
a table no query reads; a killed import leaves it (or the retired table) behind, and the next
import empties and drops it first. The swap checks that the live table has not changed since the
build read it (imports queue on a lock file beside the database, and only imports write these
tables, so it never should).

Index names are global in an SQLite database and SQLite cannot rename an index, so the built table's
indexes are made under build names and renamed in the swap by editing `sqlite_schema` directly
(`PRAGMA writable_schema`, the procedure SQLite documents for schema changes ALTER TABLE cannot
make): only names and the CREATE statements' text change, each back to exactly what it was, so the
schema after an import is byte for byte the schema before. PostgreSQL needs none of this: its import
locks only the table written, and readers carry on (`node.imports.staging.lock_for_import`).
"""

from __future__ import annotations

import fcntl
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, bindparam, text
from sqlalchemy.engine import Connection, Engine

from node.columns import UtcDateTime
from shared.errors import InvalidRequest
from shared.serving import AlreadyServing

__all__ = [
    "BUILD_PREFIX",
    "BUILD_ROWS",
    "RETIRED_PREFIX",
    "SERVING_LOCK",
    "SWAP_ROWS",
    "build_and_swap",
    "discard_leftovers",
    "import_lock",
    "serving",
    "unserved",
]

BUILD_PREFIX = "cagnet_build_"
"""The built table's name is this and the live table's: no other table is named so (a backup skips them)."""

RETIRED_PREFIX = "cagnet_retired_"
"""The replaced table's name, from the swap until it has been emptied and dropped."""

SWAP_ROWS = 20_000
"""Staged rows from which an import builds and swaps while a node serves the store: below it,
writing the rows in place holds the lock a fraction of a second, less than copying the whole table
would cost."""

SERVING_LOCK = "-serving.lock"
"""The lock file beside an SQLite database (`<file>-serving.lock`) that a node process holds, shared,
for as long as it answers from the store (`serving`). An import that can take it exclusively knows
no node answers from the store, and writes in place in one transaction (`unserved`)."""

BUILD_ROWS = 10_000
"""Rows written by the first build transaction; the next ones are sized so that each holds the
write lock about BUILD_TRANSACTION_S (`_Pace`): on a busy machine a process holding the lock can
wait long for the CPU, and a fixed 10,000 rows held it 8 s there (`bench/import_lock.py`)."""

BUILD_TRANSACTION_S = 0.1
"""How long a build transaction aims to hold the write lock."""

BUILD_ROWS_RANGE = (200, 50_000)
"""The fewest and most rows a build transaction writes."""

BUILD_PAUSE_S = 0.1
"""The lock is let go this long between build transactions. A writer waiting on SQLite's lock looks
again at most every 100 ms (its busy handler's longest sleep), so it always finds a gap."""

LOG_PAGES = 16_384
"""Pages in SQLite's log (64 MiB at 4 KiB) past which a pause waits, briefly, to start the log afresh."""

RESTART_WAIT_MS = 50
"""How long that wait lasts at most, for the lock and for readers of the old log."""

Phase = Callable[[str], None]


@dataclass(frozen=True)
class _Schema:
    """The live table's CREATE statement and its explicit indexes' (name, CREATE statement), as
    `sqlite_schema` holds them (the unique constraints' automatic indexes follow the table)."""

    table: str
    indexes: tuple[tuple[str, str], ...]


def _read_schema(conn: Connection, table: str) -> _Schema | None:
    rows = conn.exec_driver_sql(
        "SELECT type, name, sql FROM sqlite_schema WHERE tbl_name = ? AND sql IS NOT NULL ORDER BY name", (table,)
    ).all()
    tables = [sql for kind, _name, sql in rows if kind == "table"]
    if len(tables) != 1 or any(kind not in ("table", "index") for kind, _name, _sql in rows):
        return None  # a trigger or view on it: not a table this module knows how to swap
    return _Schema(tables[0], tuple((name, sql) for kind, name, sql in rows if kind == "index"))


def _quoted(name: str) -> str:
    return f'(?:"{re.escape(name)}"|{re.escape(name)}\\b)'


def _renamed(schema: _Schema, table: str, prefix: str) -> list[str] | None:
    """The CREATE statements of the table and its indexes (table first) as they read under names
    with `prefix`, or None if one cannot be read."""
    made = re.subn(rf"^CREATE TABLE\s+{_quoted(table)}", f'CREATE TABLE "{prefix}{table}"', schema.table)
    if made[1] != 1:
        return None
    statements = [made[0]]
    for name, sql in schema.indexes:
        pattern = rf"^(CREATE (?:UNIQUE )?INDEX)\s+{_quoted(name)}\s+ON\s+{_quoted(table)}"
        index = re.subn(pattern, rf'\1 "{prefix}{name}" ON "{prefix}{table}"', sql)
        if index[1] != 1:
            return None
        statements.append(index[0])
    return statements


@contextmanager
def import_lock(conn: Connection) -> Iterator[None]:
    """Hold the lock file beside an SQLite database (`<file>-import.lock`, an exclusive `flock`) so
    that imports build one at a time; the kernel lets go of it when the process ends, even on kill -9."""
    database = conn.engine.url.database
    if not database or database == ":memory:":
        yield  # one connection: nothing else can import into it
        return
    with open(f"{database}-import.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


def _database(engine: Engine) -> str | None:
    """The SQLite database file behind `engine`, or None (PostgreSQL, or one in memory)."""
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    return database if database and database != ":memory:" else None


@contextmanager
def serving(engine: Engine) -> Iterator[None]:
    """Hold `<file>-serving.lock` (a shared `flock`) while a node answers from the store behind
    `engine`: both transports take it (`node.rpc.server.create_server`, `create_dial_out`), so an
    import sees that it must leave the write lock free between short transactions. Refuses
    (AlreadyServing) while an import holds it exclusively, writing in one transaction: the node
    would wait on SQLite's write lock for that transaction's length and fail its first answers, so it
    is better not started until the import ends. The kernel lets go of it when the process ends."""
    database = _database(engine)
    if database is None:
        yield  # PostgreSQL imports write in place whether or not a node serves
        return
    path = f"{database}{SERVING_LOCK}"
    with open(path, "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyServing(
                f"an import is writing into {database} in one transaction (it holds {path}): start the node "
                "when the import has finished"
            ) from None
        yield


@contextmanager
def unserved(conn: Connection) -> Iterator[bool]:
    """True, holding `<file>-serving.lock` exclusively until the block ends, when no node serves the
    store on `conn` (no process holds the lock, `serving`): the import may then hold SQLite's write
    lock as long as it needs, and a node starting meanwhile is refused with a clear message rather
    than kept waiting. False, holding nothing, while a node serves it. Never waits."""
    database = _database(conn.engine)
    if database is None:
        yield conn.engine.dialect.name == "sqlite"  # a database in memory: no other process can open it
        return
    with open(f"{database}{SERVING_LOCK}", "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True  # released when the file closes


def _write(conn: Connection, *statements: str | tuple[str, dict[str, object]]) -> list[int]:
    """Run `statements` in one write transaction holding SQLite's write lock; each one's rowcount."""
    counts = []
    with conn.begin():
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        for statement in statements:
            if isinstance(statement, tuple):
                counts.append(conn.execute(text(statement[0]), statement[1]).rowcount)
            else:
                counts.append(conn.exec_driver_sql(statement).rowcount)
    return counts


def _pragma(conn: Connection, statement: str) -> None:
    conn.exec_driver_sql(statement)
    conn.commit()  # SQLAlchemy began a transaction; SQLite did not (a PRAGMA is outside any)


@contextmanager
def _unsynced(conn: Connection) -> Iterator[None]:
    """Build transactions on this connection commit without a disk sync and without checkpointing
    (`_pause` checkpoints, with the lock let go); as they were after.

    A build's many small transactions each rewrite pages of five indexes: with a checkpoint after
    every commit (SQLite's automatic one, past 1,000 pages in the log) and an fsync of the log at
    every commit, these took as long as writing the rows. `synchronous = NORMAL` in WAL mode keeps
    the database whole on a power cut and loses at most the last transactions, here rows of a table
    no query reads, which the next import discards; the swap commits with the connection's own
    setting (FULL), and its sync makes every transaction before it durable too."""
    synchronous = conn.exec_driver_sql("PRAGMA synchronous").scalar_one()
    checkpoint = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one()
    conn.commit()
    _pragma(conn, "PRAGMA synchronous = NORMAL")
    _pragma(conn, "PRAGMA wal_autocheckpoint = 0")
    try:
        yield
    finally:
        if conn.in_transaction():
            conn.rollback()
        _pragma(conn, f"PRAGMA wal_autocheckpoint = {int(checkpoint)}")
        _pragma(conn, f"PRAGMA synchronous = {int(synchronous)}")


def _pause(conn: Connection) -> None:
    """Let go of the write lock for BUILD_PAUSE_S between build transactions, so a waiting writer gets
    in, and spend it copying the log's new pages into the database (a passive checkpoint: it waits
    for no one and no writer waits for it).

    Checkpointed again at the end, for what other writers added meanwhile: SQLite starts the log
    afresh only when a transaction begins with every page in it copied, and with a writer every
    20 ms and nothing else checkpointing (their own checkpoint finds this one running) the log grew
    past 300 MB in a million-record build."""
    started = time.perf_counter()
    first = _checkpoint(conn)
    time.sleep(max(0.0, BUILD_PAUSE_S - (time.perf_counter() - started)))
    pages = max(first, _checkpoint(conn))
    # None (-1) when another connection was checkpointing both times: the node's own automatic
    # checkpoint runs after its commits once the log is past 1,000 pages, so a long log can hide
    # behind it indefinitely; a RESTART gives up at once if one is still running.
    if pages > LOG_PAGES or pages < 0:
        # Still no fresh start: this time wait for it, for RESTART_WAIT_MS at most. The lock is held
        # only to copy what other writers added since the checkpoint just made, and readers that
        # began before it (a long query) make this give up rather than wait.
        timeout = conn.exec_driver_sql("PRAGMA busy_timeout").scalar_one()
        conn.commit()
        _pragma(conn, f"PRAGMA busy_timeout = {RESTART_WAIT_MS}")
        try:
            _checkpoint(conn, "RESTART")
        finally:
            _pragma(conn, f"PRAGMA busy_timeout = {int(timeout)}")


def _checkpoint(conn: Connection, mode: str = "PASSIVE") -> int:
    """Checkpoint the log; how many pages it holds, or -1 if another connection was checkpointing it."""
    _busy, pages, _copied = conn.exec_driver_sql(f"PRAGMA wal_checkpoint({mode})").one()  # read to its end
    conn.commit()
    return int(pages)


def _fingerprint(conn: Connection, table: str) -> tuple[object, ...]:
    return tuple(conn.exec_driver_sql(f"SELECT count(*), max(id), max(updated_at) FROM {table}").one())


def build_and_swap(
    conn: Connection,
    table: Table,
    stage: str,
    columns: tuple[str, ...],
    key: str,
    now: datetime,
    on_phase: Phase | None = None,
) -> tuple[int, int] | None:
    """Write the rows staged in `stage` (`node.imports.staging`) to `table` by building its next
    version and swapping it in; (inserted, updated) as the in-place write would count them. The
    caller holds `import_lock`.

    None, with nothing written, for a table this cannot swap (a trigger or view on it, a CREATE
    statement it cannot read): the caller writes in place. `on_phase` hears "building" once the
    first build transaction has committed and "built" when every row is in the built table, then
    "locked" and "written" as the in-place write tells them (inside the swap's transaction), and
    "swapped" once it has committed (the retired table not yet emptied)."""
    name, build = table.name, BUILD_PREFIX + table.name
    with conn.begin():
        schema = _read_schema(conn, name)
    statements = _renamed(schema, name, BUILD_PREFIX) if schema is not None else None
    if schema is None or statements is None or _renamed(schema, name, RETIRED_PREFIX) is None:
        return None
    if not _schema_editable(conn):
        return None
    # Left by an import killed part-way through its build, or after its swap.
    _discard(conn, build)
    _discard(conn, RETIRED_PREFIX + name)
    swapped = False
    try:
        _write(conn, *statements)
        with conn.begin():
            before = _fingerprint(conn, name)
            stored = [row[1] for row in conn.exec_driver_sql(f"PRAGMA table_info({name})")]
            first, last = conn.exec_driver_sql(f"SELECT min(row), max(row) FROM {stage}").one()
        with _unsynced(conn):
            inserted, updated = _build(conn, table, stage, columns, key, now, stored, (first or 0, last or 0), on_phase)
        if on_phase is not None:
            on_phase("built")
        _swap(conn, schema, name, before, on_phase)
        swapped = True
        if on_phase is not None:
            on_phase("swapped")
    finally:
        _discard(conn, build if not swapped else RETIRED_PREFIX + name)
    return inserted, updated


def discard_leftovers(conn: Connection, table: str) -> None:
    """Drop what an import killed part-way through a build or after its swap left beside `table`,
    as the next build does first; for an import that writes in place instead. The caller holds
    `import_lock`."""
    if conn.dialect.name == "sqlite":
        _discard(conn, BUILD_PREFIX + table)
        _discard(conn, RETIRED_PREFIX + table)


def _schema_editable(conn: Connection) -> bool:
    """Whether this SQLite lets `sqlite_schema` be edited (not with SQLITE_DBCONFIG_DEFENSIVE on,
    which some builds set): asked by an edit that matches no row, rolled back."""
    raw: Any = conn.connection.dbapi_connection
    cursor = raw.cursor()
    try:
        cursor.execute("PRAGMA writable_schema = ON")
        try:
            cursor.execute("BEGIN")
            cursor.execute("UPDATE sqlite_schema SET name = name WHERE 0")
            return True
        except sqlite3.DatabaseError:
            return False
        finally:
            if raw.in_transaction:
                raw.rollback()
            cursor.execute("PRAGMA writable_schema = OFF")
    finally:
        cursor.close()


def _discard(conn: Connection, table: str) -> None:
    """Drop `table` if it exists, emptied a little a transaction first (`_Pace`): dropping a million
    rows at once held the write lock for seconds (SQLite visits every page it frees)."""
    with conn.begin():
        present = conn.exec_driver_sql("SELECT count(*) FROM sqlite_schema WHERE name = ?", (table,)).scalar_one()
    if not present:
        return
    pace = _Pace()
    chunk = f'DELETE FROM "{table}" WHERE id IN (SELECT id FROM "{table}" ORDER BY id LIMIT :rows)'
    with _unsynced(conn):
        while pace.timed(lambda: _write(conn, (chunk, {"rows": pace.rows}))[0]):
            _pause(conn)
        _write(conn, f'DROP TABLE "{table}"')


class _Pace:
    """Rows per build transaction, halved when one held the lock more than twice
    BUILD_TRANSACTION_S and doubled when one held it less than half, within BUILD_ROWS_RANGE."""

    def __init__(self) -> None:
        self.rows = BUILD_ROWS

    def timed(self, write: Callable[[], int]) -> int:
        started = time.perf_counter()
        done = write()
        took = time.perf_counter() - started
        low, high = BUILD_ROWS_RANGE
        if took > 2 * BUILD_TRANSACTION_S:
            self.rows = max(low, self.rows // 2)
        elif took < BUILD_TRANSACTION_S / 2:
            self.rows = min(high, self.rows * 2)
        return done


def _build(
    conn: Connection,
    table: Table,
    stage: str,
    columns: tuple[str, ...],
    key: str,
    now: datetime,
    stored: list[str],
    rows: tuple[int, int],
    on_phase: Phase | None,
) -> tuple[int, int]:
    """Fill the built table: every stored row as it is, then each staged row over the stored row
    with its key (when a value differs) or as a new row, in file order. (inserted, updated)."""
    t, b = table.name, BUILD_PREFIX + table.name
    names = ", ".join(stored)
    copy = f"INSERT INTO {b} ({names}) SELECT {names} FROM {t} WHERE id > :after ORDER BY id LIMIT :rows"
    compared = [c for c in columns if c != key]
    # Each chunk reads its staged rows by row number (the staged table's rowid) and finds each in
    # the built table by its unique key. The staged key has no index on purpose: with one, the
    # planner could read the whole built table once per chunk instead.
    update = text(
        f"UPDATE {b} SET {', '.join(f'{c} = s.{c}' for c in compared)}, updated_at = :now "
        f"FROM {stage} AS s WHERE {b}.{key} = s.{key} AND s.row BETWEEN :low AND :high AND "
        f"({' OR '.join(f'{b}.{c} IS DISTINCT FROM s.{c}' for c in compared)})"
    ).bindparams(bindparam("now", type_=UtcDateTime()))
    insert = text(
        f"INSERT INTO {b} ({', '.join(columns)}, created_at, updated_at) "
        f"SELECT {', '.join(f's.{c}' for c in columns)}, :now, :now FROM {stage} AS s "
        f"WHERE s.row BETWEEN :low AND :high AND NOT EXISTS (SELECT 1 FROM {b} WHERE {b}.{key} = s.{key}) "
        "ORDER BY s.row"
    ).bindparams(bindparam("now", type_=UtcDateTime()))
    told = False
    pace = _Pace()

    def committed() -> None:
        nonlocal told
        if not told and on_phase is not None:
            told = True
            on_phase("building")
        _pause(conn)  # let a waiting writer (an answer's audit entry) in

    after = 0
    while True:
        copied = pace.timed(lambda: _write(conn, (copy, {"after": after, "rows": pace.rows}))[0])  # noqa: B023
        if copied == 0:
            break
        with conn.begin():
            after = conn.exec_driver_sql(f"SELECT max(id) FROM {b}").scalar_one()
        committed()
    counts = [0, 0]  # inserted, updated
    low, last = rows

    def write(bounds: dict[str, object]) -> int:
        with conn.begin():
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            counts[1] += conn.execute(update, bounds).rowcount
            counts[0] += conn.execute(insert, bounds).rowcount
        return 0

    while low <= last:
        high = low + pace.rows - 1
        pace.timed(lambda: write({"low": low, "high": high, "now": now}))  # noqa: B023
        committed()
        low = high + 1
    return counts[0], counts[1]


def _swap(conn: Connection, schema: _Schema, name: str, before: tuple[object, ...], on_phase: Phase | None) -> None:
    """Put the built table in the live one's place in one transaction that writes no rows but the
    records' write stamp (`node.stamps`): the live table is renamed away (`RETIRED_PREFIX`, emptied
    and dropped after, a little at a time), the built one takes its name, and each index its name
    and CREATE text back."""
    build, retired = BUILD_PREFIX + name, RETIRED_PREFIX + name
    retired_sql = _renamed(schema, name, RETIRED_PREFIX)
    assert retired_sql is not None  # checked before the build
    # Both only outside a transaction. Without foreign keys, renaming leaves the outcomes' rows
    # unchecked (their ids are kept); the legacy rename leaves other tables' REFERENCES alone, so
    # they name the table by its name, which the built one takes.
    _pragma(conn, "PRAGMA foreign_keys = OFF")
    _pragma(conn, "PRAGMA legacy_alter_table = ON")
    try:
        with conn.begin():
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            if on_phase is not None:
                on_phase("locked")
            if _fingerprint(conn, name) != before or _read_schema(conn, name) != schema:
                raise InvalidRequest(
                    f"the store's {name} table changed while this import ran; nothing was written",
                    detail="import the file again",
                )
            conn.exec_driver_sql(f'ALTER TABLE {name} RENAME TO "{retired}"')
            conn.exec_driver_sql(f'ALTER TABLE "{build}" RENAME TO {name}')
            version = conn.exec_driver_sql("PRAGMA schema_version").scalar_one()
            conn.exec_driver_sql("PRAGMA writable_schema = ON")
            try:
                edit = "UPDATE sqlite_schema SET name = ?, sql = ? WHERE type = ? AND name = ?"
                conn.exec_driver_sql(edit, (retired, retired_sql[0], "table", retired))
                conn.exec_driver_sql(edit, (name, schema.table, "table", name))
                for (index, sql), retired_index in zip(schema.indexes, retired_sql[1:], strict=True):
                    conn.exec_driver_sql(edit, (RETIRED_PREFIX + index, retired_index, "index", index))
                    conn.exec_driver_sql(edit, (index, sql, "index", BUILD_PREFIX + index))
                # Every connection reads the schema again (this one too): the documented last step.
                conn.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
            finally:
                conn.exec_driver_sql("PRAGMA writable_schema = OFF")
            if on_phase is not None:
                on_phase("written")
    finally:
        _pragma(conn, "PRAGMA legacy_alter_table = OFF")
        _pragma(conn, "PRAGMA foreign_keys = ON")
