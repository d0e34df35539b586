"""XEP-0357 Push Notifications (Prosody's mod_cloud_notify): a client registers
an app server (`<enable jid node>` with optional publish options); while it is
away, each new message makes the server publish a summary to that app server
(a pubsub publish IQ from the host), which wakes the device.

Away means hibernating (stream management kept the session after its connection
was lost: pushes for what gets queued, batched over a second) or offline (a
message goes to offline storage: every registered app server of the user).

Options, with Prosody's defaults: push_notification_with_body (false: no body
text leaves the server), push_notification_with_sender (false),
push_notification_important_body ("New Message!": the body given for a message
worth showing when bodies are not sent), push_max_errors (16 errors from an app
server, other than type "wait", remove its registration), push_max_devices (5
registrations per user, the oldest dropped beyond).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.errors import StanzaError
from xmpp.hosts import IqRequest
from xmpp.jid import InvalidJID, parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.stanza import serialize
from xmpp.stream import parse_stanza

PUSH = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
FORM = f"{{{ns.DATA_FORMS}}}x"
MESSAGE = f"{{{ns.CLIENT}}}message"
BODY = f"{{{ns.CLIENT}}}body"
CARBON_MESSAGE = "{urn:xmpp:forward:0}forwarded/" + MESSAGE
ENCRYPTED = ("{eu.siacs.conversations.axolotl}encrypted", "{urn:xmpp:omemo:0}encrypted",
             "{jabber:x:encrypted}x", "{urn:xmpp:openpgp:0}openpgp")
BATCH_SECONDS = 1.0  # Prosody's: what is queued within a second makes one push


@dataclass
class PushSession:
    """The registration a session enabled, and what it queued since the last push."""

    identifier: str | None = None
    settings: dict[str, Any] | None = None
    batch: list[Element] = field(default_factory=list)
    timer: Any = None


def is_important(stanza: Element) -> bool:
    """Whether a push for `stanza` should show something (Prosody's rules)."""
    if stanza.tag != MESSAGE:
        return False
    direction = "in"
    for kind in ("received", "sent"):
        carbon = stanza.find(f"{{urn:xmpp:carbons:2}}{kind}/{CARBON_MESSAGE}")
        if carbon is not None:
            stanza, direction = carbon, ("out" if kind == "sent" else "in")
            break
    kind = stanza.get("type")
    if kind == "headline" or direction == "out":
        return False
    if any(stanza.find(tag) is not None for tag in ENCRYPTED):
        return True
    if kind == "groupchat" and stanza.findtext(f"{{{ns.CLIENT}}}subject"):
        return False
    return bool(stanza.findtext(BODY))


def setup(m: ModuleContext) -> None:
    CloudNotify(m)


class CloudNotify:
    def __init__(self, m: ModuleContext) -> None:
        self.m = m
        config = m.config
        self.with_body = config.get_bool("push_notification_with_body", False)
        self.with_sender = config.get_bool("push_notification_with_sender", False)
        self.important_body = config.get_str("push_notification_important_body",
                                             "New Message!")
        self.max_errors = config.get_int("push_max_errors", 16, min=1)
        self.max_devices = config.get_int("push_max_devices", 5, min=1)
        self.store = m.open_store("cloud_notify", "keyval")
        self.errors: dict[str, int] = {}  # identifier -> errors in a row
        m.hook("account-disco-info", self.on_account_disco)
        m.hook_iq("set", f"{{{PUSH}}}enable", self.enable, target="self")
        m.hook_iq("set", f"{{{PUSH}}}disable", self.disable, target="self")
        m.hook("message/offline/handle", self.on_offline, 1)
        m.hook("smacks-hibernation-start", self.on_hibernation_start)
        m.hook("smacks-hibernation-stanza-queued", self.on_queued)
        m.hook("smacks-hibernation-end", self.on_hibernation_end)
        m.hook("user-deleted", lambda event: self.store.set(event.username, None))

    @staticmethod
    def on_account_disco(event: Any) -> None:
        """XEP-0357 5: the account says it can push."""
        SubElement(event.reply, f"{{{ns.DISCO_INFO}}}feature", {"var": PUSH})

    def session_state(self, session: Any) -> PushSession:
        return self.m.session_data(session, PushSession)

    # -- registration ------------------------------------------------------------------

    def enable(self, request: IqRequest) -> None:
        enable, session = request.payload, request.origin
        push_jid = enable.get("jid")
        if not push_jid:
            raise StanzaError("bad-request", "Missing jid")
        try:
            parse_jid(push_jid)
        except InvalidJID as error:
            raise StanzaError("jid-malformed", "Invalid jid") from error
        if push_jid == request.stanza.get("from"):
            raise StanzaError("bad-request", "JID must be different from ours")
        node = enable.get("node") or ""
        form = enable.find(FORM)
        identifier = f"{push_jid}<{node}"
        settings = {"jid": push_jid, "node": node, "timestamp": self.m.now(),
                    "options": serialize(form) if form is not None else None}
        services = self.store.get(session.username) or {}
        services[identifier] = settings
        newest = sorted(services, key=lambda key: services[key]["timestamp"], reverse=True)
        self.store.set(session.username, {key: services[key]
                                          for key in newest[:self.max_devices]})
        state = self.session_state(session)
        state.identifier, state.settings = identifier, settings
        self.m.log.info("Push notifications enabled for %s (%s)", session.jid, identifier)

    def disable(self, request: IqRequest) -> None:
        disable, session = request.payload, request.origin
        push_jid = disable.get("jid")
        if not push_jid:
            raise StanzaError("bad-request", "Missing jid")
        node = disable.get("node")
        services = self.store.get(session.username) or {}
        removed = [key for key, info in services.items()
                   if info["jid"] == push_jid and (not node or info["node"] == node)]
        for key in removed:
            del services[key]
            self.errors.pop(key, None)
        self.store.set(session.username, services or None)
        state = self.session_state(session)
        if state.identifier in removed:
            state.identifier = state.settings = None

    # -- when to push --------------------------------------------------------------------

    def on_offline(self, event: Any) -> None:
        """A message for a user with no session: every registered app server."""
        username = event.username
        services = dict(self.store.get(username) or {})
        origin = event.origin
        own = origin is not None and getattr(origin, "username", None) == username \
            and origin.host is self.m.host
        if own:
            # Stream management handing over a hibernated session's queue: that
            # session's app server was told while it was queued.
            services.pop(self.session_state(origin).identifier, None)
        for identifier, settings in services.items():
            self.push(username, identifier, settings, event.stanza)

    def on_hibernation_start(self, event: Any) -> None:
        self.push_queue(event.origin, list(event.queue))

    def on_queued(self, event: Any) -> None:
        session = event.origin
        state = self.session_state(session)
        if state.identifier is None:
            return
        state.batch.append(event.stanza)
        if state.timer is None:
            def flush() -> None:
                state.timer = None
                batch, state.batch = state.batch, []
                self.push_queue(session, batch)
            state.timer = self.m.add_timer(BATCH_SECONDS, flush)

    def on_hibernation_end(self, event: Any) -> None:
        state = self.session_state(event.origin)
        if state.timer is not None:
            state.timer.cancel()
            state.timer = None
        state.batch = []

    def push_queue(self, session: Any, stanzas: list[Element]) -> None:
        """One push for the first unimportant stanza and one for the first important."""
        state = self.session_state(session)
        if state.identifier is None or state.settings is None:
            return
        pushed: set[bool] = set()
        for stanza in stanzas:
            important = is_important(stanza)
            if important not in pushed:
                pushed.add(important)
                self.push(session.username, state.identifier, state.settings, stanza)

    # -- the publish -----------------------------------------------------------------------

    def push(self, username: str, identifier: str, settings: dict[str, Any],
             stanza: Element | None) -> None:
        fields = {"message-count": "1"}
        if stanza is not None and self.with_sender and stanza.get("from"):
            fields["last-message-sender"] = stanza.get("from", "")
        if stanza is not None and self.with_body:
            fields["last-message-body"] = stanza.findtext(BODY) or ""
        elif stanza is not None and self.important_body and is_important(stanza):
            fields["last-message-body"] = self.important_body
        iq_id = secrets.token_hex(8)
        iq = Element(f"{{{ns.CLIENT}}}iq", {"type": "set", "id": iq_id,
                                             "from": self.m.host.name, "to": settings["jid"]})
        pubsub = SubElement(iq, f"{{{PUBSUB}}}pubsub")
        publish = SubElement(pubsub, f"{{{PUBSUB}}}publish")
        if settings.get("node"):
            publish.set("node", settings["node"])
        notification = SubElement(SubElement(publish, f"{{{PUBSUB}}}item"),
                                  f"{{{PUSH}}}notification")
        notification.append(summary_form(fields))
        if settings.get("options"):
            options = SubElement(pubsub, f"{{{PUBSUB}}}publish-options")
            options.append(parse_stanza(settings["options"]))
        self.errors.setdefault(identifier, 0)

        def answered(event: Any) -> bool:
            self.m.unhook(f"iq-result/host/{iq_id}", answered)
            self.m.unhook(f"iq-error/host/{iq_id}", answered)
            if event.stanza.get("from") != settings["jid"]:
                return True
            if event.stanza.get("type") == "result":
                self.errors[identifier] = 0
            else:
                self.push_failed(username, identifier, event.stanza)
            return True

        self.m.hook(f"iq-result/host/{iq_id}", answered)
        self.m.hook(f"iq-error/host/{iq_id}", answered)
        self.m.log.debug("Push for %s to %s", username, identifier)
        self.m.route(iq)

    def push_failed(self, username: str, identifier: str, error: Element) -> None:
        kind = error.find(f"{{{ns.CLIENT}}}error")
        if kind is not None and kind.get("type") == "wait":
            return
        self.errors[identifier] = self.errors.get(identifier, 0) + 1
        if self.errors[identifier] < self.max_errors:
            return
        self.m.log.warning("Disabling push notifications for %s (%s): %d errors", username,
                           identifier, self.errors[identifier])
        del self.errors[identifier]
        services = self.store.get(username) or {}
        services.pop(identifier, None)
        self.store.set(username, services or None)
        for session in self.m.sessions(parse_jid(f"{username}@{self.m.host.name}")).values():
            state = session.module_data.get(self.m.name)
            if state is not None and state.identifier == identifier:
                state.identifier = state.settings = None


def summary_form(fields: dict[str, str]) -> Element:
    """The urn:xmpp:push:summary form (XEP-0357 7)."""
    form = Element(FORM, {"type": "submit"})
    for var, value in (("FORM_TYPE", "urn:xmpp:push:summary"), *fields.items()):
        field_ = SubElement(form, f"{{{ns.DATA_FORMS}}}field", {"var": var})
        SubElement(field_, f"{{{ns.DATA_FORMS}}}value").text = value
    return form
