"""Editions of the standard table set, kept in the node's database: each edition is the whole grid
as protected from one state of the records under one policy, so that a grid question after a
restart (or in another process) is a lookup, and a new edition is protected against the last.

    grid_edition  id PK, policy_digest, edition (hex SHA-256 of the records' write stamps, `node.stamps`),
                  UNIQUE (policy_digest, edition); state (JSON: each grid quarter's published
                  true cells and each protected block), at (UTC)

The state holds true counts: like the release ledger, it never leaves the node.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Text, UniqueConstraint, insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, select

from node.columns import UtcDateTime

__all__ = ["GridEditionRow", "keep_edition", "latest_edition", "load_edition"]


class GridEditionRow(SQLModel, table=True):
    """One protected edition of the standard table set."""

    __tablename__ = "grid_edition"
    __table_args__ = (UniqueConstraint("policy_digest", "edition", name="uq_grid_edition"),)

    id: int | None = Field(default=None, primary_key=True)
    policy_digest: str = Field(max_length=80)
    edition: str = Field(max_length=64)
    state: str = Field(sa_type=Text)
    at: datetime = Field(sa_type=UtcDateTime, nullable=False)


def keep_edition(engine: Engine, *, policy_digest: str, edition: str, state: str) -> None:
    """Keep an edition; one already kept (by another process that built it at the same moment,
    from the same records) stands."""
    row = {"policy_digest": policy_digest, "edition": edition, "state": state, "at": datetime.now(UTC)}
    try:
        with engine.begin() as conn:
            conn.execute(insert(GridEditionRow).values(**row))
    except IntegrityError:
        pass


def load_edition(engine: Engine, *, policy_digest: str, edition: str) -> str | None:
    with Session(engine) as session:
        row = session.exec(
            select(GridEditionRow.state)
            .where(GridEditionRow.policy_digest == policy_digest)
            .where(GridEditionRow.edition == edition)
        ).first()
    return row


def latest_edition(engine: Engine, *, policy_digest: str) -> str | None:
    """The newest edition kept under this policy: what a new edition is protected against."""
    with Session(engine) as session:
        return session.exec(
            select(GridEditionRow.state)
            .where(GridEditionRow.policy_digest == policy_digest)
            .order_by(col(GridEditionRow.id).desc())
            .limit(1)
        ).first()
