"""Uploads of XEP-0363 HTTP file sharing: one row per slot, with its file's metadata.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

Written by hand and frozen, like 0001: it does not import storage.models.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MYSQL_PREFIX = 255
UTC_DATETIME = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql")


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("slot", sa.String(64), nullable=False),
        sa.Column("host", sa.String(1023), nullable=False),
        sa.Column("uploader", sa.String(2047), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("created", UTC_DATETIME, nullable=False),
        sa.Column("completed", UTC_DATETIME, nullable=True),
        sa.Column("path", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
        sa.UniqueConstraint("slot", name=op.f("uq_uploads_slot")),
    )
    op.create_index("ix_uploads_host_uploader_created", "uploads",
                    ["host", "uploader", "created"],
                    mysql_length={"host": MYSQL_PREFIX, "uploader": MYSQL_PREFIX})
    op.create_index("ix_uploads_host_created", "uploads", ["host", "created"],
                    mysql_length={"host": MYSQL_PREFIX})


def downgrade() -> None:
    op.drop_table("uploads")
