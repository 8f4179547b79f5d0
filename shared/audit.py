"""An audit log: every request a node (or the coordinator) receives, appended to a hash chain in its
own database. Each node keeps one in its store; the coordinator keeps one for its services.

Each entry records who asked (principal, role, and the party that forwarded it), what they asked
(method and parameters), when, the decision, and a digest of the bytes released. Editing, deleting,
inserting or reordering stored entries breaks the chain, and `verify_chain` names the first bad entry.

The hash, so that an auditor can recompute it without this code
----------------------------------------------------------------

An entry's preimage is a JSON object with exactly these eleven keys::

    seq             integer, 1, 2, 3, ... with no gaps
    at              string, UTC, ISO 8601 with microseconds and "+00:00": "2025-04-01T09:30:00.000000+00:00"
    principal       string, who asked ("" when the caller could not be identified)
    role            string
    via             string, the party that forwarded the request ("coordinator"), or ""
    method          string, the gRPC method: "/cagnet.v1.Node/SupplyMap"
    parameters      string, the request parameters as canonical JSON *text* (not a nested object)
    decision        string, "released" | "refused: <rule>" | "rejected: <reason>"
    release_digest  string, "sha256:<64 lowercase hex>" of the released payload bytes, or ""
    policy_digest   string, the disclosure policy in force, or ""
    prev_hash       string, the previous entry's entry_hash; 64 "0"s for entry 1

serialised canonically: ``json.dumps(record, sort_keys=True, separators=(",", ":"),
ensure_ascii=False)``, encoded as UTF-8. ``entry_hash`` is the lowercase hex SHA-256 of those
bytes. Every value is hashed exactly as it is stored (the timestamp and parameters are stored as the
text shown above), so a change to any stored byte is detected.

Each line of `export_jsonl` is that same object plus ``entry_hash``, so a line verifies on its own::

    record = json.loads(line)
    claimed = record.pop("entry_hash")
    body = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert hashlib.sha256(body.encode("utf-8")).hexdigest() == claimed

and the chain holds when line n's ``prev_hash`` is line n-1's ``entry_hash`` and ``seq`` counts 1, 2, 3.

A chain that is internally consistent can still have been cut short at the end; `head` gives the
(seq, entry_hash) a node can publish or remember, and ``verify_chain(engine, expected_head=...)``
checks that the log still reaches it.
"""

from __future__ import annotations

import hashlib
import re
import threading
import weakref
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy import String, create_engine, desc, event, insert, select, text, type_coerce
from sqlalchemy.engine import Connection, Dialect, Engine, Result
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, Session, SQLModel, col
from sqlmodel import select as select_entries

from shared.canonical import canonical_json
from shared.errors import CagnetError
from shared.migrate import Schema, Store, ensure_current
from shared.nonces import SCHEMA as NONCES

__all__ = [
    "GENESIS_HASH",
    "AuditChainBroken",
    "AuditEntry",
    "append",
    "digest_of",
    "entries",
    "entry_hash",
    "export_jsonl",
    "head",
    "open_log",
    "verify_chain",
    "write",
]

GENESIS_HASH = "0" * 64
"""The prev_hash of entry 1, and the head hash of an empty log."""

_HASHED_FIELDS = (
    "seq",
    "at",
    "principal",
    "role",
    "via",
    "method",
    "parameters",
    "decision",
    "release_digest",
    "policy_digest",
    "prev_hash",
)
_ALL_FIELDS = (*_HASHED_FIELDS, "entry_hash")

_DECISION = re.compile(r"released|(refused|rejected): \S.*", re.DOTALL)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class AuditChainBroken(CagnetError):
    """The audit log has been edited, cut, extended out of order, or does not reach its known head.

    It is raised by a local check and never crosses the wire; `seq` is the first bad entry (None when
    the fault is the head as a whole) and `reason` says what is wrong with it.
    """

    default_message = "audit log chain broken"

    def __init__(self, reason: str, *, seq: int | None = None) -> None:
        self.reason = reason
        self.seq = seq
        super().__init__(detail=reason)


def _canonical_json(value: object) -> str:
    return canonical_json(value, ensure_ascii=False).decode("utf-8")


def _format_at(at: datetime) -> str:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"audit timestamps must be timezone-aware, got naive {at!r}")
    return at.astimezone(UTC).isoformat(timespec="microseconds")


