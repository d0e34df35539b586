"""Server announcements (Prosody's mod_announce): a message from an admin to
`host/announce/online`, or the XEP-0133 "Send Announcement to Online Users"
command, goes as a headline to every user online on the host."""

from __future__ import annotations

from typing import Any
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns
from xmpp.dataforms import Field, build_form
from xmpp.jid import InvalidJID, parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.modules.adhoc import AdhocCommand, AdhocRequest, AdhocResult, add_command, is_admin

RESOURCE = "announce/online"


def send_to_online(m: ModuleContext, message: Element, every_host: bool = False) -> int:
    """A copy of `message` (from the host) to each online user of the host, or of
    every local host (Prosody's send_to_online without a host); how many."""
    count = 0
    for bare in m.online_users(every_host):
        copy = Element(message.tag, {**message.attrib, "from": m.host.name, "to": str(bare)})
        copy.text = message.text
        copy.extend(list(message))
        m.route(copy)
        count += 1
    return count


def headline(subject: str | None, body: str) -> Element:
    message = Element(f"{{{ns.CLIENT}}}message", {"type": "headline"})
    if subject:
        SubElement(message, f"{{{ns.CLIENT}}}subject").text = subject
    SubElement(message, f"{{{ns.CLIENT}}}body").text = body
    return message


def setup(m: ModuleContext) -> None:
    def on_message(event: Any) -> bool | None:
        stanza = event.stanza
        try:
            to = parse_jid(stanza.get("to", ""))
            sender = parse_jid(stanza.get("from", ""))
        except InvalidJID:
            return None
        if to.resource != RESOURCE:
            return None
        if not is_admin(m, sender):
            m.log.warning("Non-admin %s tried to send a server announcement", sender)
            return None
        message = Element(stanza.tag, {"type": "headline"})
        message.extend(child for child in stanza if child.tag in (
            f"{{{ns.CLIENT}}}body", f"{{{ns.CLIENT}}}subject"))
        m.log.info("Announcement sent to %d online users", send_to_online(m, message))
        return True

    def announce(request: AdhocRequest) -> AdhocResult:
        if request.values is None:
            return AdhocResult("executing", build_form("form", [
                Field("subject", "text-single", "Subject"),
                Field("announcement", "text-multi", "Announcement", required=True)],
                title="Making an Announcement", form_type_ns=ns.ADMIN,
                instructions="Fill out this form to make an announcement to all\n"
                             "active users of this service."))
        body = "\n".join((request.values or {}).get("announcement", []))
        count = send_to_online(m, headline(request.value("subject") or None, body))
        return AdhocResult(note=f"Announcement sent to {count} online users")

    m.hook("message/host", on_message)
    add_command(m, AdhocCommand(f"{ns.ADMIN}#announce", "Send Announcement to Online Users",
                                announce, "admin"))
