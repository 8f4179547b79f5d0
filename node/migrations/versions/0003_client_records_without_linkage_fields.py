"""Let a client record have no person: a return without surname, first initial or date of birth.

Many authorities' client record returns lack one of the linkage fields; such a record is imported
and counted in every figure, and stored with `person` NULL so that it is never linked (issue 20).
On SQLite the column's NOT NULL goes by Alembic's batch mode (the table is copied).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("client_record", schema=None) as batch_op:
        batch_op.alter_column("person", existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    # Records imported without linkage fields have no person to restore: they go with the column.
    op.execute("DELETE FROM outcome WHERE client_record_id IN (SELECT id FROM client_record WHERE person IS NULL)")
    op.execute("DELETE FROM client_record WHERE person IS NULL")
    with op.batch_alter_table("client_record", schema=None) as batch_op:
        batch_op.alter_column("person", existing_type=sa.LargeBinary(), nullable=False)
