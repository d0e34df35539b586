"""XML stanzas of RFC 6120 (sections 4.7 and 8): wire serialisation and helpers.

Stanzas in memory are ElementTree Elements with Clark tags; `serialize` writes
them the way XMPP peers expect: no prefixes in the content namespace, a
default-namespace declaration on each child in another namespace, `xml:lang`,
and the `stream:` prefix the stream header declares.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from xml.etree.ElementTree import Element, SubElement

from xmpp import namespaces as ns

XML_NS = "http://www.w3.org/XML/1998/namespace"
STREAM_CLOSE = "</stream:stream>"

# Namespaces that the stream header binds to a prefix (see stream_header).
STREAM_PREFIXES: Mapping[str, str] = MappingProxyType({ns.STREAMS: "stream"})

# Clark tag -> (namespace, local name). Bounded: tags come from peers.
_SPLITS: dict[str, tuple[str, str]] = {}
_SPLIT_CACHE_MAX = 4096


def local_name(tag: str) -> str:
    """The local part of a Clark tag: '{jabber:client}message' -> 'message'."""
    return tag.rpartition("}")[2]


def namespace(tag: str) -> str:
    """The namespace of a Clark tag, '' for an unqualified one."""
    return tag[1:tag.index("}")] if tag[:1] == "{" else ""


def _split(tag: str) -> tuple[str, str]:
    split = _SPLITS.get(tag)
    if split is None:
        split = (namespace(tag), local_name(tag))
        if len(_SPLITS) < _SPLIT_CACHE_MAX:
            _SPLITS[tag] = split
    return split


def namespace_of(tag: str) -> str:
    """`namespace(tag)`, from the bounded cache the serialiser keeps (for hot paths)."""
    return _split(tag)[0]


def escape_text(text: str) -> str:
    """Character data escaped for element content."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:
        # A raw CR would be folded into LF by the receiving parser.
        text = text.replace("\r", "&#13;")
    return text


def escape_attr(value: str) -> str:
    """An attribute value escaped for single or double quotes."""
    value = escape_text(value)
    if "'" in value:
        value = value.replace("'", "&apos;")
    if '"' in value:
        value = value.replace('"', "&quot;")
    if "\n" in value or "\t" in value:
        # Attribute-value normalisation would turn them into spaces.
        value = value.replace("\n", "&#10;").replace("\t", "&#9;")
    return value


class SharedElement(Element):
    """An element sent unchanged inside many stanzas (e.g. a pubsub event fanned
    out to every subscriber), its children shared with `original`: written
    once per namespace scope, then reused. It must not change after it is
    first sent; copies of it are plain Elements."""

    def __init__(self, original: Element) -> None:
        super().__init__(original.tag, original.attrib)
        self.text, self.tail = original.text, original.tail
        self[:] = original[:]
        self._wire: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}

    def wire_form(self, scope: str, prefixes: Mapping[str, str]) -> str:
        key = (scope, tuple(prefixes.items()))
        wire = self._wire.get(key)
        if wire is None:
            plain = Element(self.tag, self.attrib)
            plain.text = self.text
            plain[:] = self[:]
            wire = self._wire[key] = serialize(plain, scope, prefixes)
        return wire


class SerializedElement(Element):
    """A `jabber:client` element known by its serialisation (as `serialize`
    wrote it to storage), sent back unchanged, e.g. an archived message inside
    a MAM result: written as that text, never parsed. It has no attributes or
    children to read or change: only its tag."""

    def __init__(self, local_name: str, wire: str, *, declared: bool) -> None:
        super().__init__(f"{{{ns.CLIENT}}}{local_name}")
        self.wire = wire
        # Where a namespace declaration goes when the text has none.
        self._name_end = 0 if declared else len(local_name) + 1

    def wire_form(self, scope: str) -> str:
        cut = self._name_end
        if scope == ns.CLIENT or not cut:
            return self.wire
        # In another scope (inside <forwarded/>) the root declares its namespace.
        return f"{self.wire[:cut]} xmlns='{ns.CLIENT}'{self.wire[cut:]}"


_CLIENT_DECLARATION = f" xmlns='{ns.CLIENT}'"


def serialized_element(wire: str) -> SerializedElement | None:
    """`wire` as a SerializedElement, or None unless its root is a plain
    `<name ...>` in the client namespace (undeclared, or declared as such)."""
    end = 1
    while end < len(wire) and wire[end] not in " />":
        end += 1
    root_end = wire.find(">")
    if wire[:1] != "<" or end == 1 or root_end < 0:
        return None
    root_attributes = wire[end:root_end]
    declared = _CLIENT_DECLARATION in root_attributes
    if root_attributes.count(" xmlns=") != declared:
        return None  # another default namespace, or one we cannot tell
    return SerializedElement(wire[1:end], wire, declared=declared)


