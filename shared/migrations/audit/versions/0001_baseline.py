"""The schema as cagnet made it before it had migrations (`metadata.create_all`).

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _missing(table: str) -> bool:
    # A database made before migrations has some of these tables already (each command created those
    # it used, as they are here): this revision adds only the others, then it is stamped like any.
    return not sa.inspect(op.get_bind()).has_table(table)


def upgrade() -> None:
    if _missing("audit_log"):
        op.create_table(
            "audit_log",
            sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("at", sa.String(length=32), nullable=False),
            sa.Column("principal", sa.String(), nullable=False),
            sa.Column("role", sa.String(), nullable=False),
            sa.Column("via", sa.String(), nullable=False),
            sa.Column("method", sa.String(), nullable=False),
            sa.Column("parameters", sa.String(), nullable=False),
            sa.Column("decision", sa.String(), nullable=False),
            sa.Column("release_digest", sa.String(), nullable=False),
            sa.Column("policy_digest", sa.String(), nullable=False),
            sa.Column("prev_hash", sa.String(length=64), nullable=False),
            sa.Column("entry_hash", sa.String(length=64), nullable=False),
            sa.PrimaryKeyConstraint("seq"),
            sa.UniqueConstraint("prev_hash"),
        )


def downgrade() -> None:
    # Below the baseline there is no schema, only lost rows: cagnet has no downgrade (docs/migrations.md).
    raise RuntimeError("revision 0001 is the baseline: downgrading it would drop every table and its rows")
