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
    if _missing("feed_snapshot"):
        op.create_table(
            "feed_snapshot",
            sa.Column("sequence", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("published_at", sa.String(length=40), nullable=False),
            sa.Column("envelope", sa.Text(), nullable=False),
            sa.Column("bundles", sa.Text(), nullable=False),
            sa.PrimaryKeyConstraint("sequence"),
        )


def downgrade() -> None:
    # Below the baseline there is no schema, only lost rows: cagnet has no downgrade (docs/migrations.md).
    raise RuntimeError("revision 0001 is the baseline: downgrading it would drop every table and its rows")
