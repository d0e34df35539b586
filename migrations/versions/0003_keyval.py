"""Module keyval and map stores (Prosody's `prosody` table): one row per user, store and key.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

Written by hand and frozen: it does not import storage.models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

MYSQL_PREFIX = 255


def upgrade() -> None:
    op.create_table(
        "keyval",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("host", sa.String(1023), nullable=False),
        sa.Column("username", sa.String(1023), nullable=False),
        sa.Column("store", sa.String(255), nullable=False),
        sa.Column("key", sa.String(1023), nullable=False),
        sa.Column("type", sa.String(8), nullable=False),
        sa.Column("value", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_keyval")),
    )
    op.create_index("uq_keyval_host_username_store_key", "keyval",
                    ["host", "username", "store", "key"], unique=True,
                    mysql_length=dict.fromkeys(("host", "username", "store", "key"),
                                               MYSQL_PREFIX))


def downgrade() -> None:
    op.drop_table("keyval")
