"""Accounts (SCRAM material), rosters with groups and pending subscriptions, offline messages.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

Written by hand and frozen: it must not import storage.models, whose later
shape belongs to later revisions.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MYSQL_PREFIX = 255
STANZA_TEXT = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql")
UTC_DATETIME = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql")


def _user_columns() -> list[sa.Column]:
    return [sa.Column("host", sa.String(1023), nullable=False),
            sa.Column("username", sa.String(1023), nullable=False)]


def _user_index(table: str, *extra: str, unique: bool) -> None:
    columns = ["host", "username", *extra]
    name = f"{'uq' if unique else 'ix'}_{table}_{'_'.join(columns)}"
    op.create_index(name, table, columns, unique=unique,
                    mysql_length=dict.fromkeys(columns, MYSQL_PREFIX))


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.Integer(), nullable=False),
        *_user_columns(),
        sa.Column("salt", sa.LargeBinary(), nullable=False),
        sa.Column("iterations", sa.Integer(), nullable=False),
        sa.Column("sha1_stored_key", sa.LargeBinary(), nullable=False),
        sa.Column("sha1_server_key", sa.LargeBinary(), nullable=False),
        sa.Column("sha256_stored_key", sa.LargeBinary(), nullable=False),
        sa.Column("sha256_server_key", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
    )
    _user_index("accounts", unique=True)

    op.create_table(
        "roster_items",
        sa.Column("id", sa.Integer(), nullable=False),
        *_user_columns(),
        sa.Column("contact", sa.String(2047), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("subscription", sa.String(4), nullable=False),
        sa.Column("ask", sa.Boolean(), nullable=False),
        sa.CheckConstraint("subscription IN ('none', 'to', 'from', 'both')",
                           name=op.f("ck_roster_items_subscription")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roster_items")),
    )
    _user_index("roster_items", "contact", unique=True)

    op.create_table(
        "roster_groups",
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(1023).with_variant(sa.String(255), "mysql"), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["roster_items.id"], ondelete="CASCADE",
                                name=op.f("fk_roster_groups_item_id_roster_items")),
        sa.PrimaryKeyConstraint("item_id", "name", name=op.f("pk_roster_groups")),
    )

    op.create_table(
        "roster_pending",
        sa.Column("id", sa.Integer(), nullable=False),
        *_user_columns(),
        sa.Column("contact", sa.String(2047), nullable=False),
        sa.Column("stanza", STANZA_TEXT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roster_pending")),
    )
    _user_index("roster_pending", "contact", unique=True)

    op.create_table(
        "roster_versions",
        sa.Column("id", sa.Integer(), nullable=False),
        *_user_columns(),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_roster_versions")),
    )
    _user_index("roster_versions", unique=True)

    op.create_table(
        "offline_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        *_user_columns(),
        sa.Column("stanza", STANZA_TEXT, nullable=False),
        sa.Column("stamp", UTC_DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offline_messages")),
    )
    _user_index("offline_messages", unique=False)


def downgrade() -> None:
    for table in ("offline_messages", "roster_versions", "roster_pending", "roster_groups",
                  "roster_items", "accounts"):
        op.drop_table(table)
