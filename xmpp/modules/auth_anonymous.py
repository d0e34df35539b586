"""`authentication = "anonymous"` (Prosody's mod_auth_anonymous): SASL ANONYMOUS
(RFC 4505) is the host's only mechanism; each session gets a random node (a
UUID) and no account. Nothing of an anonymous user is kept once their last
session ends: their roster is emptied and `user-deleted` lets other modules drop
what they stored; offline storage never takes messages for them (they have no
account), so those bounce.

allow_anonymous_s2s (false, as Prosody): whether anonymous users may send
stanzas to other servers; when not, such a stanza is bounced with
service-unavailable.
"""

from __future__ import annotations

from typing import Any

from xmpp.errors import StanzaError
from xmpp.moduleapi import ModuleContext
from xmpp.sasl import ANONYMOUS


def setup(m: ModuleContext) -> None:
    def mechanisms(event: Any) -> None:
        event.mechanisms[:] = [ANONYMOUS]

    def session_ended(event: Any) -> None:
        session = event.session
        if session.auth_mechanism == ANONYMOUS and not m.sessions(session.jid.bare):
            forget(m, session.username)

    def to_remote(event: Any) -> bool:
        m.bounce(event.stanza, event.origin, StanzaError(
            "service-unavailable", "Anonymous users cannot reach other servers"))
        return True

    m.hook("sasl-mechanisms", mechanisms)
    m.hook("resource-unbind", session_ended)
    if not m.config.get_bool("allow_anonymous_s2s", False):
        m.hook("route/remote", to_remote, 300)


def forget(m: ModuleContext, username: str) -> None:
    """Drop what the server stored for an anonymous user."""
    rosters = m.typed_store("rosters")
    for contact in rosters.get_roster(m.host.name, username):
        rosters.remove_item(m.host.name, username, contact)
    for contact in rosters.pending_in(m.host.name, username):
        rosters.clear_pending_in(m.host.name, username, contact)
    m.users.delete(username)  # no account to remove; fires user-deleted for the rest
