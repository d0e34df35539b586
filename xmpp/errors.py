"""Stream and stanza errors of RFC 6120 (sections 4.9 and 8.3).

A StreamError ends the stream and carries the condition to send; a
StanzaError answers one stanza and knows how to build that answer.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns

STREAM_CONDITIONS = frozenset({
    "bad-format", "bad-namespace-prefix", "conflict", "connection-timeout",
    "host-gone", "host-unknown", "improper-addressing", "internal-server-error",
    "invalid-from", "invalid-namespace", "invalid-xml", "not-authorized",
    "not-well-formed", "policy-violation", "remote-connection-failed", "reset",
    "resource-constraint", "restricted-xml", "see-other-host", "system-shutdown",
    "undefined-condition", "unsupported-encoding", "unsupported-feature",
    "unsupported-stanza-type", "unsupported-version",
})

# Each stanza condition with the error type RFC 6120 section 8.3.3 gives it.
STANZA_CONDITION_TYPES = {
    "bad-request": "modify",
    "conflict": "cancel",
    "feature-not-implemented": "cancel",
    "forbidden": "auth",
    "gone": "cancel",
    "internal-server-error": "cancel",
    "item-not-found": "cancel",
    "jid-malformed": "modify",
    "not-acceptable": "modify",
    "not-allowed": "cancel",
    "not-authorized": "auth",
    "policy-violation": "modify",
    "recipient-unavailable": "wait",
    "redirect": "modify",
    "registration-required": "auth",
    "remote-server-not-found": "cancel",
    "remote-server-timeout": "wait",
    "resource-constraint": "wait",
    "service-unavailable": "cancel",
    "subscription-required": "auth",
    "undefined-condition": "cancel",
    "unexpected-request": "wait",
}


class StreamError(Exception):
    """A condition that ends the whole stream."""

    def __init__(self, condition: str, text: str | None = None) -> None:
        if condition not in STREAM_CONDITIONS:
            raise ValueError(f"unknown stream condition {condition!r}")
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text

    def to_xml(self) -> bytes:
        """The <stream:error/> element, serialised with the stream prefix."""
        body = f"<{self.condition} xmlns='{ns.STREAM_ERRORS}'/>"
        if self.text:
            body += f"<text xmlns='{ns.STREAM_ERRORS}'>{_escape(self.text)}</text>"
        return f"<stream:error>{body}</stream:error>".encode()


class StanzaError(Exception):
    """A condition that answers one stanza with type='error'."""

    def __init__(self, condition: str, text: str | None = None,
                 error_type: str | None = None,
                 extra: Element | None = None) -> None:
        if condition not in STANZA_CONDITION_TYPES:
            raise ValueError(f"unknown stanza condition {condition!r}")
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text
        self.type = error_type or STANZA_CONDITION_TYPES[condition]
        self.extra = extra

    def error_element(self, by: str | None = None) -> Element:
        error = Element("error", {"type": self.type})
        if by:
            error.set("by", by)
        SubElement(error, f"{{{ns.STANZA_ERRORS}}}{self.condition}")
        if self.text:
            SubElement(error, f"{{{ns.STANZA_ERRORS}}}text").text = self.text
        if self.extra is not None:
            error.append(self.extra)
        return error

    def to_reply(self, stanza: Element, by: str | None = None) -> Element:
        """The error reply to `stanza`: addresses swapped, payload kept for
        messages and presence as RFC 6120 8.3.1 allows, dropped for IQs."""
        reply = Element(stanza.tag, {"type": "error"})
        for attr, swapped in (("from", "to"), ("to", "from")):
            value = stanza.get(attr)
            if value:
                reply.set(swapped, value)
        if stanza.get("id") is not None:
            reply.set("id", stanza.get("id"))
        if not stanza.tag.endswith("}iq") and stanza.tag != "iq":
            for child in stanza:
                if not child.tag.endswith("}error"):
                    reply.append(child)
        reply.append(self.error_element(by))
        return reply


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
