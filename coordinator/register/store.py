"""The accreditation register's append-only log, in SQLite or PostgreSQL (chosen by URL).

    register_leaf            leaf_index PK, entry (the exact signed bytes), entry_digest UNIQUE,
                             authority, provider_key, decision, appended_at
    register_provider_index  (key, leaf_index) PK: every identifier an entry's provider has
    register_node            node_id PK = level << 48 | index, hash: every complete subtree
                             (level 0 holds the leaf hashes: SHA-256(0x00 || entry))
    register_tree            one row: size, root, frontier (the right edge, for the next append)
    register_checkpoint      tree_size PK, root, time_ms, payload, keyid, signature (the log's)
    register_cosignature     (tree_size, witness) PK, keyid, signature

An append takes the database's write lock (SQLite BEGIN IMMEDIATE; PostgreSQL an EXCLUSIVE lock
on register_tree), reads the tree's right edge, and writes the leaves, their index rows, every
subtree they complete and the new tree state in one transaction: a crash at any point leaves the
log as it was before the append, or after it. Proofs read O(log n) stored subtree hashes.
These tables sit on their own metadata: a node's store never holds them.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, LargeBinary, create_engine, event, insert, select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel, col

from shared import merkle
from shared.errors import InconsistentLog, InvalidRequest, NotFound, ReplayedRequest
from shared.migrate import Schema, Store, ensure_current

__all__ = [
    "PreparedEntry",
    "StoredCheckpoint",
    "add_checkpoint",
    "add_cosignature",
    "append",
    "checkpoint_at",
    "consistency_proof",
    "cosignatures",
    "entries",
    "inclusion_proof",
    "latest_checkpoint",
    "leaf_indexes_for",
    "metadata",
    "open_register",
    "root_at",
    "tree_head",
    "verify_log",
]

SQLITE_BUSY_TIMEOUT_S = 30.0
_LEVEL_SHIFT = 48

_registry = registry()
metadata = _registry.metadata


class _Table(SQLModel, registry=_registry):
    pass


class RegisterLeaf(_Table, table=True):
    __tablename__ = "register_leaf"

    leaf_index: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    entry: bytes = Field(sa_type=LargeBinary)
    # SHA-256 of the entry's payload: the same decision is logged once, however it was re-signed.
    entry_digest: str = Field(unique=True, max_length=64)
    authority: str = Field(index=True, max_length=32)
    provider_key: str = Field(index=True, max_length=250)
    decision: str = Field(max_length=16)
    appended_at: str = Field(max_length=32)


class RegisterProviderIndex(_Table, table=True):
    __tablename__ = "register_provider_index"

    key: str = Field(primary_key=True, max_length=250)
    leaf_index: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})


class RegisterNode(_Table, table=True):
    __tablename__ = "register_node"

    node_id: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    hash: bytes = Field(sa_type=LargeBinary)


class RegisterTree(_Table, table=True):
    __tablename__ = "register_tree"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    size: int = Field(sa_type=BigInteger)
    root: bytes = Field(sa_type=LargeBinary)
    frontier: bytes = Field(sa_type=LargeBinary)


class RegisterCheckpoint(_Table, table=True):
    __tablename__ = "register_checkpoint"

    tree_size: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    root: bytes = Field(sa_type=LargeBinary)
    time_ms: int = Field(sa_type=BigInteger)
    payload: bytes = Field(sa_type=LargeBinary)
    keyid: str = Field(max_length=64)
    signature: bytes = Field(sa_type=LargeBinary)


class RegisterCosignature(_Table, table=True):
    __tablename__ = "register_cosignature"

    tree_size: int = Field(primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": False})
    witness: str = Field(primary_key=True, max_length=32)
    keyid: str = Field(max_length=64)
    signature: bytes = Field(sa_type=LargeBinary)
    at: str = Field(max_length=32)


@dataclass(frozen=True)
class PreparedEntry:
    """An entry the register has already checked, with what the store indexes it by."""

    data: bytes
    payload_digest: str
    authority: str
    provider_keys: tuple[str, ...]  # the first is the provider's key
    decision: str


@dataclass(frozen=True)
class StoredCheckpoint:
    tree_size: int
    root: bytes
    time_ms: int
    payload: bytes
    keyid: str
    signature: bytes


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        # A log that has answered "appended at index n" must still hold n after a power cut.
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()


# The register's migrations (coordinator/migrations/register), declared beside its tables.
SCHEMA = Schema(
    name="register",
    package="coordinator.migrations.register",
    metadata=metadata,
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


def open_register(url: str) -> Engine:
    """An engine for the register at `url`: an empty database gets the newest schema revision, an
    older or newer one is refused (`shared.migrate`; `cagnet coordinator upgrade NETDIR` upgrades)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_on_connect)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    try:
        ensure_current(engine, STORE)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _node_id(level: int, index: int) -> int:
    return (level << _LEVEL_SHIFT) | index


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# Threads of one process take turns before they reach the database lock, which holds across processes.
_locks: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def _append_lock(engine: Engine) -> threading.Lock:
    with _locks_guard:
        lock = _locks.get(engine)
        if lock is None:
            lock = _locks[engine] = threading.Lock()
        return lock


