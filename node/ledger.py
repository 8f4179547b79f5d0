"""The node's release ledger in its database: every table it has released, kept for good.

`SqlReleaseStore` is the `shared.disclosure.ReleaseStore` a running node hands to its
`ReleaseLedger`. Because the releases outlive the process, a query whose difference from one
answered last week (or before a restart) would isolate a few people is still refused.

    release_ledger  id PK, kind (indexed), query_signature, dimensions (JSON list of names),
                    cells (canonical JSON: [[key...], count] pairs sorted by key), at (UTC)
    mandate_slot    (mandate_id, slot, method) PK, kind, at (UTC): each slot of a CAG chair's feed
                    mandate the coordinator has used here, so that it is answered once, even
                    across a restart
    seen_nonce      nonce_digest PK (hex SHA-256 of what was spent), expires_at_ms (indexed): every
                    request nonce and every (principal query, method) pair answered, kept until
                    the request has expired, so that a replay after a restart is still refused
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType

from sqlalchemy import BigInteger, Text, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from node.columns import UtcDateTime
from shared.canonical import canonical_json
from shared.disclosure import CellKey, Release
from shared.errors import ReplayedRequest
from shared.nonces import DeferredNonceCache, SpentNonces

__all__ = [
    "AnswerRow",
    "MandateSlotRow",
    "PersistentNonceCache",
    "ReleaseRow",
    "SeenNonceRow",
    "SpentNonces",
    "SqlReleaseStore",
    "keep_answer",
    "last_answer",
    "spend_mandate_slot",
]


class ReleaseRow(SQLModel, table=True):
    """One released table: the TRUE counts at the finest grain the query selected."""

    __tablename__ = "release_ledger"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True, max_length=40)
    query_signature: str = Field(sa_type=Text)
    dimensions: str = Field(sa_type=Text)
    cells: str = Field(sa_type=Text)
    at: datetime = Field(sa_type=UtcDateTime, nullable=False)


def _canonical_json(value: object) -> str:
    # Only lists of strings and numbers come here, so sorting keys changes nothing stored.
    return canonical_json(value, ensure_ascii=False).decode("utf-8")


class SqlReleaseStore:
    """A `ReleaseStore` on a node's engine (see `node.store.open_store`). Append-only."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def record(
        self,
        kind: str,
        query_signature: str,
        dimensions: tuple[str, ...],
        cells: Mapping[CellKey, int],
        at: datetime,
    ) -> None:
        self.record_all([(kind, query_signature, dimensions, cells, at)])

    def record_all(self, releases: Sequence[tuple[str, str, tuple[str, ...], Mapping[CellKey, int], datetime]]) -> None:
        """Several releases in one transaction (the standard table set's quarters)."""
        rows = []
        for kind, query_signature, dimensions, cells, at in releases:
            # Checked here rather than left to UtcDateTime, which would surface as a StatementError.
            if at.tzinfo is None or at.utcoffset() is None:
                raise ValueError(f"release timestamps must be timezone-aware, got naive {at!r}")
            # Sorted so that equal releases are stored as equal text, whatever order they were built in.
            pairs = [[list(key), int(count)] for key, count in sorted((tuple(k), v) for k, v in cells.items())]
            rows.append(
                {
                    "kind": kind,
                    "query_signature": query_signature,
                    "dimensions": _canonical_json(list(dimensions)),
                    "cells": _canonical_json(pairs),
                    "at": at,
                }
            )
        if rows:
            with self.engine.begin() as conn:
                conn.execute(insert(ReleaseRow), rows)

    def previous(self, kind: str) -> tuple[Release, ...]:
        query = select(ReleaseRow).where(col(ReleaseRow.kind) == kind).order_by(col(ReleaseRow.id))
        with Session(self.engine) as session:
            rows = session.exec(query).all()
        return tuple(
            Release(
                row.query_signature,
                tuple(json.loads(row.dimensions)),
                MappingProxyType({tuple(key): int(count) for key, count in json.loads(row.cells)}),
                row.at,
            )
            for row in rows
        )


class AnswerRow(SQLModel, table=True):
    """The last answer released to a question under a policy, exactly as released, so that a
    question whose answer has moved by too little to show can be given it again after a restart."""

    __tablename__ = "released_answer"

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(index=True, max_length=40)
    query_signature: str = Field(sa_type=Text, index=True)
    policy_digest: str = Field(max_length=80)
    answer: str = Field(sa_type=Text)  # the released figures as JSON
    at: datetime = Field(sa_type=UtcDateTime, nullable=False)


def keep_answer(engine: Engine, *, kind: str, query_signature: str, policy_digest: str, answer: str) -> None:
    with Session(engine) as session:
        session.add(
            AnswerRow(
                kind=kind,
                query_signature=query_signature,
                policy_digest=policy_digest,
                answer=answer,
                at=datetime.now(UTC),
            )
        )
        session.commit()


def last_answer(engine: Engine, *, kind: str, query_signature: str, policy_digest: str) -> str | None:
    with Session(engine) as session:
        row = session.exec(
            select(AnswerRow)
            .where(AnswerRow.kind == kind)
            .where(AnswerRow.query_signature == query_signature)
            .where(AnswerRow.policy_digest == policy_digest)
            .order_by(col(AnswerRow.id).desc())
            .limit(1)
        ).first()
        return row.answer if row is not None else None


class MandateSlotRow(SQLModel, table=True):
    """A slot of a feed mandate the coordinator has asked under, for one method."""

    __tablename__ = "mandate_slot"

    mandate_id: str = Field(primary_key=True, max_length=32)
    slot: int = Field(primary_key=True)
    method: str = Field(primary_key=True, max_length=80)
    kind: str = Field(max_length=40)
    at: datetime = Field(sa_type=UtcDateTime, nullable=False)


def spend_mandate_slot(engine: Engine, *, mandate_id: str, slot: int, method: str, kind: str) -> None:
    """Record that the coordinator asked under this mandate, slot and method; ReplayedRequest if it
    already has. The primary key decides, so two concurrent requests cannot both pass."""
    row = {"mandate_id": mandate_id, "slot": slot, "method": method, "kind": kind, "at": datetime.now(UTC)}
    try:
        with engine.begin() as conn:
            conn.execute(insert(MandateSlotRow).values(**row))
    except IntegrityError:
        raise ReplayedRequest("the feed mandate's query was already answered in this slot") from None


class SeenNonceRow(SQLModel, table=True):
    """A nonce (or a principal query's nonce at one method) this node has accepted."""

    __tablename__ = "seen_nonce"

    nonce_digest: str = Field(primary_key=True, max_length=64)
    expires_at_ms: int = Field(sa_type=BigInteger, index=True)


class PersistentNonceCache(DeferredNonceCache):
    """The nonce cache in the node's database as well as in memory (`shared.nonces`).

    A node that restarts would otherwise answer a replay of a request it answered a moment before,
    within the request's lifetime; and "each principal query once per method", which the common
    providers and repeat movers protocols rely on, would hold only per process. A request's
    nonces (its own and, forwarded, its principal's query at this method) are stored with its
    audit entry (`node.rpc.server.NodeServicer.answer`)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(lambda: engine, SeenNonceRow.__table__)  # type: ignore[attr-defined]
        self.engine = engine
