"""Offline message storage (XEP-0160): messages kept for users with no available resource."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, bindparam, delete, exists, func, insert, select

from storage.db import Database
from storage.models import offline_messages
from xmpp.jid import nodeprep

# Bound on bound parameters per DELETE (SQLite and drivers have limits).
DELETE_BATCH = 500
# Whether a user has anything queued: asked at every initial presence, and
# mostly answered "no", on a pooled DB-API connection (Database.fetch_rows).
_ANY_QUEUED = select(exists().where(offline_messages.c.host == bindparam("host"),
                                    offline_messages.c.username == bindparam("username")))


class OfflineStore:
    """Per-user queues of serialized message stanzas with the time they were stored."""

    def __init__(self, db: Database, max_per_user: int = 0) -> None:
        self._db = db
        self._max_per_user = max_per_user  # 0: unlimited

    def store(self, host: str, username: str, stanza_xml: str, stamp: datetime) -> bool:
        """Queue a message; False (nothing stored) when the user's queue is full.

        `stamp` must be timezone-aware (ValueError otherwise).
        """
        if stamp.tzinfo is None:
            raise ValueError("offline message stamp without a timezone")
        user = nodeprep(username)
        with self._db.transaction() as connection:
            if self._max_per_user and self._count(connection, host, user) >= self._max_per_user:
                return False
            connection.execute(insert(offline_messages).values(
                host=host, username=user, stanza=stanza_xml, stamp=stamp))
            return True

    def pop_all(self, host: str, username: str) -> list[tuple[str, datetime]]:
        """Take every queued message, oldest first, removing exactly those returned."""
        user = nodeprep(username)
        if not self._db.fetch_rows(_ANY_QUEUED, {"host": host, "username": user})[0][0]:
            # An empty queue needs no transaction; a message stored after this
            # read is one the locked read below could have missed as well.
            return []
        table = offline_messages
        with self._db.transaction() as connection:
            # FOR UPDATE (where the backend has it): two logins popping at
            # once must not both deliver the same messages.
            rows = connection.execute(
                select(table.c.id, table.c.stanza, table.c.stamp)
                .where(table.c.host == host, table.c.username == user)
                .order_by(table.c.stamp, table.c.id)
                .with_for_update()).all()
            ids = [row.id for row in rows]
            # By id, not by user: a message that arrived meanwhile is not lost.
            for start in range(0, len(ids), DELETE_BATCH):
                connection.execute(delete(table).where(
                    table.c.id.in_(ids[start:start + DELETE_BATCH])))
            return [(row.stanza, row.stamp) for row in rows]

    def count(self, host: str, username: str) -> int:
        """How many messages are queued for the user."""
        with self._db.engine.connect() as connection:
            return self._count(connection, host, nodeprep(username))

    @staticmethod
    def _count(connection: Connection, host: str, user: str) -> int:
        return connection.scalar(select(func.count()).select_from(offline_messages).where(
            offline_messages.c.host == host, offline_messages.c.username == user)) or 0
