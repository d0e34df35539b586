"""XEP-0077 In-Band Registration: new accounts, password change, removal (mod_register)."""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, SubElement

from storage.accounts import AccountExists
from xmpp import namespaces as ns
from xmpp.auth_throttle import wait_text
from xmpp.errors import StanzaError, StreamError
from xmpp.hosts import IqRequest
from xmpp.jid import InvalidJID, nodeprep, parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.netmatch import AddressMatcher
from xmpp.recent_events import recent_events
from xmpp.stanza import make_iq_result

QUERY = f"{{{ns.REGISTER}}}query"
# Prosody's registration_allowlist default: local tools may register freely.
DEFAULT_ALLOWLIST = ("127.0.0.1", "::1")


def q(name: str) -> str:
    return f"{{{ns.REGISTER}}}{name}"


class Registration:
    """Registration policy of one host, with the per-address pacing it keeps."""

    def __init__(self, m: ModuleContext) -> None:
        self.m = m
        self.allowed = m.config.get_bool("allow_registration", False)
        self.min_interval = m.config.get_number("min_seconds_between_registrations", 0, min=0)
        self.allowlist = AddressMatcher(m.config.get_list(
            "registration_allowlist",
            m.config.get_list("registration_whitelist", list(DEFAULT_ALLOWLIST))))
        self.registrations = recent_events(m.config, f"register:{m.host.name}")

    def open_to(self, session: Any) -> bool:
        """Whether the stream may register: `allow_registration`, or a module
        (mod_invites_register) answers `registration-available` for it."""
        return self.allowed or bool(self.m.fire("registration-available", session=session))

    def features(self, event: Any) -> bool:
        session = event.origin
        if not session.authenticated and self.open_to(session) and self.secure_enough(session):
            SubElement(event.features, f"{{{ns.REGISTER_FEATURE}}}register")
        return False

    def secure_enough(self, session: Any) -> bool:
        return session.secure or not self.m.config.get_bool("c2s_require_encryption", True)

    def get(self, request: IqRequest) -> Element:
        session = request.origin
        query = Element(QUERY)
        if session is not None and session.username:
            SubElement(query, q("registered"))
            SubElement(query, q("username")).text = session.username
            SubElement(query, q("password"))
            return query
        self.check_stream(session)
        SubElement(query, q("instructions")).text = (
            "Choose a username and password for use with this service.")
        SubElement(query, q("username"))
        SubElement(query, q("password"))
        return query

    def set(self, request: IqRequest) -> bool | None:
        session = request.origin
        if session is not None and session.username:
            return self.change(request, session)
        return self.register(request, session)

    def check_stream(self, session: Any) -> None:
        """Whether this unauthenticated stream may register at all."""
        if session is None or not self.open_to(session):
            # As in Prosody, where mod_register_ibr is not even loaded then.
            raise StanzaError("service-unavailable")
        if not self.secure_enough(session):
            raise StanzaError("policy-violation", "Encryption is required")

    def register(self, request: IqRequest, session: Any) -> None:
        self.check_stream(session)
        if request.payload.find(q("remove")) is not None:
            raise StanzaError("registration-required")
        username, password = self.credentials(request.payload)
        self.create(username, password, session.transport.peer[0], session=session)

    def create(self, username: str, password: str, address: str, *, session: Any = None,
               invite: Any = None, source: str = "mod_register") -> None:
        """Create an account as in-band registration does, for IBR and the web
        sign-up alike (`invite`: one the caller has validated, mod_invites_register
        reads it): pacing per address, `user-registering`, then `user-registered`.
        Raises StanzaError (condition and text) when refused or taken."""
        host = self.m.host.name
        now = self.m.now()
        wait = self.wait_for(address, now)
        if wait > 0:
            # Prosody's condition and text, with the wait it leaves the client to guess.
            raise StanzaError("policy-violation", wait_text(
                "Too many registrations from this IP address recently", wait), error_type="wait")
        # Prosody's user-registering: a module may refuse (allowed = False, reason)
        # or let an invite reset an existing account's password (allow_reset).
        registering = self.m.fire_event("user-registering", username=username, host=host,
                                        session=session, invite=invite,
                                        allowed=True, reason=None, allow_reset=None)
        if not registering.allowed:
            # Prosody's answer when a module refuses.
            raise StanzaError("not-acceptable", registering.reason or "Registration refused")
        if registering.allow_reset == username and self.m.users.exists(username):
            self.m.users.set_password(username, password)
            self.m.fire("user-password-reset", username=username, session=session, invite=invite)
            self.m.log.info("Password of %s@%s reset by invite", username, host)
            return
        try:
            self.m.users.create(username, password)
        except AccountExists as error:
            raise StanzaError("conflict", "The username is already taken") from error
        self.m.fire("user-registered", username=username, host=host, ip=address,
                    session=session, invite=invite, source=source)
        if self.min_interval and address not in self.allowlist:
            self.registrations.add(address, now, keep=1, ttl=self.min_interval)
        self.m.log.info("Registered %s@%s from %s", username, host, address)

    def wait_for(self, address: str, now: float) -> float:
        """Seconds before `address` may register again (0.0: now), as
        min_seconds_between_registrations sets per address (allowlisted ones exempt)."""
        if not self.min_interval or address in self.allowlist:
            return 0.0
        last = self.registrations.times(address, now - self.min_interval)
        return last[-1] + self.min_interval - now if last else 0.0

    def change(self, request: IqRequest, session: Any) -> bool | None:
        host = request.host.name
        if request.payload.find(q("remove")) is not None:
            self.m.users.delete(session.username)
            self.m.reply(session, make_iq_result(request.stanza))
            self.disconnect(session, StreamError("not-authorized", "Account deleted"))
            self.m.log.info("%s@%s removed their account", session.username, host)
            return True
        try:
            username, password = self.credentials(request.payload)
        except StanzaError as error:
            raise StanzaError("bad-request", error.text) from error
        if username != session.username:
            raise StanzaError("bad-request", "You can only change your own password")
        self.m.users.set_password(username, password)
        self.m.reply(session, make_iq_result(request.stanza))
        self.disconnect(session, StreamError("reset", "Password changed"), keep=session)
        return True

    def disconnect(self, session: Any, error: StreamError, keep: Any = None) -> None:
        """Close the user's sessions (but `keep`), as Prosody does on deletion
        and password change; the requesting one last, after its reply."""
        bare = parse_jid(f"{session.username}@{self.m.host.name}")
        others = [s for s in self.m.sessions(bare).values() if s is not session]
        for other in [*others, session]:
            if other is not keep:
                other.close(error)

    @staticmethod
    def credentials(query: Element) -> tuple[str, str]:
        username = (query.findtext(q("username")) or "").strip()
        password = query.findtext(q("password")) or ""
        if not username or not password:
            raise StanzaError("not-acceptable", "Username and password are required")
        try:
            return nodeprep(username), password
        except InvalidJID as error:
            raise StanzaError("not-acceptable", "The requested username is invalid") from error


def registration_for(m: ModuleContext) -> Registration:
    """The registration policy of the module's host (loads mod_register there)."""
    m.depends("register")
    return m.shared(f"register:{m.host.name}", lambda: Registration(m))


def setup(m: ModuleContext) -> None:
    registration = registration_for(m)
    m.add_feature(ns.REGISTER)
    m.hook("stream-features", registration.features)
    for target in ("host", "self"):
        m.hook_iq("get", QUERY, registration.get, target=target)
        m.hook_iq("set", QUERY, registration.set, target=target)
