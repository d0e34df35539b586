"""Registration by invite (Prosody's mod_invites_register, XEP-0401): a client
hands its token over with `<preauth xmlns='urn:xmpp:pars:0' token=.../>` on
the unauthenticated stream, then registers in-band (XEP-0077); a subscription
request carrying a user's contact invite is approved at once (XEP-0379). With
`registration_invite_only` (default true) in-band registration needs such a
token, and is open with one even when `allow_registration` is false. A
contact invite's new account and its inviter become mutual contacts; an
account invite's roles (`app.py invite generate --admin`) are the new
account's."""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import SubElement

from storage.roster import RosterItem
from xmpp.errors import StanzaError
from xmpp.jid import JID, InvalidJID, parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.modules import presence, roster
from xmpp.modules.adhoc import ROLES_STORE
from xmpp.modules.invites import Invite, invites_for
from xmpp.stanza import make_iq_result

PARS = "urn:xmpp:pars:0"
FEATURES = ("urn:xmpp:invite", "urn:xmpp:ibr-token:0")


class _State:
    """The invite a stream validated before registering."""

    invite: Invite | None = None


def setup(m: ModuleContext) -> None:
    invites = invites_for(m)
    m.depends("register")
    invite_only = m.config.get_bool("registration_invite_only", True)
    require_encryption = m.config.get_bool("c2s_require_encryption", True)

    def validated(event: Any) -> Invite | None:
        """The invite of a registration: the web sign-up's, or the stream's preauth."""
        if getattr(event, "invite", None) is not None:
            return event.invite
        session = event.session
        return m.session_data(session, _State).invite if session is not None else None

    def features(event: Any) -> None:
        session = event.origin
        if session.authenticated or (require_encryption and not session.secure):
            return
        for namespace in FEATURES:
            SubElement(event.features, f"{{{namespace}}}register")

    def preauth(event: Any) -> bool:
        stanza = event.stanza
        if stanza.get("type") != "set":
            m.reply(event.origin, StanzaError("bad-request").to_reply(stanza))
            return True
        invite, _why = invites.get(stanza[0].get("token"))
        if invite is None:
            m.reply(event.origin, StanzaError(
                "forbidden", "The invite token is invalid or expired").to_reply(stanza))
            return True
        m.session_data(event.origin, _State).invite = invite
        m.reply(event.origin, make_iq_result(stanza))
        return True

    def registering(event: Any) -> None:
        invite = validated(event)
        if invite is None:
            if invite_only:
                event.allowed = False
                event.reason = "Registration on this server is through invitation only"
            return
        reserved = invite.username if invite.type == "register" else None
        if reserved and reserved != event.username:
            event.allowed = False
            event.reason = f"This invite is for the username {reserved}"
        if invite.additional_data and invite.additional_data.get("allow_reset"):
            event.allow_reset = invite.additional_data["allow_reset"]

    def registered(event: Any) -> None:
        invite = validated(event)
        if invite is None:
            return
        invites.use(invite)
        if event.session is not None:
            m.session_data(event.session, _State).invite = None
        roles = (invite.additional_data or {}).get("roles")
        if isinstance(roles, dict) and roles:  # Prosody 0.12: the invite's role set
            m.open_store(ROLES_STORE).set(event.username, roles)
        if invite.inviter:
            befriend(m, invite.inviter, event.username)

    def password_reset(event: Any) -> None:
        invite = validated(event)
        if invite is not None:
            invites.use(invite)

    def preapproved(event: Any) -> bool | None:
        """XEP-0379: a subscription request carrying the user's contact invite
        is approved at once, and the user asks back (a mutual subscription)."""
        stanza = event.stanza
        token_holder = stanza.find(f"{{{PARS}}}preauth")
        if stanza.get("type") != "subscribe" or token_holder is None:
            return None
        invite, why = invites.get(token_holder.get("token"), event.to.local)
        if invite is None:
            m.log.debug("Subscription with an unusable invite token: %s", why)
            return None
        try:
            contact = parse_jid(stanza.get("from", "")).bare
        except InvalidJID:
            return None
        user = event.to.bare
        presence.inbound_subscription(m, stanza, user, contact, "subscribe")
        presence.outbound_subscription(m, presence.presence("subscribed", str(user), str(contact)),
                                       user, "subscribed")
        invites.use(invite)
        state, _item = presence.load_state(m, user, str(contact))
        if not state.has_to and not state.ask:
            presence.outbound_subscription(
                m, presence.presence("subscribe", str(user), str(contact)), user, "subscribe")
        return True

    m.hook("presence/bare", preapproved, 1)
    m.hook("registration-available", lambda event: invite_only)
    m.hook("stream-features", features)
    m.hook(f"stanza/iq/{PARS}:preauth", preauth)
    m.hook("user-registering", registering)
    m.hook("user-registered", registered)
    m.hook("user-password-reset", password_reset)


def befriend(m: ModuleContext, first: str, second: str) -> None:
    """A mutual subscription between two local users, pushed to their rosters."""
    rosters = m.typed_store("rosters")
    host = m.host.name
    for user, contact in ((first, second), (second, first)):
        contact_jid = f"{contact}@{host}"
        with rosters.contact_for_update(host, user, contact_jid) as record:
            item = record.item or RosterItem(contact_jid)
            item.subscription, item.ask = "both", False
            record.item = item
        roster.push(m, JID(user, host, None), item, record.version)
