"""XEP-0077 In-Band Registration: new accounts, password change, removal (mod_register)."""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, SubElement

from storage.accounts import AccountExists
from xmpp import namespaces as ns
from xmpp.errors import StanzaError, StreamError
from xmpp.hosts import IqRequest, ModuleContext
from xmpp.jid import InvalidJID, nodeprep
from xmpp.stanza import make_iq_result

QUERY = f"{{{ns.REGISTER}}}query"


def q(name: str) -> str:
    return f"{{{ns.REGISTER}}}{name}"


class Registration:
    """Registration policy of one host, with the per-address pacing it keeps."""

    def __init__(self, m: ModuleContext) -> None:
        self.m = m
        self.allowed = m.config.get_bool("allow_registration", False)
        self.min_interval = m.config.get_number("min_seconds_between_registrations", 0, min=0)
        self.last_by_address: dict[str, float] = {}

    def features(self, session: Any, features: Element) -> bool:
        if self.allowed and self.secure_enough(session):
            SubElement(features, f"{{{ns.REGISTER_FEATURE}}}register")
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
        if not self.allowed:
            raise StanzaError("service-unavailable")
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

    def register(self, request: IqRequest, session: Any) -> None:
        if not self.allowed:
            raise StanzaError("not-allowed", "Registration is disabled")
        if session is None or not self.secure_enough(session):
            raise StanzaError("policy-violation", "Encryption is required")
        username, password = self.credentials(request.payload)
        address = session.transport.peer[0]
        now = self.m.server.now()
        last = self.last_by_address.get(address)
        if self.min_interval and last is not None and now - last < self.min_interval:
            raise StanzaError("not-acceptable", "Please try again in a little while",
                              error_type="wait")
        try:
            self.m.server.accounts.create(request.host.name, username, password)
        except AccountExists as error:
            raise StanzaError("conflict", "The username is already taken") from error
        self.last_by_address[address] = now
        self.m.log.info("Registered %s@%s from %s", username, request.host.name, address)

    def change(self, request: IqRequest, session: Any) -> bool | None:
        host = request.host.name
        if request.payload.find(q("remove")) is not None:
            self.m.server.accounts.delete(host, session.username)
            self.m.server.router.reply(session, make_iq_result(request.stanza))
            session.close(StreamError("not-authorized", "Account removed"))
            return True
        username, password = self.credentials(request.payload)
        if username != session.username:
            raise StanzaError("not-allowed", "You can only change your own password")
        self.m.server.accounts.set_password(host, username, password)
        return None

    @staticmethod
    def credentials(query: Element) -> tuple[str, str]:
        username = (query.findtext(q("username")) or "").strip()
        password = query.findtext(q("password")) or ""
        if not username or not password:
            raise StanzaError("not-acceptable", "Username and password are required")
        try:
            return nodeprep(username), password
        except InvalidJID as error:
            raise StanzaError("jid-malformed", "Invalid username") from error


def setup(m: ModuleContext) -> None:
    registration = Registration(m)
    m.add_feature(ns.REGISTER)
    m.hook("stream-features/pre-auth", registration.features)
    for target in ("host", "self"):
        m.hook_iq("get", QUERY, registration.get, target=target)
        m.hook_iq("set", QUERY, registration.set, target=target)