def _lock_for_append(conn: Connection) -> None:
    """Take the database's write lock before reading the tree's head, so appends are serialised."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE register_tree IN EXCLUSIVE MODE"))
    elif conn.dialect.name == "sqlite":
        dbapi_connection = conn.connection.dbapi_connection
        if dbapi_connection is not None and not dbapi_connection.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("UPDATE register_tree SET size = size WHERE 0")


def _read_tree(conn: Connection) -> tuple[int, bytes, merkle.Frontier] | None:
    row = conn.execute(
        select(col(RegisterTree.size), col(RegisterTree.root), col(RegisterTree.frontier)).where(
            col(RegisterTree.id) == 1
        )
    ).first()
    if row is None:
        return None
    size, root, blob = int(row[0]), bytes(row[1]), bytes(row[2])
    hashes = [blob[i : i + merkle.HASH_SIZE] for i in range(0, len(blob), merkle.HASH_SIZE)]
    return size, root, merkle.Frontier(size, hashes)


def append(
    engine: Engine, prepared: Sequence[PreparedEntry], *, on_written: Callable[[], None] | None = None
) -> list[int]:
    """Append entries atomically, in order; returns their leaf indexes.

    All or nothing: an entry already logged (same payload digest) refuses the whole batch with
    ReplayedRequest. `on_written` runs after every row is written and before the commit (the
    crash tests kill the process there).
    """
    if not prepared:
        return []
    digests = [p.payload_digest for p in prepared]
    if len(set(digests)) != len(digests):
        raise ReplayedRequest("the entry is already in the register")
    now = _now_text()
    with _append_lock(engine), engine.connect() as conn, conn.begin():
        _lock_for_append(conn)
        state = _read_tree(conn)
        frontier = state[2] if state is not None else merkle.Frontier()
        seen = conn.execute(
            select(col(RegisterLeaf.entry_digest)).where(col(RegisterLeaf.entry_digest).in_(digests))
        ).first()
        if seen is not None:
            raise ReplayedRequest("the entry is already in the register")
        leaves: list[dict[str, Any]] = []
        index_rows: list[dict[str, Any]] = []
        nodes: list[dict[str, Any]] = []
        indexes: list[int] = []
        for p in prepared:
            index = frontier.size
            current = merkle.leaf_hash(p.data)
            nodes.append({"node_id": _node_id(0, index), "hash": current})
            level = 0
            while (index >> level) & 1:
                current = merkle.node_hash(frontier.hashes.pop(), current)
                level += 1
                nodes.append({"node_id": _node_id(level, index >> level), "hash": current})
            frontier.hashes.append(current)
            frontier.size += 1
            leaves.append(
                {
                    "leaf_index": index,
                    "entry": p.data,
                    "entry_digest": p.payload_digest,
                    "authority": p.authority,
                    "provider_key": p.provider_keys[0],
                    "decision": p.decision,
                    "appended_at": now,
                }
            )
            index_rows.extend({"key": k, "leaf_index": index} for k in dict.fromkeys(p.provider_keys))
            indexes.append(index)
        conn.execute(insert(RegisterLeaf), leaves)
        conn.execute(insert(RegisterProviderIndex), index_rows)
        conn.execute(insert(RegisterNode), nodes)
        tree = {"size": frontier.size, "root": frontier.root(), "frontier": b"".join(frontier.hashes)}
        if state is None:
            conn.execute(insert(RegisterTree).values(id=1, **tree))
        else:
            conn.execute(update(RegisterTree).where(col(RegisterTree.id) == 1).values(**tree))
        if on_written is not None:
            on_written()
    return indexes


def tree_head(engine: Engine) -> tuple[int, bytes]:
    """(size, root) of the tree as stored."""
    with engine.connect() as conn:
        state = _read_tree(conn)
    return (0, merkle.EMPTY_ROOT) if state is None else (state[0], state[1])


def _blocks(conn: Connection, ranges: Iterable[tuple[int, int]]) -> Callable[[int, int], bytes]:
    wanted = {_node_id(level, index) for lo, hi in ranges for level, index in merkle.aligned_blocks(lo, hi)}
    found: dict[int, bytes] = {}
    ids = sorted(wanted)
    for start in range(0, len(ids), 500):
        rows = conn.execute(
            select(col(RegisterNode.node_id), col(RegisterNode.hash)).where(
                col(RegisterNode.node_id).in_(ids[start : start + 500])
            )
        )
        found.update((int(r[0]), bytes(r[1])) for r in rows)

    def block(level: int, index: int) -> bytes:
        try:
            return found[_node_id(level, index)]
        except KeyError:
            raise InconsistentLog("the register's store is missing a subtree") from None

    return block


def _check_size(conn: Connection, size: int) -> None:
    state = _read_tree(conn)
    current = 0 if state is None else state[0]
    if not 0 <= size <= current:
        raise NotFound(f"the register holds {current} entries")


def inclusion_proof(engine: Engine, index: int, size: int) -> list[bytes]:
    if not 0 <= index < size:
        raise InvalidRequest("the leaf index must be inside the tree size")
    ranges = merkle.inclusion_ranges(index, size)
    with engine.connect() as conn:
        _check_size(conn, size)
        block = _blocks(conn, ranges)
    return [merkle.range_hash(lo, hi, block) for lo, hi in ranges]


def consistency_proof(engine: Engine, first: int, second: int) -> list[bytes]:
    if not 0 <= first <= second:
        raise InvalidRequest("a consistency proof runs from a smaller tree to a larger one")
    ranges = merkle.consistency_ranges(first, second)
    with engine.connect() as conn:
        _check_size(conn, second)
        block = _blocks(conn, ranges)
    return [merkle.range_hash(lo, hi, block) for lo, hi in ranges]


def root_at(engine: Engine, size: int) -> bytes:
    """The root of the first `size` leaves, from the stored subtrees."""
    if size == 0:
        return merkle.EMPTY_ROOT
    with engine.connect() as conn:
        _check_size(conn, size)
        block = _blocks(conn, [(0, size)])
    return merkle.range_hash(0, size, block)


def entries(engine: Engine, start: int, end: int) -> list[bytes]:
    """The stored bytes of leaves [start, end), exactly as stored (not re-checked)."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(col(RegisterLeaf.leaf_index), col(RegisterLeaf.entry))
            .where(col(RegisterLeaf.leaf_index) >= start, col(RegisterLeaf.leaf_index) < end)
            .order_by(col(RegisterLeaf.leaf_index))
        ).all()
    if [int(r[0]) for r in rows] != list(range(start, start + len(rows))):
        raise InconsistentLog("the register's store is missing an entry")
    return [bytes(r[1]) for r in rows]


