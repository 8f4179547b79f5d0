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
    if _missing("register_checkpoint"):
        op.create_table(
            "register_checkpoint",
            sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("root", sa.LargeBinary(), nullable=False),
            sa.Column("time_ms", sa.BigInteger(), nullable=False),
            sa.Column("payload", sa.LargeBinary(), nullable=False),
            sa.Column("keyid", sa.String(length=64), nullable=False),
            sa.Column("signature", sa.LargeBinary(), nullable=False),
            sa.PrimaryKeyConstraint("tree_size"),
        )
    if _missing("register_cosignature"):
        op.create_table(
            "register_cosignature",
            sa.Column("tree_size", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("witness", sa.String(length=32), nullable=False),
            sa.Column("keyid", sa.String(length=64), nullable=False),
            sa.Column("signature", sa.LargeBinary(), nullable=False),
            sa.Column("at", sa.String(length=32), nullable=False),
            sa.PrimaryKeyConstraint("tree_size", "witness"),
        )
    if _missing("register_leaf"):
        op.create_table(
            "register_leaf",
            sa.Column("leaf_index", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("entry", sa.LargeBinary(), nullable=False),
            sa.Column("entry_digest", sa.String(length=64), nullable=False),
            sa.Column("authority", sa.String(length=32), nullable=False),
            sa.Column("provider_key", sa.String(length=250), nullable=False),
            sa.Column("decision", sa.String(length=16), nullable=False),
            sa.Column("appended_at", sa.String(length=32), nullable=False),
            sa.PrimaryKeyConstraint("leaf_index"),
            sa.UniqueConstraint("entry_digest"),
        )
        op.create_index("ix_register_leaf_authority", "register_leaf", ["authority"], unique=False)
        op.create_index("ix_register_leaf_provider_key", "register_leaf", ["provider_key"], unique=False)
    if _missing("register_node"):
        op.create_table(
            "register_node",
            sa.Column("node_id", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("hash", sa.LargeBinary(), nullable=False),
            sa.PrimaryKeyConstraint("node_id"),
        )
    if _missing("register_provider_index"):
        op.create_table(
            "register_provider_index",
            sa.Column("key", sa.String(length=250), nullable=False),
            sa.Column("leaf_index", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.PrimaryKeyConstraint("key", "leaf_index"),
        )
    if _missing("register_tree"):
        op.create_table(
            "register_tree",
            sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("size", sa.BigInteger(), nullable=False),
            sa.Column("root", sa.LargeBinary(), nullable=False),
            sa.Column("frontier", sa.LargeBinary(), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )


def downgrade() -> None:
    # Below the baseline there is no schema, only lost rows: cagnet has no downgrade (docs/migrations.md).
    raise RuntimeError("revision 0001 is the baseline: downgrading it would drop every table and its rows")
