"""The records' write stamps: the store's edition without reading its tables.

Every answer read the store's edition as a fingerprint worked out from seven tables (each one's
count, largest id and newest `updated_at`): counts read every row, a fifth of a node's time in a
joint query. `write_stamp` holds one row per part of the records (the supply, the client records),
and every write to a part's tables writes a fresh random stamp into its row in the same transaction
(`node.stamps`); the edition is then one read of two short rows. A new table: no row changes. The
upgrade stamps both parts once, so the first edition after it is a new one, and the standard table
set is protected afresh against the last edition kept (its cells unchanged, so nothing it published
moves).

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "write_stamp",
        sa.Column("part", sa.String(length=16), nullable=False),
        sa.Column("stamp", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("part"),
    )
    op.bulk_insert(table, [{"part": part, "stamp": secrets.token_hex(16)} for part in ("supply", "records")])


def downgrade() -> None:
    op.drop_table("write_stamp")