def leaf_indexes_for(engine: Engine, key: str, *, below: int | None = None) -> list[int]:
    """Leaves whose provider has `key` among its identifiers, in log order."""
    query = select(col(RegisterProviderIndex.leaf_index)).where(col(RegisterProviderIndex.key) == key)
    if below is not None:
        query = query.where(col(RegisterProviderIndex.leaf_index) < below)
    with engine.connect() as conn:
        return sorted(int(r[0]) for r in conn.execute(query))


def _stored_checkpoint(row: Any) -> StoredCheckpoint:
    return StoredCheckpoint(int(row[0]), bytes(row[1]), int(row[2]), bytes(row[3]), str(row[4]), bytes(row[5]))


_CHECKPOINT_COLUMNS = (
    col(RegisterCheckpoint.tree_size),
    col(RegisterCheckpoint.root),
    col(RegisterCheckpoint.time_ms),
    col(RegisterCheckpoint.payload),
    col(RegisterCheckpoint.keyid),
    col(RegisterCheckpoint.signature),
)


def latest_checkpoint(engine: Engine) -> StoredCheckpoint | None:
    with engine.connect() as conn:
        row = conn.execute(
            select(*_CHECKPOINT_COLUMNS).order_by(col(RegisterCheckpoint.tree_size).desc()).limit(1)
        ).first()
    return None if row is None else _stored_checkpoint(row)


