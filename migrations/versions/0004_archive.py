"""Module archive stores (Prosody's `prosodyarchive` table): timestamped items per user.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

Written by hand and frozen: it does not import storage.models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

MYSQL_PREFIX = 255
UTC_DATETIME = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql")
USER_STORE = ("host", "username", "store")


def upgrade() -> None:
    op.create_table(
        "archive",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("host", sa.String(1023), nullable=False),
        sa.Column("username", sa.String(1023), nullable=False),
        sa.Column("store", sa.String(255), nullable=False),
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("when", UTC_DATETIME, nullable=False),
        sa.Column("with", sa.String(3071), nullable=False),
        sa.Column("type", sa.String(8), nullable=False),
        sa.Column("value", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive")),
    )
    prefix = dict.fromkeys(USER_STORE, MYSQL_PREFIX)
    op.create_index("uq_archive_host_username_store_key", "archive", [*USER_STORE, "key"],
                    unique=True, mysql_length=prefix)
    # Pages are in ("when", id) order: each index ends with both, so a page of
    # one user's archive (by time, by `with`, after or before an item) is one
    # index range scan with no sort.
    op.create_index("ix_archive_host_username_store_when_id", "archive",
                    [*USER_STORE, "when", "id"], mysql_length=prefix)
    op.create_index("ix_archive_host_username_store_with_when_id", "archive",
                    [*USER_STORE, "with", "when", "id"],
                    mysql_length={**prefix, "with": MYSQL_PREFIX})


def downgrade() -> None:
    op.drop_table("archive")