class _UtcIsoTimestamp(TypeDecorator[datetime]):
    """A UTC instant stored as the exact text that is hashed, so it round-trips byte for byte on
    every backend (a native timestamp column would depend on the backend's precision and zone)."""

    impl = String(32)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> str | None:
        return None if value is None else _format_at(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> datetime | None:
        return None if value is None else datetime.fromisoformat(value)


class AuditEntry(SQLModel, table=True):
    """One request received and what was decided; one link of the hash chain."""

    __tablename__ = "audit_log"

    # Assigned by `append`, never by the database: the primary key is what stops a second writer from
    # forking the chain at the same position.
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    at: datetime = Field(sa_type=_UtcIsoTimestamp, nullable=False)
    principal: str
    role: str
    via: str
    method: str
    parameters: str
    decision: str
    release_digest: str = ""
    policy_digest: str = ""
    # Unique: no two entries may claim the same predecessor, a second guard against a fork.
    prev_hash: str = Field(unique=True, max_length=64)
    entry_hash: str = Field(max_length=64)


# The audit log's migrations (shared/migrations/audit): one table, wherever a log is kept, beside the
# node schema in a node's database and alone in the coordinator's audit database.
SCHEMA = Schema(
    name="audit",
    package="shared.migrations.audit",
    metadata=AuditEntry.metadata,
    core_tables=frozenset({"audit_log"}),
    only_tables=frozenset({"audit_log"}),
)

# Only the coordinator keeps an audit log in a database of its own (a node's is in its node database),
# and beside it the nonces of the requests it accepted (`shared.nonces`).
LOG_STORE = Store(
    title="the coordinator's audit log",
    schemas=(SCHEMA, NONCES),
    upgrade_command="cagnet coordinator upgrade NETDIR",
)


SQLITE_BUSY_TIMEOUT_S = 30.0


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets `show` and `verify` read while the server appends; FULL keeps an entry through a power cut.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
    finally:
        cursor.close()


def open_log(url: str) -> Engine:
    """An engine for an audit log in a database of its own (the coordinator's): an empty database
    gets the newest schema revision, an older or newer one is refused (`shared.migrate`). A node's
    log lives in its store instead (`node.store.open_store`)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S})
        event.listen(engine, "connect", _sqlite_on_connect)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    try:
        ensure_current(engine, LOG_STORE)
    except BaseException:
        engine.dispose()
        raise
    return engine


def digest_of(payload: bytes) -> str:
    """The `release_digest` of exactly these released bytes: "sha256:<hex>"."""
    return "sha256:" + hashlib.sha256(payload).hexdigest()


def entry_hash(record: Mapping[str, object]) -> str:
    """SHA-256 (hex) of the canonical JSON of an entry's hashed fields, as the module docstring says.

    `record` holds the stored values: `at` and `parameters` as their stored text.
    """
    preimage = {name: record[name] for name in _HASHED_FIELDS}
    return hashlib.sha256(_canonical_json(preimage).encode("utf-8")).hexdigest()


# One lock per engine: threads of this process take turns, so they never even reach the database lock
# against each other. The database lock (below) is what holds against other processes.
_locks: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()
_locks_guard = threading.Lock()


def _append_lock(engine: Engine) -> threading.Lock:
    with _locks_guard:
        lock = _locks.get(engine)
        if lock is None:
            lock = _locks[engine] = threading.Lock()
        return lock


def _lock_log_for_append(conn: Connection) -> None:
    """In a transaction just begun, take the database's write lock before reading the head, so no other
    writer can append between our read of the head and our insert. Other backends rely on the seq
    primary key alone: a racing writer fails on it rather than forking the chain."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        # EXCLUSIVE blocks other writers (and other appenders' LOCK) but still lets readers read.
        conn.execute(text("LOCK TABLE audit_log IN EXCLUSIVE MODE"))
    elif dialect == "sqlite":
        dbapi_connection = conn.connection.dbapi_connection
        if dbapi_connection is not None and not dbapi_connection.in_transaction:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            # An engine configured to begin transactions itself has already opened a deferred one;
            # a write as its first statement takes the same RESERVED lock BEGIN IMMEDIATE would.
            conn.exec_driver_sql("UPDATE audit_log SET seq = seq WHERE 0")


def append(
    engine: Engine,
    *,
    principal: str,
    role: str,
    via: str,
    method: str,
    parameters: Mapping[str, object],
    decision: str,
    release_digest: str = "",
    policy_digest: str = "",
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry in one short transaction and return it as stored.

    `decision` is "released", "refused: <rule>" or "rejected: <reason>"; a release carries the
    `digest_of` the released bytes and anything else carries none. `at` defaults to now; it must be
    timezone-aware and is stored in UTC. Safe to call from many threads and processes at once.
    """
    return AuditEntry(
        **_append(
            engine,
            principal=principal,
            role=role,
            via=via,
            method=method,
            parameters=parameters,
            decision=decision,
            release_digest=release_digest,
            policy_digest=policy_digest,
            at=at,
        )
    )


def write(
    engine: Engine,
    *,
    principal: str,
    role: str,
    via: str,
    method: str,
    parameters: Mapping[str, object],
    decision: str,
    release_digest: str = "",
    policy_digest: str = "",
    at: datetime | None = None,
    also: Callable[[Connection], None] | None = None,
) -> None:
    """`append`, durably the same, without building the stored row to hand back: the node's own
    path, where making that object would cost a third as much as the write. `also` writes what
    must be stored with the entry, in its transaction (a node's spent nonces): both or neither."""
    _append(
        engine,
        principal=principal,
        role=role,
        via=via,
        method=method,
        parameters=parameters,
        decision=decision,
        release_digest=release_digest,
        policy_digest=policy_digest,
        at=at,
        also=also,
    )


def _append(
    engine: Engine,
    *,
    principal: str,
    role: str,
    via: str,
    method: str,
    parameters: Mapping[str, object],
    decision: str,
    release_digest: str = "",
    policy_digest: str = "",
    at: datetime | None = None,
    also: Callable[[Connection], None] | None = None,
) -> dict[str, Any]:
    if not method:
        raise ValueError("an audit entry needs the method that was called")
    if not _DECISION.fullmatch(decision):
        raise ValueError(f'decision must be "released", "refused: <rule>" or "rejected: <reason>": {decision!r}')
    if decision == "released":
        if not _DIGEST.fullmatch(release_digest):
            raise ValueError(f'a release needs release_digest "sha256:<64 hex>": {release_digest!r}')
    elif release_digest:
        raise ValueError(f"nothing was released, so release_digest must be empty: {release_digest!r}")
    # Both are fixed before any lock is taken; json raises here on anything it cannot encode exactly.
    parameters_text = _canonical_json(dict(parameters))
    at_text = _format_at(at if at is not None else datetime.now(UTC))
    entry = _Pending(
        {
            "at": at_text,
            "principal": principal,
            "role": role,
            "via": via,
            "method": method,
            "parameters": parameters_text,
            "decision": decision,
            "release_digest": release_digest,
            "policy_digest": policy_digest,
        },
        also,
    )
    return _committer(engine).append(engine, entry)


class _Pending:
    """One entry waiting to be appended, and, once its transaction has ended, what became of it."""

    __slots__ = ("also", "error", "fields", "stored")

    def __init__(self, fields: dict[str, Any], also: Callable[[Connection], None] | None) -> None:
        self.fields, self.also = fields, also
        self.stored: dict[str, Any] | None = None
        self.error: BaseException | None = None


class _GroupCommit:
    """Appends to one engine's log, with the entries that arrive while a transaction is being
    written and synced committed together in the next one: under many concurrent requests the
    disk syncs once for a group, not once an entry, and the chain is the same as one at a time.

    Every caller returns only once the transaction holding its entry has committed (or raises what
    failed it), so an answer still leaves only after its entry is durable. Whoever takes the lock
    writes everything queued (its own entry among it); an entry whose `also` fails (a nonce another
    process stored first) is dropped from the group and the rest written again without it."""

    def __init__(self, engine: Engine) -> None:
        # The engine is not kept (it keys this in a weak mapping): each caller passes it.
        self._queue: list[_Pending] = []
        self._queue_lock = threading.Lock()
        self._write_lock = _append_lock(engine)  # also held by the other writers of this log

    def append(self, engine: Engine, entry: _Pending) -> dict[str, Any]:
        with self._queue_lock:
            self._queue.append(entry)
        with self._write_lock:
            if entry.stored is None and entry.error is None:
                with self._queue_lock:
                    group, self._queue = self._queue, []
                self._write(engine, group)
        if entry.error is not None:
            raise entry.error
        assert entry.stored is not None
        return entry.stored

    def _write(self, engine: Engine, group: list[_Pending]) -> None:
        while group:
            failed: _Pending | None = None
            try:
                with engine.connect() as conn, conn.begin():
                    _lock_log_for_append(conn)
                    seq, prev_hash = _last(conn)
                    rows = []
                    for entry in group:
                        failed = entry
                        if entry.also is not None:
                            entry.also(conn)
                        seq += 1
                        record: dict[str, Any] = {"seq": seq, **entry.fields, "prev_hash": prev_hash}
                        prev_hash = record["entry_hash"] = entry_hash(record)
                        rows.append({**record, "at": datetime.fromisoformat(record["at"])})
                    failed = None
                    conn.execute(_INSERT, rows)
            except BaseException as exc:
                if failed is None or len(group) == 1:
                    for entry in group:  # the transaction as a whole failed: nothing of it stored
                        entry.error = exc
                    return
                failed.error = exc  # its own part failed: the others are written without it
                group = [entry for entry in group if entry is not failed]
                continue
            for entry, row in zip(group, rows, strict=True):
                entry.stored = row
            return


_committers: weakref.WeakKeyDictionary[Engine, _GroupCommit] = weakref.WeakKeyDictionary()


def _committer(engine: Engine) -> _GroupCommit:
    with _locks_guard:
        committer = _committers.get(engine)
    if committer is None:
        committer = _GroupCommit(engine)
        with _locks_guard:
            committer = _committers.setdefault(engine, committer)
    return committer


def entries(engine: Engine, *, since_seq: int = 0, limit: int | None = None) -> list[AuditEntry]:
    """The entries after `since_seq`, in seq order, at most `limit` of them. Not verified."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must not be negative: {limit}")
    query = select_entries(AuditEntry).where(col(AuditEntry.seq) > since_seq).order_by(col(AuditEntry.seq))
    if limit is not None:
        query = query.limit(limit)
    with Session(engine) as session:
        return list(session.exec(query).all())


def head(engine: Engine) -> tuple[int, str]:
    """(seq, entry_hash) of the last stored entry, or (0, GENESIS_HASH) for an empty log. Not verified:
    remember it after `verify_chain` passes, and pass it back as `expected_head` later."""
    with engine.connect() as conn:
        return _last(conn)


# Built once: a statement made per append costs more than running it. The insert is a Core insert into
# the table (no ORM bulk-insert machinery), with the row as its parameters.
_LAST = select(col(AuditEntry.seq), col(AuditEntry.entry_hash)).order_by(desc(col(AuditEntry.seq))).limit(1)
_INSERT = insert(AuditEntry.__table__)  # type: ignore[attr-defined]


def _last(conn: Connection) -> tuple[int, str]:
    last = conn.execute(_LAST).first()
    return (0, GENESIS_HASH) if last is None else (int(last[0]), str(last[1]))


def _stored_records(conn: Connection, since_seq: int = 0) -> Result[Any]:
    """Every entry (after `since_seq`) as the exact stored values that are hashed (the timestamp as its
    text), in seq order. Streamed, so a long log is never held in memory; use the result as a context
    manager."""
    columns = [
        type_coerce(col(AuditEntry.at), String).label("at") if name == "at" else col(getattr(AuditEntry, name))
        for name in _ALL_FIELDS
    ]
    query = select(*columns).where(col(AuditEntry.seq) > since_seq).order_by(col(AuditEntry.seq))
    return conn.execution_options(yield_per=1000).execute(query)


def verify_chain(engine: Engine, expected_head: tuple[int, str] | None = None) -> int:
    """Check every entry's hash and link; return how many entries were verified.

    Raises `AuditChainBroken` naming the first bad entry. With `expected_head` (an earlier `head`),
    also raises when the log no longer reaches that entry with that hash: cut short, or rewritten.
    Entries appended after that head are fine.
    """
    head_seq, head_hash = expected_head if expected_head is not None else (0, GENESIS_HASH)
    hash_at_head_seq: str | None = GENESIS_HASH if head_seq == 0 else None
    previous_seq, previous_hash = 0, GENESIS_HASH
    with engine.connect() as conn, _stored_records(conn) as stored:
        for row in stored:
            record = row._asdict()
            seq = record["seq"]
            if seq != previous_seq + 1:
                missing = previous_seq + 1
                if seq > missing:
                    raise AuditChainBroken(
                        f"entry {missing} is missing: seq jumps from {previous_seq} to {seq}", seq=missing
                    )
                raise AuditChainBroken(f"entry {seq}: seq must count up from 1", seq=seq)
            if entry_hash(record) != record["entry_hash"]:
                raise AuditChainBroken(f"entry {seq}: hash does not match its contents", seq=seq)
            if record["prev_hash"] != previous_hash:
                if seq == 1:
                    raise AuditChainBroken("entry 1: prev_hash is not the genesis hash (64 zeros)", seq=1)
                raise AuditChainBroken(f"entry {seq}: prev_hash does not match entry {previous_seq}", seq=seq)
            if seq == head_seq:
                hash_at_head_seq = record["entry_hash"]
            previous_seq, previous_hash = seq, record["entry_hash"]
    if expected_head is not None and hash_at_head_seq != head_hash:
        if hash_at_head_seq is None:
            raise AuditChainBroken(
                f"log truncated or rewritten: head entry {head_seq} ({head_hash}) not reached; "
                f"the log ends at entry {previous_seq}"
            )
        raise AuditChainBroken(
            f"log truncated or rewritten: head entry {head_seq} was {head_hash}, is now {hash_at_head_seq}",
            seq=head_seq,
        )
    return previous_seq


def export_jsonl(engine: Engine, out: TextIO, *, since_seq: int = 0) -> int:
    """Write every entry (after `since_seq`) as one canonical JSON object per line, in seq order;
    return how many.

    Values are exactly as stored and hashed, so each line verifies on its own (see the module
    docstring). The export is not verified first: run `verify_chain` for that.
    """
    count = 0
    with engine.connect() as conn, _stored_records(conn, since_seq) as stored:
        for row in stored:
            out.write(_canonical_json(row._asdict()) + "\n")
            count += 1
    return count
