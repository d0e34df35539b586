"""The web admin's logins, kept server-side: a cookie carries a signed random
id, the table says whose it is and when it was last used. Logging out or
staying idle past `idle` removes the entry, so a copy of the cookie replayed
later is refused even though its signature is still good."""

from __future__ import annotations

import secrets
from collections import OrderedDict

from itsdangerous import BadSignature, Signer

#: Logins kept at most (the oldest are dropped first).
MAX_SESSIONS = 1000


class AdminSessions:
    def __init__(self, secret: str, idle: float) -> None:
        self._signer = Signer(secret, salt="admin_web session")
        self.idle = idle
        self._table: OrderedDict[str, tuple[str, float]] = OrderedDict()  # id -> (jid, last use)

    def open(self, jid: str, now: float) -> tuple[str, str]:
        """A new login of `jid`: (its id, the cookie value)."""
        session_id = secrets.token_urlsafe(24)
        self._table[session_id] = (jid, now)
        while len(self._table) > MAX_SESSIONS:
            self._table.popitem(last=False)
        return session_id, self._signer.sign(session_id).decode("ascii")

    def resume(self, cookie: str | None, now: float) -> tuple[str, str] | None:
        """(id, jid) of the login a cookie names, touched; None when unsigned,
        unknown, logged out or idle too long."""
        if not cookie:
            return None
        try:
            session_id = self._signer.unsign(cookie).decode("ascii")
        except (BadSignature, UnicodeDecodeError):
            return None
        entry = self._table.get(session_id)
        if entry is None:
            return None
        jid, last = entry
        if now - last > self.idle:
            del self._table[session_id]
            return None
        self._table[session_id] = (jid, now)
        self._table.move_to_end(session_id)
        return session_id, jid

    def close(self, session_id: str) -> None:
        self._table.pop(session_id, None)
