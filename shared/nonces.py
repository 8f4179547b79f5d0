"""The coordinator's nonces, kept in its audit database as well as in memory, as a node keeps its
own (`node.ledger.PersistentNonceCache`, on the same `DeferredNonceCache`): a coordinator that
restarts must still refuse a replay of a request it accepted a moment before, within the
request's lifetime.

The table is a schema of its own (`shared/migrations/nonces`), so the audit log's schema, which a
node's database holds too, is unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterator

from sqlalchemy import BigInteger, Column, MetaData, String, Table, delete, insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from shared.auth import CLOCK_SKEW_S, NonceCache
from shared.errors import ReplayedRequest
from shared.migrate import Schema

metadata = MetaData()

accepted_nonce = Table(
    "accepted_nonce",
    metadata,
    # SHA-256 of the nonce: a fixed width on every backend, and nothing a request carried.
    Column("nonce_digest", String(64), primary_key=True),
    Column("expires_at_ms", BigInteger, nullable=False, index=True),
)

# Its migrations (shared/migrations/nonces): a schema of its own beside the coordinator's audit log.
SCHEMA = Schema(
    name="nonces",
    package="shared.migrations.nonces",
    metadata=metadata,
    core_tables=frozenset({"accepted_nonce"}),
    only_tables=frozenset({"accepted_nonce"}),
)


class DeferredNonceCache(NonceCache):
    """Nonces kept in memory and in a table of a database (`_table`), where a request's spent
    nonces can wait to be written with its audit entry, in one transaction.

    Memory is the fast path for a replay to the same process; the primary key decides otherwise,
    so two processes on one database cannot both accept a nonce. Rows are dropped once their
    request can no longer be accepted (expiry plus the clock skew allowed). A nonce checked
    outside `batch()` is stored at once."""

    _PRUNE_EVERY_S = 60.0

    def __init__(self, engine: Callable[[], Engine], table: Table) -> None:
        super().__init__()
        self._engine = engine
        self._table = table
        # Built once: the table's plain insert, not the ORM's bulk path (which costs more than the write).
        self._insert_rows = insert(table)
        self._pruned_at = 0.0
        self._prune_lock = threading.Lock()
        self._local = threading.local()  # the rows of the request this thread is checking

    def check_and_add(self, nonce: bytes, expires_at_ms: int, now: int) -> None:
        super().check_and_add(nonce, expires_at_ms, now)
        self._prune(now)
        row = {"nonce_digest": hashlib.sha256(nonce).hexdigest(), "expires_at_ms": expires_at_ms}
        pending: list[dict[str, object]] | None = getattr(self._local, "batch", None)
        if pending is not None:
            pending.append(row)
            return
        self._store([row])

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """The nonces one request spends while it is authenticated, each checked in memory at once.
        If the request passes, they wait for `spent()`, which writes them with the request's audit
        entry in one transaction (one disk sync, not two or three) before any answer leaves; if it
        is refused here, they are written now, spent as a nonce checked alone would be."""
        self.spent().close()  # anything a request before left unwritten on this thread, first
        self._local.batch = []
        try:
            yield
        except BaseException:
            rows, self._local.batch = self._local.batch, None
            if rows:
                self._store(rows)
            raise
        self._local.pending, self._local.batch = self._local.batch, None

    def spent(self) -> SpentNonces:
        """The nonces the request just authenticated on this thread spent, not yet stored."""
        rows: list[dict[str, object]] = getattr(self._local, "pending", None) or []
        self._local.pending = None
        return SpentNonces(self, rows)

    def _store(self, rows: list[dict[str, object]]) -> None:
        with self._engine().begin() as conn:
            self._insert(conn, rows)

    def _insert(self, conn: Connection, rows: list[dict[str, object]]) -> None:
        try:
            conn.execute(self._insert_rows, rows)
        except IntegrityError:
            raise ReplayedRequest() from None  # another process on this database took it first

    def _prune(self, now: int) -> None:
        with self._prune_lock:
            if time.monotonic() - self._pruned_at < self._PRUNE_EVERY_S:
                return
            self._pruned_at = time.monotonic()
        horizon = now - CLOCK_SKEW_S * 1000
        with self._engine().begin() as conn:
            conn.execute(delete(self._table).where(self._table.c.expires_at_ms < horizon))


class SpentNonces:
    """A request's spent nonces on their way to the store: `write_in` the transaction of the
    request's audit entry (a replay another process stored first fails both), or, if the request
    ends without one, `close` stores them alone. Nothing is answered before either."""

    def __init__(self, cache: DeferredNonceCache | None, rows: list[dict[str, object]]) -> None:
        self._cache, self._rows = cache, rows  # no cache: nothing to store (a cache in memory only)

    def write_in(self, conn: Connection) -> None:
        rows, self._rows = self._rows, []
        if rows and self._cache is not None:
            self._cache._insert(conn, rows)

    def close(self) -> None:
        rows, self._rows = self._rows, []
        if rows and self._cache is not None:
            self._cache._store(rows)


class StoredNonceCache(DeferredNonceCache):
    """The coordinator's: in its audit database. `engine` is called on first use, so the database
    opens when the first request comes, as the audit log does."""

    def __init__(self, engine: Callable[[], Engine]) -> None:
        super().__init__(engine, accepted_nonce)
