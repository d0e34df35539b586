"""Archive: an index for pages by `with`, (host, username, store, with, when, id).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

With the (when, id, with) index alone, a page by `with` scans the user's
archive in time order and keeps the items exchanged with that JID: about ten
index entries read per item kept when a user talks to ten contacts, and the
count reads all of the user's. This index seeks the JID's items directly, at
the cost of one more index written per archived message.

Written by hand and frozen: it does not import storage.models.
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

MYSQL_PREFIX = 255
USER_STORE = ("host", "username", "store")
PREFIX = dict.fromkeys(USER_STORE, MYSQL_PREFIX)


def upgrade() -> None:
    op.create_index("ix_archive_host_username_store_with_when_id", "archive",
                    [*USER_STORE, "with", "when", "id"],
                    mysql_length={**PREFIX, "with": MYSQL_PREFIX})


def downgrade() -> None:
    op.drop_index("ix_archive_host_username_store_with_when_id", "archive")
