"""Quarterly returns per service: KPI 1 (long-term services) and occupancy.

Issue 21 asks for KPI 1 (service users maintaining independent living) and utilisation (units
occupied, voids, waiting lists, referrals refused); neither can be worked out from client records,
so a node imports them as the per-service quarterly returns SP teams already collected
(`node.returns`, `node.imports.returns`). Two new tables, one row per service and quarter; no
existing table changes.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kpi1_return",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("quarter_start", sa.Date(), nullable=False),
        sa.Column("service_users", sa.Integer(), nullable=False),
        sa.Column("maintaining", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("maintaining >= 0 AND maintaining <= service_users", name="ck_kpi1_return_maintaining"),
        sa.CheckConstraint("service_users >= 0", name="ck_kpi1_return_users"),
        sa.ForeignKeyConstraint(["service_id"], ["service.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("service_id", "quarter_start", name="uq_kpi1_return_quarter"),
    )
    op.create_index("ix_kpi1_return_quarter_start", "kpi1_return", ["quarter_start"], unique=False)
    op.create_index("ix_kpi1_return_service_id", "kpi1_return", ["service_id"], unique=False)
    op.create_table(
        "occupancy_return",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("quarter_start", sa.Date(), nullable=False),
        sa.Column("units_occupied", sa.Integer(), nullable=False),
        sa.Column("voids", sa.Integer(), nullable=False),
        sa.Column("waiting_list", sa.Integer(), nullable=False),
        sa.Column("referrals_refused", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "units_occupied >= 0 AND voids >= 0 AND waiting_list >= 0 AND referrals_refused >= 0",
            name="ck_occupancy_return_counts",
        ),
        sa.ForeignKeyConstraint(["service_id"], ["service.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("service_id", "quarter_start", name="uq_occupancy_return_quarter"),
    )
    op.create_index("ix_occupancy_return_quarter_start", "occupancy_return", ["quarter_start"], unique=False)
    op.create_index("ix_occupancy_return_service_id", "occupancy_return", ["service_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_occupancy_return_service_id", table_name="occupancy_return")
    op.drop_index("ix_occupancy_return_quarter_start", table_name="occupancy_return")
    op.drop_table("occupancy_return")
    op.drop_index("ix_kpi1_return_service_id", table_name="kpi1_return")
    op.drop_index("ix_kpi1_return_quarter_start", table_name="kpi1_return")
    op.drop_table("kpi1_return")
