"""Services over time: a start and an end date on each service, and the versions a re-import replaced.

Until now a re-import overwrote a service, so the supply map could show only the store as it stood;
an SP team asks for supply "as at" a date and over financial years (the seed's "map of current
supply from 1 April 2005"). `service.start_date` and `service.end_date` are optional (a service
without them runs always, as every service did before), and `service_history` keeps each replaced
version of a service's supply fields with the last day it held (`node.imports.supply`). The new
columns are nullable, so they are added in place on both backends without rebuilding the table;
no row changes.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("service", sa.Column("start_date", sa.Date(), nullable=True))
    op.add_column("service", sa.Column("end_date", sa.Date(), nullable=True))
    op.create_table(
        "service_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("service_id", sa.Integer(), nullable=False),
        sa.Column("valid_until", sa.Date(), nullable=False),
        sa.Column("provider_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("district_code", sa.String(length=9), nullable=False),
        sa.Column("service_type", sa.String(length=40), nullable=False),
        sa.Column("client_group", sa.Integer(), nullable=False),
        sa.Column("units", sa.Integer(), nullable=False),
        sa.Column("unit_type", sa.String(length=20), nullable=False),
        sa.Column("contracted_hours", sa.Float(), nullable=True),
        sa.Column("designated", sa.Boolean(), nullable=False),
        sa.Column("term", sa.String(length=5), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("client_group BETWEEN 1 AND 21", name="ck_service_history_client_group"),
        sa.CheckConstraint("units >= 0", name="ck_service_history_units"),
        sa.ForeignKeyConstraint(["district_code"], ["district.code"]),
        sa.ForeignKeyConstraint(["provider_id"], ["provider.id"]),
        sa.ForeignKeyConstraint(["service_id"], ["service.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_service_history_service", "service_history", ["service_id", "valid_until"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_service_history_service", table_name="service_history")
    op.drop_table("service_history")
    with op.batch_alter_table("service") as batch_op:
        batch_op.drop_column("end_date")
        batch_op.drop_column("start_date")