def _write(element: Element, scope: str, prefixes: Mapping[str, str], out: list[str]) -> None:
    kind = type(element)
    if kind is SharedElement:
        out.append(element.wire_form(scope, prefixes))
        return
    if kind is SerializedElement:
        out.append(element.wire_form(scope))
        return
    uri, name = _split(element.tag)
    if uri and uri != scope:
        prefix = prefixes.get(uri)
        if prefix is None:
            name_out = name
            start = f"<{name} xmlns='{escape_attr(uri)}'"
            scope = uri
        else:
            name_out = f"{prefix}:{name}"
            start = "<" + name_out
    elif scope and element.tag[:2] == "{}":
        # Parsed from xmlns='': without the declaration it would join the scope.
        name_out = name
        start = f"<{name} xmlns=''"
        scope = ""
    else:
        # Unqualified tags (e.g. built as Element('error')) inherit the scope.
        name_out = name
        start = "<" + name
    out.append(start)
    attrib = element.attrib
    if attrib:
        extra = 0
        for key, value in attrib.items():
            if key[:1] == "{":
                attr_uri, attr_name = _split(key)
                if attr_uri == XML_NS:
                    key = "xml:" + attr_name
                else:
                    key = f"a{extra}:{attr_name}"
                    out.append(f" xmlns:a{extra}='{escape_attr(attr_uri)}'")
                    extra += 1
            out.append(f" {key}='{escape_attr(value)}'")
    text = element.text
    if len(element):
        out.append(">")
        if text:
            out.append(escape_text(text))
        for child in element:
            _write(child, scope, prefixes, out)
            if child.tail:
                out.append(escape_text(child.tail))
        out.append(f"</{name_out}>")
    elif text:
        out.append(f">{escape_text(text)}</{name_out}>")
    else:
        out.append("/>")


def serialize(element: Element, default_ns: str = ns.CLIENT,
              prefixes: Mapping[str, str] = STREAM_PREFIXES) -> str:
    """The XMPP wire form of `element` inside a stream whose content
    namespace is `default_ns`.

    `prefixes` maps namespaces bound on the stream header to their prefix;
    pass {} for a standalone document (e.g. stored stanzas).
    The element's own tail is not written.
    """
    out: list[str] = []
    _write(element, default_ns, prefixes, out)
    return "".join(out)


def stream_header(*, default_ns: str, from_: str | None, to: str | None,
                  stream_id: str | None, version: str | None = "1.0", lang: str = "en",
                  extra_ns: dict[str, str] | None = None) -> str:
    """Our <stream:stream> opening tag, preceded by the XML declaration.

    `extra_ns` maps further prefixes to namespaces, e.g. {"db": ns.DIALBACK}.
    """
    parts = [f"<?xml version='1.0'?><stream:stream xmlns='{escape_attr(default_ns)}'"
             f" xmlns:stream='{ns.STREAMS}'"]
    for prefix, uri in (extra_ns or {}).items():
        parts.append(f" xmlns:{prefix}='{escape_attr(uri)}'")
    for key, value in (("id", stream_id), ("from", from_), ("to", to),
                       ("version", version), ("xml:lang", lang)):
        if value:
            parts.append(f" {key}='{escape_attr(value)}'")
    parts.append(">")
    return "".join(parts)


def make_iq_result(iq: Element, payload: Element | None = None) -> Element:
    """The type='result' answer to `iq`: addresses swapped, id kept."""
    result = Element(iq.tag, {"type": "result"})
    for attr, swapped in (("from", "to"), ("to", "from")):
        value = iq.get(attr)
        if value:
            result.set(swapped, value)
    iq_id = iq.get("id")
    if iq_id is not None:
        result.set("id", iq_id)
    if payload is not None:
        result.append(payload)
    return result


def with_delay(stanza: Element, from_: str, when: float) -> Element:
    """A copy of `stanza` stamped with an XEP-0203 <delay/> from `from_` at
    `when` (seconds since the epoch); `stanza` itself when it has one already."""
    if stanza.find(f"{{{ns.DELAY}}}delay") is not None:
        return stanza
    stamped = Element(stanza.tag, stanza.attrib)
    stamped.text = stanza.text
    stamped.extend(list(stanza))
    stamp = datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    SubElement(stamped, f"{{{ns.DELAY}}}delay", {"from": from_, "stamp": stamp})
    return stamped
