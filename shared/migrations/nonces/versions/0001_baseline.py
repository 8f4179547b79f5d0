"""The coordinator's accepted nonces, kept in its audit database so a restart refuses a replay.

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


def upgrade() -> None:
    op.create_table(
        "accepted_nonce",
        sa.Column("nonce_digest", sa.String(length=64), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("nonce_digest"),
    )
    op.create_index(op.f("ix_accepted_nonce_expires_at_ms"), "accepted_nonce", ["expires_at_ms"], unique=False)


def downgrade() -> None:
    # Below the baseline there is no schema, only lost rows: cagnet has no downgrade (docs/migrations.md).
    raise RuntimeError("revision 0001 is the baseline: downgrading it would drop every table and its rows")
