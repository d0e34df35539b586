"""Roster items keep a subscription pre-approval (RFC 6121 3.4, the `approved` flag).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

Written by hand and frozen: it does not import storage.models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The default fills the rows already there: nothing was pre-approved before.
    with op.batch_alter_table("roster_items") as batch:
        batch.add_column(sa.Column("approved", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("roster_items") as batch:
        batch.drop_column("approved")
