"""The web admin's logins, kept server-side: a cookie carries a signed random
id, the table says whose it is and when it was last used. Logging out or
staying idle past `idle` removes the entry, so a copy of the cookie replayed
later is refused even though its signature is still good.

The table is a map store of the host (key: the login's id), so a logout in one
worker process is honoured by the others and a restart keeps admins logged in
until their idle expiry. A request reads one row by its unique index; the row
is rewritten only when its last use is older than `idle / TOUCHES` (so a login
ends between 3/4 and all of `idle` after its last use), not on every page."""

from __future__ import annotations

import secrets
from typing import Any

from itsdangerous import BadSignature, Signer

#: Logins kept at most (the least recently used are dropped first).
MAX_SESSIONS = 1000
#: How many times per idle period a login in use is touched at most.
TOUCHES = 4


class AdminSessions:
    def __init__(self, secret: str, idle: float, store: Any) -> None:
        """`store`: a map store (get, set, get_all) for the host's rows (user None)."""
        self._signer = Signer(secret, salt="admin_web session")
        self.idle = idle
        self._store = store

    def open(self, jid: str, now: float) -> tuple[str, str]:
        """A new login of `jid`: (its id, the cookie value)."""
        session_id = secrets.token_urlsafe(24)
        self._store.set(None, session_id, {"jid": jid, "last": now})
        self.purge(now)
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
        entry = self._store.get(None, session_id)
        if not isinstance(entry, dict):
            return None
        jid, last = entry.get("jid"), entry.get("last")
        if not isinstance(jid, str) or not isinstance(last, int | float) \
                or now - last > self.idle:
            self.close(session_id)
            return None
        if now - last >= self.idle / TOUCHES:
            self._store.set(None, session_id, {"jid": jid, "last": now})
        return session_id, jid

    def close(self, session_id: str) -> None:
        self._store.set(None, session_id, None)

    def purge(self, now: float) -> None:
        """Drop the logins idle too long, then the least recently used beyond
        MAX_SESSIONS (at a login, and now and then from a timer)."""
        entries = self._store.get_all(None)
        live = []
        for session_id, entry in entries.items():
            last = entry.get("last") if isinstance(entry, dict) else None
            if isinstance(last, int | float) and now - last <= self.idle:
                live.append((last, session_id))
            else:
                self.close(session_id)
        live.sort(key=lambda item: item[0])  # stable: equal times keep the store's order
        for _last, session_id in live[:max(0, len(live) - MAX_SESSIONS)]:
            self.close(session_id)
