"""Staging for large imports: checked rows wait in a temporary table on the import's own
connection and reach the store in one short transaction at the end.

Reading, checking and pseudonymising a million rows takes a minute; holding the store's write lock
for that minute would stop the node answering (every answer appends to its audit log, ledger and
nonces, and SQLite has one writer). So nothing of the store is locked while a file is read: rows go
to a TEMPORARY table (SQLite keeps it in a file of its own, PostgreSQL in the session), which no
other connection sees and which vanishes with the connection, even under kill -9. Once every row
is good, `Staging.apply` writes them in one transaction of two set-based statements (update the
rows that changed, insert the new ones), so the store is wholly as before or wholly as after.

On SQLite that transaction holds the database's one write lock, and for a million rows it held it
for 18 s; so from SWAP_ROWS staged rows, while a node serves the store, the table's next version is
built beside it a little at a time and swapped in by a transaction that writes no rows
(`node.imports.swap`), at about half the speed. With no node serving it (the first load before
`cagnet node serve`, a node stopped for maintenance; `node.imports.swap.unserved`), nobody waits on
the lock, and the rows are written in place in the one transaction. PostgreSQL locks only the table
written, and readers and the node's other writes carry on, so it writes in place.

Duplicate keys are found in the staged table too, by one GROUP BY, so memory stays flat however
long the file is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, text
from sqlalchemy.engine import Connection

from node.imports.swap import SWAP_ROWS, build_and_swap, discard_leftovers, import_lock, unserved
from node.store import UtcDateTime, utcnow

__all__ = ["IMPORT_CACHE_KIB", "Phase", "Staging", "lock_for_import", "staging"]

Phase = Callable[[str], None]
"""Told each step of an import as it is reached: "staged" (every row checked and staged; the store
untouched), "locked" (inside the one write transaction, the store's write lock held), "written"
(every row written, just before the commit). A large import on SQLite also tells "building" (the
first rows of the table's next version written beside it) and "built" (all of them) between
"staged" and "locked", and "swapped" after the commit, before the replaced table is emptied and
dropped (`node.imports.swap`). The CLI says what it is doing; the tests kill an
import at each."""

IMPORT_CACHE_KIB = 65_536
"""SQLite page cache for an import's connection while it runs (the default is 2 MiB): with it the
indexes of a million records stay in memory while they are written."""

FLUSH_ROWS = 10_000
"""Staged rows sent to the database per statement."""

IN_PLACE = "written in one transaction"
ALONE = "no node is serving this store: written in one transaction"
SWAPPED = "the node is serving: built beside and swapped in so it keeps answering"
"""How `Staging.apply` wrote the rows (`Staging.written`), as the import's summary says it."""


def lock_for_import(conn: Connection, table: Table) -> None:
    """Take the write lock before writing, so that two imports queue rather than collide: on SQLite
    the database's one write lock, on PostgreSQL a lock on `table` only (readers and the node's
    other tables carry on)."""
    if conn.dialect.name == "sqlite":
        dbapi_connection = conn.connection.dbapi_connection
        if dbapi_connection is not None and not dbapi_connection.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f'LOCK TABLE "{table.name}" IN SHARE ROW EXCLUSIVE MODE')


class Staging:
    """The staged rows of one import into `table`: `columns` in the order `add` takes them (the
    values already in the form the driver sends), `key` the natural key a row is matched by.

    Each staged row also keeps its spreadsheet row number and the reference the file gave it,
    so that duplicates are reported where they are."""

    def __init__(self, conn: Connection, table: Table, columns: tuple[str, ...], key: str) -> None:
        self.conn, self.table, self.columns, self.key = conn, table, columns, key
        self.name = f"cagnet_stage_{table.name}"
        self.staged = Table(
            self.name,
            MetaData(),
            # The row number as the key: staged rows are read back in file order without a sort
            # (on SQLite it is the rowid), which would hold every staged row in memory.
            Column("row", Integer, primary_key=True, autoincrement=False),
            Column("ref", String),
            *(Column(c, table.c[c].type) for c in columns),
            prefixes=["TEMPORARY"],
        )
        self.pending: list[tuple[Any, ...]] = []
        self.count = 0  # rows staged
        self.written = ""  # how `apply` wrote them: IN_PLACE, ALONE or SWAPPED
        self.blank = (None,) * len(columns)
        names = ", ".join(("row", "ref", *columns))
        marker = "?" if conn.dialect.paramstyle == "qmark" else "%s"
        self.insert_sql = f"INSERT INTO {self.name} ({names}) VALUES ({', '.join([marker] * (len(columns) + 2))})"
        # COPY is PostgreSQL's bulk load, several times faster than INSERT however batched.
        self.copy_sql = f"COPY {self.name} ({names}) FROM STDIN" if conn.dialect.driver == "psycopg" else None

    def add(self, row: int, ref: str | None, values: tuple[Any, ...] | None) -> None:
        """Stage one row; `values` None for a row with a problem (its reference is still staged,
        so that a later duplicate of it is reported)."""
        self.pending.append((row, ref, *(values if values is not None else self.blank)))
        self.count += 1
        if len(self.pending) >= FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        dbapi_connection: Any = self.conn.connection.dbapi_connection
        if self.copy_sql is not None:
            with dbapi_connection.cursor() as cursor, cursor.copy(self.copy_sql) as copy:
                for values in self.pending:
                    copy.write_row(values)
        else:
            # The driver's own executemany: SQLAlchemy's would add a tenth for nothing here.
            dbapi_connection.cursor().executemany(self.insert_sql, self.pending)
        self.pending = []

    def duplicates(self, limit: int) -> list[tuple[int, str, int]]:
        """(row, reference, the row it is first on) for each row whose reference an earlier staged
        row has, in row order, at most `limit`."""
        self.flush()
        query = text(
            f"SELECT s.row, s.ref, f.first FROM {self.name} AS s JOIN "
            f"(SELECT ref, MIN(row) AS first FROM {self.name} WHERE ref IS NOT NULL "
            "GROUP BY ref HAVING COUNT(*) > 1) AS f ON s.ref = f.ref "
            "WHERE s.row > f.first ORDER BY s.row LIMIT :limit"
        )
        return [(row, ref, first) for row, ref, first in self.conn.execute(query, {"limit": limit})]

    def apply(self, on_phase: Phase | None = None, *, dry_run: bool = False) -> tuple[int, int]:
        """Write the staged rows to the store in one transaction: update the stored rows whose
        values differ, insert the rest; rows that match what is stored are left alone (their
        updated_at too). Returns (inserted, updated). With `dry_run` the transaction is rolled
        back: the counts are those an import would make, and nothing is kept."""
        self.flush()
        t, s, key = self.table.name, self.name, self.key
        compared = [c for c in self.columns if c != key]
        stamp = {"now": utcnow()}
        update = text(
            f"UPDATE {t} SET {', '.join(f'{c} = s.{c}' for c in compared)}, updated_at = :now "
            f"FROM {s} AS s WHERE {t}.{key} = s.{key} AND "
            f"({' OR '.join(f'{t}.{c} IS DISTINCT FROM s.{c}' for c in compared)})"
        ).bindparams(bindparam("now", type_=UtcDateTime()))
        names = ", ".join(self.columns)
        insert = text(
            f"INSERT INTO {t} ({names}, created_at, updated_at) "
            f"SELECT {', '.join(f's.{c}' for c in self.columns)}, :now, :now FROM {s} AS s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {t}.{key} = s.{key}) ORDER BY s.row"
        ).bindparams(bindparam("now", type_=UtcDateTime()))
        if self.conn.in_transaction():
            self.conn.commit()  # the staging transaction: a write transaction must start afresh
        if self.conn.dialect.name != "sqlite" or dry_run:
            if self.conn.dialect.name == "sqlite" and self.count >= SWAP_ROWS:
                return self.counts()  # rolling back a million written rows would hold the lock as long
            return self._write(update, insert, stamp, on_phase, dry_run=dry_run)
        # Imports into one SQLite database queue here, whichever way they write: a build must not
        # miss rows written in place meanwhile.
        with import_lock(self.conn):
            if self.count < SWAP_ROWS:
                return self._write(update, insert, stamp, on_phase, dry_run=False)
            # Decided here, with the checked rows ready: a node started while the file was read is
            # seen, and from here to the commit a node starting is refused (`swap.serving`).
            with unserved(self.conn) as alone:
                if alone:
                    discard_leftovers(self.conn, self.table.name)
                    counts = self._write(update, insert, stamp, on_phase, dry_run=False)
                    self.written = ALONE
                    return counts
                done = build_and_swap(self.conn, self.table, s, self.columns, key, stamp["now"], on_phase)
                if done is not None:
                    self.written = SWAPPED
                    return done
                return self._write(update, insert, stamp, on_phase, dry_run=False)

    def _write(
        self, update: Any, insert: Any, stamp: dict[str, Any], on_phase: Phase | None, *, dry_run: bool
    ) -> tuple[int, int]:
        """The staged rows written in place, in one transaction holding the lock for all of it."""
        with self.conn.begin() as transaction:
            lock_for_import(self.conn, self.table)
            if on_phase is not None:
                on_phase("locked")
            updated = self.conn.execute(update, stamp).rowcount
            inserted = self.conn.execute(insert, stamp).rowcount
            if dry_run:
                transaction.rollback()
            elif on_phase is not None:
                on_phase("written")
        self.written = "" if dry_run else IN_PLACE
        return inserted, updated

    def counts(self) -> tuple[int, int]:
        """(inserted, updated) as `apply` would count them, read without writing or locking anything."""
        t, s, key = self.table.name, self.name, self.key
        compared = [c for c in self.columns if c != key]
        distinct = " OR ".join(f"t.{c} IS DISTINCT FROM s.{c}" for c in compared)
        with self.conn.begin():
            updated = self.conn.exec_driver_sql(
                f"SELECT count(*) FROM {s} AS s JOIN {t} AS t ON t.{key} = s.{key} WHERE {distinct}"
            ).scalar_one()
            inserted = self.conn.exec_driver_sql(
                f"SELECT count(*) FROM {s} AS s WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {t}.{key} = s.{key})"
            ).scalar_one()
        return int(inserted), int(updated)


@contextmanager
def staging(conn: Connection, table: Table, columns: tuple[str, ...], key: str) -> Iterator[Staging]:
    """A `Staging` for one import on `conn`, with a larger SQLite page cache while it lasts; the
    temporary table is dropped at the end, as it would be with the connection."""
    stage = Staging(conn, table, columns, key)
    sqlite = conn.dialect.name == "sqlite"
    with conn.begin():
        before = conn.exec_driver_sql("PRAGMA cache_size").scalar() if sqlite else None
        if sqlite:
            conn.exec_driver_sql(f"PRAGMA cache_size = {-IMPORT_CACHE_KIB}")
        # A pooled connection may still hold the table of an import that failed on it.
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {stage.name}")
        stage.staged.create(conn)
    try:
        yield stage
    finally:
        if conn.in_transaction():
            conn.rollback()
        with conn.begin():
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {stage.name}")
            if sqlite:
                conn.exec_driver_sql(f"PRAGMA cache_size = {int(before or -2000)}")
