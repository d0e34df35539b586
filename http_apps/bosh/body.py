"""The <body/> wrapper of XEP-0124 (sections 4 and 7) and its XEP-0206 attributes.

Sans-I/O: `parse_body(bytes)` gives the wrapper's attributes and its child
elements, or raises `BoshError("bad-request")`; the `*_body` functions give the
bytes of a response. The XML rules are those of an XMPP stream (RFC 6120
section 11): no DTD, entity declarations, comments or processing instructions.
Children in the BOSH namespace (clients that leave stanzas unqualified) are
moved to jabber:client, as XEP-0206 section 3 reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from xml.etree.ElementTree import Element, SubElement
from xml.parsers import expat

from xmpp import namespaces as ns
from xmpp.stanza import escape_attr

HTTPBIND = "http://jabber.org/protocol/httpbind"
XBOSH = "urn:xmpp:xbosh"
XML_NS = "http://www.w3.org/XML/1998/namespace"

BODY = f"{{{HTTPBIND}}}body"
#: Clark names of the XEP-0206 attributes.
XMPP_RESTART = f"{{{XBOSH}}}restart"
XMPP_VERSION = f"{{{XBOSH}}}version"

#: Terminal binding conditions of XEP-0124 section 17.2.
CONDITIONS = frozenset({
    "bad-request", "host-gone", "host-unknown", "improper-addressing",
    "internal-server-error", "item-not-found", "other-request", "policy-violation",
    "remote-connection-failed", "remote-stream-error", "see-other-uri", "system-shutdown",
    "undefined-condition",
})

MAX_DEPTH = 32

_SEP = "}"
_HTTPBIND_PREFIX = HTTPBIND + _SEP
#: The names expat gives the wrapper and xml:lang (namespace, separator, local name).
_BODY_NAME = _HTTPBIND_PREFIX + "body"
_XML_LANG_NAME = XML_NS + _SEP + "lang"
_OPEN = (f"<body xmlns='{HTTPBIND}' xmlns:stream='{ns.STREAMS}'").encode()


class BoshError(Exception):
    """A terminal binding condition: the request is answered with type='terminate'."""

    def __init__(self, condition: str, text: str | None = None) -> None:
        if condition not in CONDITIONS:
            raise ValueError(f"unknown BOSH condition {condition!r}")
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition


@dataclass(slots=True)
class Body:
    """A client's <body/>: its attributes (Clark names for namespaced ones) and children."""

    attrs: dict[str, str]
    children: list[Element] = field(default_factory=list)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.attrs.get(name, default)

    @property
    def restart(self) -> bool:
        """XEP-0206 section 5: the client asks for a stream restart."""
        return self.attrs.get(XMPP_RESTART, "").strip().lower() in ("true", "1")


def _refuse(*_args: object) -> None:
    raise BoshError("bad-request", "restricted XML")


def _check_xml_decl(_version: str, encoding: str | None, _standalone: int) -> None:
    if encoding is not None and encoding.lower() != "utf-8":
        raise BoshError("bad-request", "only UTF-8 is supported")


# expat name -> Clark tag. Bounded: names come from clients.
_TAGS: dict[str, str] = {}
_TAG_CACHE_MAX = 4096


def _tag(name: str) -> str:
    tag = _TAGS.get(name)
    if tag is not None:
        return tag
    if _SEP not in name:
        tag = "{}" + name  # in no namespace (xmlns=''), as xmpp.stream writes it
    elif name.startswith(_HTTPBIND_PREFIX):
        tag = "{" + ns.CLIENT + "}" + name[len(_HTTPBIND_PREFIX):]
    else:
        tag = "{" + name
    if len(_TAGS) < _TAG_CACHE_MAX:
        _TAGS[name] = tag
    return tag


def _attrs(attrs: dict[str, str]) -> dict[str, str]:
    for key in attrs:
        if _SEP in key:
            return {("{" + key if _SEP in key else key): value for key, value in attrs.items()}
    return attrs


def parse_body(data: bytes, max_depth: int = MAX_DEPTH) -> Body:
    """Parse one request body; `BoshError("bad-request")` when it is not a usable <body/>."""
    if b"\0" in data:
        # No UTF-8 XML holds a NUL, and expat would take one among the first bytes
        # for UTF-16 despite the forced UTF-8 (found by fuzzing the stream parser).
        raise BoshError("bad-request", "only UTF-8 is supported")
    parser = expat.ParserCreate(encoding="UTF-8", namespace_separator=_SEP)
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.XmlDeclHandler = _check_xml_decl
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.ProcessingInstructionHandler = _refuse
    parser.CommentHandler = _refuse
    stack: list[Element] = []
    result: list[Body] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        if not stack:
            if name != _BODY_NAME:
                raise BoshError("bad-request", "the root element is not a BOSH <body/>")
            body = Body({("xml:lang" if key == _XML_LANG_NAME else
                          "{" + key if _SEP in key else key): value
                         for key, value in attrs.items()})
            result.append(body)
            stack.append(Element(BODY))
            return
        if len(stack) > max_depth:
            raise BoshError("bad-request", "elements nested too deep")
        if len(stack) == 1:
            element = Element(_tag(name), _attrs(attrs))
            result[0].children.append(element)
        else:
            element = SubElement(stack[-1], _tag(name), _attrs(attrs))
        stack.append(element)

    def end(_name: str) -> None:
        stack.pop()

    def characters(value: str) -> None:
        # Text runs come whole (buffer_text), or in pieces when over the buffer.
        if len(stack) < 2:
            return  # whitespace (or stray text) between the wrapper's children
        element = stack[-1]
        if len(element):
            last = element[-1]
            last.tail = (last.tail or "") + value
        else:
            element.text = (element.text or "") + value

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = characters
    try:
        parser.Parse(data, True)
    except expat.ExpatError as error:
        raise BoshError("bad-request", expat.ErrorString(error.code)) from None
    if not result:
        raise BoshError("bad-request", "empty request")
    return result[0]


def open_tag(attrs: Mapping[str, str]) -> bytes:
    """The start of a response <body/> with `attrs`, unclosed: for `wrap_payload`."""
    extra = "".join(f" {key}='{escape_attr(value)}'" for key, value in attrs.items())
    return _OPEN + extra.encode()


def wrap_payload(tag: bytes, payload: bytes) -> bytes:
    """A response <body/> from its `open_tag` and `payload`."""
    if not payload:
        return tag + b"/>"
    return b"".join((tag, b">", payload, b"</body>"))


def response_body(payload: bytes, attrs: Mapping[str, str]) -> bytes:
    """A response <body/> with `attrs` (prefixed names as written) around `payload`.

    The wrapper declares the `stream` prefix, so <stream:features/> and
    <stream:error/> can go in as the c2s session writes them.
    """
    return wrap_payload(open_tag(attrs), payload)


def terminate_body(condition: str | None = None, payload: bytes = b"",
                   attrs: Mapping[str, str] | None = None) -> bytes:
    """A type='terminate' body, with a terminal condition when there is one."""
    fields = dict(attrs or {})
    fields["type"] = "terminate"
    if condition is not None:
        if condition not in CONDITIONS:
            raise ValueError(f"unknown BOSH condition {condition!r}")
        fields["condition"] = condition
    return response_body(payload, fields)


def bosh_error_body(error: BoshError) -> bytes:
    """The answer to a request refused with `error`."""
    return terminate_body(error.condition)

