"""The standard table set's editions: each protected grid kept in the node's database.

Until now a node protected the whole grid at the first question after an import, in memory, and
again after every restart; on a large node that first question took seconds. `grid_edition` keeps
each edition (the grid as protected from one state of the records under one policy,
`node.editions`), built when the records change, so a grid question is a lookup, and each new
edition is protected against the last one kept. A new table: no row changes.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "grid_edition",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("policy_digest", sa.String(length=80), nullable=False),
        sa.Column("edition", sa.String(length=64), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("policy_digest", "edition", name="uq_grid_edition"),
    )


def downgrade() -> None:
    op.drop_table("grid_edition")
