"""The records' write stamps: what an answer reads to know whether the records changed.

Every answer reads the store's edition (`node.release.Releaser.pinned`): until schema revision 0007
that was a fingerprint worked out from the tables themselves, each table's count, largest id and
newest `updated_at`, one query over seven tables whose counts read every row (a fifth of a node's
time per joint query, by py-spy). Now a write stamps itself: `write_stamp` holds one row per
*part*, and every statement that changes a table of that part writes a fresh random stamp into its
part's row in the same transaction (`stamp_writes`, a listener on every engine `open_store` makes),
so the edition is one read of two short rows, and it changes exactly when a write commits.

    supply   provider, service, contract, kpi1_return, occupancy_return (`node.store.data_version`)
    records  client_record, outcome (`node.answers.movement.records_version`)

The listener sees every statement SQLAlchemy sends for the node, whoever wrote it: an import in
place, a large SQLite import's swap (renaming the built table in counts as a write), a correction,
a row added through the ORM, a restore's copy. A statement that changed no row (an import of a file
that matches the store) leaves the stamp as it was, as the old fingerprint stayed too. A stamp is
random rather than a counter, so no two states of the records ever share one, whatever a restore
puts back (`grid_edition` keys kept editions by it). Writes outside cagnet (an operator's own SQL)
are not seen: the records are the node's to write, through its import commands.

Triggers would see those too, but SQLite has only per-row triggers (a million-row import would
fire a million), and a large SQLite import renames its built table into place
(`node.imports.swap`), which would leave a trigger behind on the retired table.
"""

from __future__ import annotations

import functools
import re
import secrets
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Field, SQLModel

__all__ = ["PARTS", "RECORDS", "SUPPLY", "WriteStamp", "edition", "stamp_writes", "stamps"]

SUPPLY = "supply"
RECORDS = "records"

PARTS: dict[str, frozenset[str]] = {
    SUPPLY: frozenset({"provider", "service", "contract", "kpi1_return", "occupancy_return"}),
    RECORDS: frozenset({"client_record", "outcome"}),
}
"""Each part's tables: a write to any of them stamps the part."""

_PART_OF = {table: part for part, tables in PARTS.items() for table in tables}

# The statements that change a table, and the table they change (the first name after the verb:
# `INSERT INTO x ... SELECT ... FROM y` writes x). Only the table named is stamped, so a large
# import's build (`cagnet_build_client_record`) stamps nothing until its swap renames the live table.
_WRITE = re.compile(
    r"\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|REPLACE\s+INTO|UPDATE(?:\s+OR\s+\w+)?(?:\s+ONLY)?|DELETE\s+FROM(?:\s+ONLY)?"
    r"|ALTER\s+TABLE(?:\s+IF\s+EXISTS)?(?:\s+ONLY)?|DROP\s+TABLE(?:\s+IF\s+EXISTS)?|COPY)\s+\"?(\w+)\"?",
    re.IGNORECASE,
)
# TRUNCATE may name several tables: each is looked for.
_TRUNCATE = re.compile(r"\s*TRUNCATE\b", re.IGNORECASE)
_NAMES = re.compile(r"\b(" + "|".join(sorted(_PART_OF)) + r")\b", re.IGNORECASE)


class WriteStamp(SQLModel, table=True):
    """One row per part: the stamp its last write left (schema revision 0007)."""

    __tablename__ = "write_stamp"

    part: str = Field(primary_key=True, max_length=16)
    stamp: str = Field(max_length=32)


_STAMP = (
    "INSERT INTO write_stamp (part, stamp) VALUES ('{part}', '{stamp}') "
    "ON CONFLICT (part) DO UPDATE SET stamp = excluded.stamp"
)


@functools.lru_cache(maxsize=1024)
def _parts_written(statement: str) -> frozenset[str]:
    # Cached: SQLAlchemy sends the same few statement strings again and again (its compiled cache).
    match = _WRITE.match(statement)
    if match is not None:
        part = _PART_OF.get(match.group(1).lower())
        return frozenset() if part is None else frozenset({part})
    if _TRUNCATE.match(statement):
        return frozenset(_PART_OF[name.lower()] for name in _NAMES.findall(statement))
    return frozenset()


def _after_cursor_execute(
    conn: Any, cursor: Any, statement: str, _parameters: Any, _context: Any, executemany: bool
) -> None:
    parts = _parts_written(statement)
    if not parts:
        return
    # Nothing changed: no new edition. A statement with RETURNING may not count its rows until they
    # are read, so one that returns rows is taken as a write; so is executemany, whose count some
    # drivers leave at the last statement's.
    if not executemany and cursor.description is None and cursor.rowcount == 0:
        return
    # Another cursor on the same DBAPI connection: the same transaction, and the statement's own
    # cursor (its row count, its RETURNING rows) is left for SQLAlchemy to read.
    stamp = conn.connection.dbapi_connection.cursor()
    try:
        for part in sorted(parts):
            # Both values are ours (a part's name, hex digits): nothing from outside is spliced in.
            stamp.execute(_STAMP.format(part=part, stamp=secrets.token_hex(16)))
    finally:
        stamp.close()


def stamp_writes(engine: Engine) -> None:
    """Have every write through `engine` to a stamped table stamp its part in the same transaction.
    For engines on a store at this cagnet's revisions (`node.store.open_store`): an older one has no
    `write_stamp` yet."""
    if not event.contains(engine, "after_cursor_execute", _after_cursor_execute):
        event.listen(engine, "after_cursor_execute", _after_cursor_execute)


def stamps(engine: Engine) -> dict[str, str]:
    """Each part's stamp; a part never written since the store was made has none. Read on the
    driver's own connection from the pool: read before every answer, SQLAlchemy's statement
    machinery cost more than the read."""
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            cursor.execute("SELECT part, stamp FROM write_stamp")
            found = {str(part): str(stamp) for part, stamp in cursor.fetchall()}
        finally:
            cursor.close()
    finally:
        raw.close()  # back to the pool, which ends the read's transaction
    return found


def edition(engine: Engine) -> tuple[object, ...]:
    """The store's edition in one read: the supply's stamp, then the records'."""
    current = stamps(engine)
    return (current.get(SUPPLY), current.get(RECORDS))
