"""Archive: one (time, id) index that also holds `with`, instead of two.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Every index is written on every archived message; the separate `with` index
doubled that cost. Pages by `with` now scan the user's (when, id) range in the
index, reading `with` from it and no table row they do not keep.

Written by hand and frozen: it does not import storage.models.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

MYSQL_PREFIX = 255
USER_STORE = ("host", "username", "store")
PREFIX = dict.fromkeys(USER_STORE, MYSQL_PREFIX)


def upgrade() -> None:
    op.create_index("ix_archive_host_username_store_when_id_with", "archive",
                    [*USER_STORE, "when", "id", "with"],
                    mysql_length={**PREFIX, "with": MYSQL_PREFIX})
    op.drop_index("ix_archive_host_username_store_with_when_id", "archive")
    op.drop_index("ix_archive_host_username_store_when_id", "archive")


def downgrade() -> None:
    op.create_index("ix_archive_host_username_store_when_id", "archive",
                    [*USER_STORE, "when", "id"], mysql_length=PREFIX)
    op.create_index("ix_archive_host_username_store_with_when_id", "archive",
                    [*USER_STORE, "with", "when", "id"],
                    mysql_length={**PREFIX, "with": MYSQL_PREFIX})
    op.drop_index("ix_archive_host_username_store_when_id_with", "archive")