def checkpoint_at(engine: Engine, size: int) -> StoredCheckpoint:
    with engine.connect() as conn:
        row = conn.execute(select(*_CHECKPOINT_COLUMNS).where(col(RegisterCheckpoint.tree_size) == size)).first()
    if row is None:
        raise NotFound("no checkpoint of that size")
    return _stored_checkpoint(row)


def add_checkpoint(engine: Engine, checkpoint: StoredCheckpoint) -> StoredCheckpoint:
    """Store a signed checkpoint; if another was stored for that size first, that one stands."""
    try:
        with engine.begin() as conn:
            conn.execute(insert(RegisterCheckpoint).values(**checkpoint.__dict__))
    except IntegrityError:
        return checkpoint_at(engine, checkpoint.tree_size)
    return checkpoint


def add_cosignature(engine: Engine, *, tree_size: int, witness: str, keyid: str, signature: bytes) -> None:
    """Record a witness's cosignature (a second one for the same checkpoint is ignored)."""
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(RegisterCosignature).values(
                    tree_size=tree_size, witness=witness, keyid=keyid, signature=signature, at=_now_text()
                )
            )
    except IntegrityError:
        pass


def cosignatures(engine: Engine, tree_size: int) -> list[tuple[str, str, bytes]]:
    """(witness, keyid, signature) for a checkpoint, by witness."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(col(RegisterCosignature.witness), col(RegisterCosignature.keyid), col(RegisterCosignature.signature))
            .where(col(RegisterCosignature.tree_size) == tree_size)
            .order_by(col(RegisterCosignature.witness))
        )
        return [(str(r[0]), str(r[1]), bytes(r[2])) for r in rows]


def _stream_leaves(conn: Connection) -> Iterator[tuple[int, bytes]]:
    result = conn.execution_options(yield_per=1000).execute(
        select(col(RegisterLeaf.leaf_index), col(RegisterLeaf.entry)).order_by(col(RegisterLeaf.leaf_index))
    )
    with result:
        for row in result:
            yield int(row[0]), bytes(row[1])


def verify_log(engine: Engine, *, check_entry: Callable[[int, bytes], None] | None = None) -> int:
    """Re-hash every stored entry and rebuild the tree: every stored subtree, the tree's root and
    every checkpoint's root must be what the entries give. Returns the size; raises InconsistentLog
    naming the first leaf that does not check out. `check_entry` may check each entry too."""
    with engine.connect() as conn:
        state = _read_tree(conn)
        stored_nodes = {
            int(r[0]): bytes(r[1]) for r in conn.execute(select(col(RegisterNode.node_id), col(RegisterNode.hash)))
        }
        roots = {int(r[0]): bytes(r[1]) for r in conn.execute(select(*_CHECKPOINT_COLUMNS[:2]))}
        frontier = merkle.Frontier()
        for index, data in _stream_leaves(conn):
            if index != frontier.size:
                raise InconsistentLog(f"leaf {frontier.size} is missing from the register's store")
            if check_entry is not None:
                check_entry(index, data)
            current = merkle.leaf_hash(data)
            if stored_nodes.get(_node_id(0, index)) != current:
                raise InconsistentLog(f"leaf {index}: the stored entry does not hash to the logged leaf")
            level = 0
            while (index >> level) & 1:
                current = merkle.node_hash(frontier.hashes.pop(), current)
                level += 1
                if stored_nodes.get(_node_id(level, index >> level)) != current:
                    raise InconsistentLog(f"leaf {index}: a stored subtree hash does not match the entries")
            frontier.hashes.append(current)
            frontier.size += 1
            if frontier.size in roots and roots[frontier.size] != frontier.root():
                raise InconsistentLog(f"the checkpoint of size {frontier.size} does not match the entries")
    size, root = (0, merkle.EMPTY_ROOT) if state is None else (state[0], state[1])
    if frontier.size != size or frontier.root() != root:
        raise InconsistentLog("the tree's stored head does not match the entries")
    if any(s > size for s in roots):
        raise InconsistentLog("a checkpoint is larger than the stored log")
    return size


def payload_digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()
