"""Accounts may lack SCRAM-SHA-256 material: Prosody 0.12 keeps SCRAM-SHA-1 only,
and accounts moved from it get SHA-256 at their first PLAIN login.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07

Written by hand and frozen: it does not import storage.models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = ("sha256_stored_key", "sha256_server_key")


def upgrade() -> None:
    # batch mode: SQLite cannot ALTER a column's nullability in place.
    with op.batch_alter_table("accounts") as batch:
        for column in COLUMNS:
            batch.alter_column(column, existing_type=sa.LargeBinary(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM accounts WHERE sha256_stored_key IS NULL")
    with op.batch_alter_table("accounts") as batch:
        for column in COLUMNS:
            batch.alter_column(column, existing_type=sa.LargeBinary(), nullable=False)
