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
    if _missing("authority"):
        op.create_table(
            "authority",
            sa.Column("code", sa.String(length=9), nullable=False),
            sa.Column("name", sa.String(length=100), nullable=False),
            sa.Column("population", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("code"),
        )
    if _missing("mandate_slot"):
        op.create_table(
            "mandate_slot",
            sa.Column("mandate_id", sa.String(length=32), nullable=False),
            sa.Column("slot", sa.Integer(), nullable=False),
            sa.Column("method", sa.String(length=80), nullable=False),
            sa.Column("kind", sa.String(length=40), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("mandate_id", "slot", "method"),
        )
    if _missing("provider"):
        op.create_table(
            "provider",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("provider_ref", sa.String(length=64), nullable=False),
            sa.Column("name", sa.String(length=200), nullable=False),
            sa.Column("national_provider_id", sa.String(length=32), nullable=True),
            sa.Column("charity_number", sa.String(length=16), nullable=True),
            sa.Column("company_number", sa.String(length=16), nullable=True),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("provider_ref"),
        )
    if _missing("release_ledger"):
        op.create_table(
            "release_ledger",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("kind", sa.String(length=40), nullable=False),
            sa.Column("query_signature", sa.Text(), nullable=False),
            sa.Column("dimensions", sa.Text(), nullable=False),
            sa.Column("cells", sa.Text(), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_release_ledger_kind", "release_ledger", ["kind"], unique=False)
    if _missing("released_answer"):
        op.create_table(
            "released_answer",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("kind", sa.String(length=40), nullable=False),
            sa.Column("query_signature", sa.Text(), nullable=False),
            sa.Column("policy_digest", sa.String(length=80), nullable=False),
            sa.Column("answer", sa.Text(), nullable=False),
            sa.Column("at", sa.DateTime(timezone=True), nullable=False),
            sa.PrimaryKeyConstraint("id"),
        )
        op.create_index("ix_released_answer_kind", "released_answer", ["kind"], unique=False)
        op.create_index("ix_released_answer_query_signature", "released_answer", ["query_signature"], unique=False)
    if _missing("district"):
        op.create_table(
            "district",
            sa.Column("code", sa.String(length=9), nullable=False),
            sa.Column("name", sa.String(length=100), nullable=False),
            sa.Column("authority_code", sa.String(length=9), nullable=False),
            sa.ForeignKeyConstraint(
                ["authority_code"],
                ["authority.code"],
            ),
            sa.PrimaryKeyConstraint("code"),
        )
        op.create_index("ix_district_authority_code", "district", ["authority_code"], unique=False)
    if _missing("service"):
        op.create_table(
            "service",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("service_ref", sa.String(length=64), nullable=False),
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
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.CheckConstraint("term IN ('short', 'long')", name="ck_service_term"),
            sa.CheckConstraint("client_group BETWEEN 1 AND 21", name="ck_service_client_group"),
            sa.CheckConstraint("contracted_hours IS NULL OR contracted_hours > 0", name="ck_service_hours"),
            sa.CheckConstraint("units >= 0", name="ck_service_units"),
            sa.ForeignKeyConstraint(
                ["district_code"],
                ["district.code"],
            ),
            sa.ForeignKeyConstraint(
                ["provider_id"],
                ["provider.id"],
            ),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("service_ref"),
        )
        op.create_index("ix_service_district_code", "service", ["district_code"], unique=False)
        op.create_index("ix_service_provider_id", "service", ["provider_id"], unique=False)
    if _missing("client_record"):
        op.create_table(
            "client_record",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("record_ref", sa.String(length=64), nullable=False),
            sa.Column("service_id", sa.Integer(), nullable=False),
            sa.Column("start_date", sa.Date(), nullable=False),
            sa.Column("client_group", sa.Integer(), nullable=False),
            sa.Column("secondary_groups", sa.String(length=64), nullable=False),
            sa.Column("age_band", sa.String(length=5), nullable=False),
            sa.Column("sex", sa.String(length=6), nullable=False),
            sa.Column("ethnicity", sa.String(length=1), nullable=False),
            sa.Column("economic_status", sa.String(length=30), nullable=False),
            sa.Column("referral_source", sa.String(length=30), nullable=False),
            sa.Column("accommodation_before", sa.String(length=40), nullable=False),
            sa.Column("previous_authority", sa.String(length=9), nullable=True),
            sa.Column("person", sa.LargeBinary(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.CheckConstraint("client_group BETWEEN 1 AND 21", name="ck_client_record_group"),
            sa.ForeignKeyConstraint(
                ["service_id"],
                ["service.id"],
            ),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("record_ref"),
        )
        op.create_index(
            "ix_client_record_movement",
            "client_record",
            ["start_date", "client_group", "previous_authority"],
            unique=False,
        )
        op.create_index("ix_client_record_person", "client_record", ["person"], unique=False)
        op.create_index("ix_client_record_service_id", "client_record", ["service_id"], unique=False)
    if _missing("contract"):
        op.create_table(
            "contract",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("contract_ref", sa.String(length=64), nullable=False),
            sa.Column("service_id", sa.Integer(), nullable=False),
            sa.Column("annual_value", sa.Numeric(precision=12, scale=2), nullable=False),
            sa.Column("start_date", sa.Date(), nullable=False),
            sa.Column("end_date", sa.Date(), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.CheckConstraint("annual_value >= 0", name="ck_contract_value"),
            sa.CheckConstraint("end_date >= start_date", name="ck_contract_dates"),
            sa.ForeignKeyConstraint(
                ["service_id"],
                ["service.id"],
            ),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("contract_ref"),
        )
        op.create_index("ix_contract_service_id", "contract", ["service_id"], unique=False)
    if _missing("outcome"):
        op.create_table(
            "outcome",
            sa.Column("id", sa.Integer(), nullable=False),
            sa.Column("client_record_id", sa.Integer(), nullable=False),
            sa.Column("end_date", sa.Date(), nullable=False),
            sa.Column("departure", sa.String(length=9), nullable=False),
            sa.Column("economic_wellbeing", sa.String(length=14), nullable=False),
            sa.Column("enjoy_and_achieve", sa.String(length=14), nullable=False),
            sa.Column("be_healthy", sa.String(length=14), nullable=False),
            sa.Column("stay_safe", sa.String(length=14), nullable=False),
            sa.Column("positive_contribution", sa.String(length=14), nullable=False),
            sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
            sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
            sa.CheckConstraint(
                "be_healthy IN ('identified', 'achieved', 'not-applicable')", name="ck_outcome_be_healthy"
            ),
            sa.CheckConstraint("departure IN ('planned', 'unplanned')", name="ck_outcome_departure"),
            sa.CheckConstraint(
                "economic_wellbeing IN ('identified', 'achieved', 'not-applicable')",
                name="ck_outcome_economic_wellbeing",
            ),
            sa.CheckConstraint(
                "enjoy_and_achieve IN ('identified', 'achieved', 'not-applicable')", name="ck_outcome_enjoy_and_achieve"
            ),
            sa.CheckConstraint(
                "positive_contribution IN ('identified', 'achieved', 'not-applicable')",
                name="ck_outcome_positive_contribution",
            ),
            sa.CheckConstraint(
                "stay_safe IN ('identified', 'achieved', 'not-applicable')", name="ck_outcome_stay_safe"
            ),
            sa.ForeignKeyConstraint(
                ["client_record_id"],
                ["client_record.id"],
            ),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("client_record_id"),
        )
        op.create_index("ix_outcome_end_date", "outcome", ["end_date"], unique=False)
    if _missing("seen_nonce"):
        op.create_table(
            "seen_nonce",
            sa.Column("nonce_digest", sa.String(length=64), nullable=False),
            sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
            sa.PrimaryKeyConstraint("nonce_digest"),
        )
        op.create_index("ix_seen_nonce_expires_at_ms", "seen_nonce", ["expires_at_ms"], unique=False)


def downgrade() -> None:
    # Below the baseline there is no schema, only lost rows: cagnet has no downgrade (docs/migrations.md).
    raise RuntimeError("revision 0001 is the baseline: downgrading it would drop every table and its rows")
