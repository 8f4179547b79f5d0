"""The coordinator's nonces, kept in its audit database as well as in memory, as a node keeps its
own (`node.ledger.PersistentNonceCache`): a coordinator that restarts must still refuse a replay
of a request it accepted a moment before, within the request's lifetime.

The table is a schema of its own (`shared/migrations/nonces`), so the audit log's schema, which a
node's database holds too, is unchanged.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable

from sqlalchemy import BigInteger, Column, MetaData, String, Table, delete, insert
from sqlalchemy.engine import Engine
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


class StoredNonceCache(NonceCache):
    """Memory is the fast path for a replay to the same process; the primary key decides otherwise,
    so two processes on one database cannot both accept a nonce. Rows are dropped once their
    request can no longer be accepted (expiry plus the clock skew allowed). `engine` is called on
    first use, so the database opens when the first request comes, as the audit log does."""

    _PRUNE_EVERY_S = 60.0

    def __init__(self, engine: Callable[[], Engine]) -> None:
        super().__init__()
        self._engine = engine
        self._pruned_at = 0.0
        self._prune_lock = threading.Lock()

    def check_and_add(self, nonce: bytes, expires_at_ms: int, now: int) -> None:
        super().check_and_add(nonce, expires_at_ms, now)
        engine = self._engine()
        self._prune(engine, now)
        row = {"nonce_digest": hashlib.sha256(nonce).hexdigest(), "expires_at_ms": expires_at_ms}
        try:
            with engine.begin() as conn:
                conn.execute(insert(accepted_nonce).values(**row))
        except IntegrityError:
            raise ReplayedRequest() from None

    def _prune(self, engine: Engine, now: int) -> None:
        with self._prune_lock:
            if time.monotonic() - self._pruned_at < self._PRUNE_EVERY_S:
                return
            self._pruned_at = time.monotonic()
        horizon = now - CLOCK_SKEW_S * 1000
        with engine.begin() as conn:
            conn.execute(delete(accepted_nonce).where(accepted_nonce.c.expires_at_ms < horizon))
