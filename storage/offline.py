"""Offline message storage (XEP-0160): messages kept for users with no available resource."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import bindparam, delete, exists, func, select
from sqlalchemy.orm import Session

from storage.db import Database
from storage.models import OfflineMessage
from xmpp.jid import nodeprep

# Bound on bound parameters per DELETE (SQLite and drivers have limits).
DELETE_BATCH = 500
# Whether a user has anything queued: asked at every initial presence, and
# mostly answered "no", on a pooled DB-API connection (Database.fetch_rows).
_ANY_QUEUED = select(exists().where(
    OfflineMessage.host == bindparam("host"), OfflineMessage.username == bindparam("username")))


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
        with self._db.session() as session:
            if self._max_per_user and self._count(session, host, user) >= self._max_per_user:
                return False
            session.add(OfflineMessage(host=host, username=user, stanza=stanza_xml, stamp=stamp))
            return True

    def pop_all(self, host: str, username: str) -> list[tuple[str, datetime]]:
        """Take every queued message, oldest first, removing exactly those returned."""
        user = nodeprep(username)
        if not self._db.fetch_rows(_ANY_QUEUED, {"host": host, "username": user})[0][0]:
            # An empty queue needs no transaction; a message stored after this
            # read is one the locked read below could have missed as well.
            return []
        with self._db.session() as session:
            # FOR UPDATE (where the backend has it): two logins popping at
            # once must not both deliver the same messages.
            rows = session.execute(
                select(OfflineMessage.id, OfflineMessage.stanza, OfflineMessage.stamp)
                .where(OfflineMessage.host == host, OfflineMessage.username == user)
                .order_by(OfflineMessage.stamp, OfflineMessage.id)
                .with_for_update()).all()
            ids = [row.id for row in rows]
            # By id, not by user: a message that arrived meanwhile is not lost.
            for start in range(0, len(ids), DELETE_BATCH):
                session.execute(delete(OfflineMessage).where(
                    OfflineMessage.id.in_(ids[start:start + DELETE_BATCH])))
            return [(row.stanza, row.stamp) for row in rows]

    def count(self, host: str, username: str) -> int:
        """How many messages are queued for the user."""
        with self._db.session() as session:
            return self._count(session, host, nodeprep(username))

    @staticmethod
    def _count(session: Session, host: str, user: str) -> int:
        return session.scalar(select(func.count()).select_from(OfflineMessage).where(
            OfflineMessage.host == host, OfflineMessage.username == user)) or 0
