"""XML streams of RFC 6120 (section 4), with the XML restrictions of section 11.

Sans-I/O: `StreamParser.feed(bytes)` returns the events those bytes complete
(the stream header, each top-level element, the stream close) and raises a
`StreamError` carrying the condition to send when the peer breaks a rule.

Limits: a top-level element may not exceed `max_stanza_size` bytes (counted
from its start tag up to its end tag) nor nest deeper than `max_depth`
elements (the stanza itself is depth 1); crossing either is
`policy-violation`, detected while the element is still arriving so the
memory a connection holds stays bounded by the limit.

After a `StreamError` the parser is dead: every later `feed()` raises the same
error again. Events completed earlier in the chunk that failed are dropped
with it, since the stream is being torn down anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree.ElementTree import Element, SubElement
from xml.parsers import expat
from xml.parsers.expat import errors as expat_errors
from xml.sax.saxutils import quoteattr

from xmpp import namespaces as ns
from xmpp.errors import StreamError

XML_NS = "http://www.w3.org/XML/1998/namespace"

# expat joins namespace and local name with this; "{" + name is then Clark.
_NS_SEP = "}"
_STREAM_NAME = ns.STREAMS + _NS_SEP + "stream"
_XML_LANG_NAME = XML_NS + _NS_SEP + "lang"
_XML_WHITESPACE = " \t\r\n"

# Feeding larger chunks in slices bounds what one Parse call can build before
# the size checks run again.
_SLICE = 64 * 1024

# expat name -> Clark tag, shared by all parsers. Bounded so a peer inventing
# names cannot grow it; past the bound names are converted each time.
_TAGS: dict[str, str] = {}
_TAG_CACHE_MAX = 4096

_ERROR_CONDITIONS = {
    expat_errors.codes[expat_errors.XML_ERROR_UNBOUND_PREFIX]: "bad-namespace-prefix",
    expat_errors.codes[expat_errors.XML_ERROR_UNDEFINED_ENTITY]: "restricted-xml",
    expat_errors.codes[expat_errors.XML_ERROR_UNKNOWN_ENCODING]: "unsupported-encoding",
    expat_errors.codes[expat_errors.XML_ERROR_INCORRECT_ENCODING]: "unsupported-encoding",
}


@dataclass(slots=True)
class StreamOpen:
    """The peer's <stream:stream> header.

    `attrs` holds its attributes ('to', 'from', 'id', 'version', 'xml:lang')
    and its namespace declarations ('xmlns' for the content namespace,
    'xmlns:<prefix>' for the others, e.g. 'xmlns:db').
    """

    attrs: dict[str, str]


@dataclass(slots=True)
class StanzaEvent:
    """A complete top-level child of <stream:stream>."""

    element: Element


@dataclass(slots=True)
class StreamEnd:
    """The peer sent </stream:stream>."""


StreamEvent = StreamOpen | StanzaEvent | StreamEnd


def _new_tag(name: str) -> str:
    # "{}name": in no namespace (xmlns=''), which a bare tag built in code is not.
    tag = "{" + name if _NS_SEP in name else "{}" + name
    if len(_TAGS) < _TAG_CACHE_MAX:
        _TAGS[name] = tag
    return tag


def _qualify(attrs: dict[str, str]) -> dict[str, str]:
    """Attribute names in Clark notation (expat gives 'ns}local')."""
    return {("{" + key if _NS_SEP in key else key): value for key, value in attrs.items()}


def _refuse(*_args: object) -> None:
    raise StreamError("restricted-xml")


def _check_xml_decl(_version: str, encoding: str | None, _standalone: int) -> None:
    if encoding is not None and encoding.lower() != "utf-8":
        raise StreamError("unsupported-encoding", "only UTF-8 is supported")


_TEXT_BUFFER_SIZE = 1024


class StreamParser:
    """Incremental parser of one direction of an XMPP stream."""

    def __init__(self, *, default_ns: str = ns.CLIENT, max_stanza_size: int = 256 * 1024,
                 max_depth: int = 32) -> None:
        self.default_ns = default_ns
        # Both limits may be changed between feeds (e.g. raised after auth).
        self.max_stanza_size = max_stanza_size
        self.max_depth = max_depth
        self._parser: expat.XMLParserType | None = None
        self.reset()

    def reset(self) -> None:
        """Start over, expecting a new <stream:stream> (after STARTTLS or SASL)."""
        self._error: StreamError | None = None
        self._events: list[StreamEvent] = []
        self._stack: list[Element] = []      # open elements of the current stanza
        self._text: list[str] = []           # character data not yet attached
        self._stanza_start = 0               # byte index of the open stanza's start tag
        self._fed = 0                        # bytes given to this expat parser
        # The peer's header reduced to its namespace declarations, once it has
        # come: what a new expat parser is given to continue the stream.
        self._resume_header: bytes | None = None
        self.close()
        self._parser = self._new_expat()

    @property
    def between_stanzas(self) -> bool:
        """Whether every stanza fed so far is complete (nothing half-parsed)."""
        parser = self._parser
        return not self._stack and (parser is None or parser.CurrentByteIndex == self._fed)

    @property
    def fed(self) -> int:
        """Bytes given to the current expat parser."""
        return self._fed

    def release(self) -> bool:
        """Drop the expat parser (some 13 KiB, most of an idle stream) when it
        holds nothing: between stanzas, no partial token kept. The next feed
        makes a new one, so call this on a stream gone quiet, not per stanza."""
        parser = self._parser
        if (parser is None or self._resume_header is None or self._stack or self._text
                or self._error is not None or parser.CurrentByteIndex != self._fed):
            return False
        self.close()
        return True

    def close(self) -> None:
        """Drop the expat parser now. Its handlers are closures that refer to it
        and to this object: unhooked, both are freed at once by reference
        counting; left in that cycle, they waited for a full garbage collection,
        which an idle server seldom runs (a third of the memory of 2,000 idle
        streams was released parsers waiting for it)."""
        parser = self._parser
        if parser is not None:
            self._parser = None
            parser.StartNamespaceDeclHandler = None
            parser.StartElementHandler = None
            parser.EndElementHandler = None

    def _resume(self) -> expat.XMLParserType:
        """A new expat parser in the state the released one was in: inside the stream."""
        assert self._resume_header is not None
        parser = self._new_expat(resuming=True)
        parser.Parse(self._resume_header, False)
        self._fed = len(self._resume_header)
        self._parser = parser
        return parser

    def feed(self, data: bytes) -> list[StreamEvent]:
        """Parse `data` and return the events it completes, in order.

        Raises StreamError with the condition to send to the peer.
        """
        if self._error is not None:
            raise self._error
        try:
            if b"\0" in data:
                # No UTF-8 XML holds a NUL, and expat would take one among the first
                # bytes for UTF-16 (found by fuzzing): RFC 6120 11.6 wants UTF-8 only.
                raise StreamError("unsupported-encoding" if self._fed == 0 else "not-well-formed",
                                  "NUL byte in the stream")
            if len(data) <= _SLICE:
                self._parse(data)
            else:
                for offset in range(0, len(data), _SLICE):
                    self._parse(data[offset:offset + _SLICE])
        except expat.ExpatError as exc:
            condition = _ERROR_CONDITIONS.get(exc.code, "not-well-formed")
            self._error = StreamError(condition, expat.ErrorString(exc.code))
            raise self._error from None
        except StreamError as exc:
            self._error = exc
            raise
        events = self._events
        self._events = []
        return events

    def _parse(self, chunk: bytes) -> None:
        parser = self._parser or self._resume()
        parser.Parse(chunk, False)
        self._fed += len(chunk)
        if self._stack:
            anchor = self._stanza_start
        else:
            if self._text:
                self._flush_text()
            # Nothing open: whatever expat still holds is one unfinished token.
            anchor = parser.CurrentByteIndex
        if self._fed - anchor > self.max_stanza_size:
            raise StreamError("policy-violation", "stanza too large")

    def _flush_text(self) -> None:
        text = self._text
        value = text[0] if len(text) == 1 else "".join(text)
        text.clear()
        stack = self._stack
        if stack:
            element = stack[-1]
            if len(element):
                element[-1].tail = value
            else:
                element.text = value
        elif value.strip(_XML_WHITESPACE):
            raise StreamError("bad-format", "text between stanzas")
        # Whitespace between stanzas is a keepalive (RFC 6120 4.6.1): dropped.

    def _new_expat(self, resuming: bool = False) -> expat.XMLParserType:
        # Forcing UTF-8 stops expat from honouring a BOM or a declared
        # encoding; the declaration itself is checked in _check_xml_decl.
        parser = expat.ParserCreate(encoding="UTF-8", namespace_separator=_NS_SEP)
        parser.buffer_text = True
        # pyexpat allocates the whole text buffer per parser; its 8 KiB default
        # dominated the memory of an idle connection. Longer text arrives in
        # several pieces, which the text list joins.
        parser.buffer_size = _TEXT_BUFFER_SIZE
        parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        if hasattr(parser, "SetReparseDeferralEnabled"):
            # expat >= 2.6 may hold back a complete stanza until more bytes
            # arrive; a chat stream needs every stanza as soon as it is whole.
            parser.SetReparseDeferralEnabled(False)
        parser.XmlDeclHandler = _check_xml_decl
        parser.StartDoctypeDeclHandler = _refuse
        parser.EntityDeclHandler = _refuse
        parser.ProcessingInstructionHandler = _refuse
        parser.CommentHandler = _refuse

        # The handlers below run for every element of every stanza, so they
        # are closures over local names rather than methods reading self.
        stack = self._stack
        text = self._text
        flush_text = self._flush_text
        tags = _TAGS
        header_ns: dict[str, str] = {}

        def start_namespace(prefix: str | None, uri: str) -> None:
            header_ns["xmlns" if prefix is None else "xmlns:" + prefix] = uri

        def start_root(name: str, attrs: dict[str, str]) -> None:
            parser.StartNamespaceDeclHandler = None
            parser.StartElementHandler = start
            if resuming:
                return  # our own copy of the header: checked and reported already
            if name != _STREAM_NAME:
                if not name.startswith(ns.STREAMS + _NS_SEP):
                    raise StreamError("invalid-namespace", "not an XMPP stream")
                raise StreamError("bad-format", "root element is not <stream>")
            if header_ns.get("xmlns") != self.default_ns:
                raise StreamError("invalid-namespace",
                                  f"content namespace must be {self.default_ns}")
            header = {("xml:lang" if key == _XML_LANG_NAME else "{" + key if _NS_SEP in key
                       else key): value for key, value in attrs.items()}
            header.update(header_ns)
            self._events.append(StreamOpen(header))
            self._resume_header = _resume_header(header_ns)

        def start(name: str, attrs: dict[str, str]) -> None:
            if text:
                flush_text()
            tag = tags.get(name) or _new_tag(name)
            for key in attrs:
                if _NS_SEP in key:
                    attrs = _qualify(attrs)
                    break
            if stack:
                if len(stack) >= self.max_depth:
                    raise StreamError("policy-violation", "elements nested too deep")
                if parser.CurrentByteIndex - self._stanza_start > self.max_stanza_size:
                    raise StreamError("policy-violation", "stanza too large")
                stack.append(SubElement(stack[-1], tag, attrs))
            else:
                self._stanza_start = parser.CurrentByteIndex
                stack.append(Element(tag, attrs))

        def end(_name: str) -> None:
            if text:
                flush_text()
            if not stack:
                self._events.append(StreamEnd())
                return
            element = stack.pop()
            if not stack:
                if parser.CurrentByteIndex - self._stanza_start > self.max_stanza_size:
                    raise StreamError("policy-violation", "stanza too large")
                self._events.append(StanzaEvent(element))

        parser.StartNamespaceDeclHandler = start_namespace
        parser.StartElementHandler = start_root
        parser.EndElementHandler = end
        parser.CharacterDataHandler = text.append
        return parser


# Namespace declarations of a header -> its resume header: peers of a kind
# send the same few, and building one cost some 7 us, twice per login. Bounded
# like _TAGS; past the bound headers are built each time.
_RESUME_HEADERS: dict[tuple[tuple[str, str], ...], bytes | None] = {}
_RESUME_CACHE_MAX = 256


def _resume_header(declarations: dict[str, str]) -> bytes | None:
    """The peer's stream header reduced to its namespace declarations. expat
    matches the closing tag by its prefix, which only a single binding of the
    streams namespace tells: with several, None (the parser is then kept)."""
    key = tuple(declarations.items())
    try:
        return _RESUME_HEADERS[key]
    except KeyError:
        pass
    header = _build_resume_header(declarations)
    if len(_RESUME_HEADERS) < _RESUME_CACHE_MAX:
        _RESUME_HEADERS[key] = header
    return header


def _build_resume_header(declarations: dict[str, str]) -> bytes | None:
    roots = [name[len("xmlns:"):] for name, uri in declarations.items()
             if name.startswith("xmlns:") and uri == ns.STREAMS]
    if len(roots) != 1:
        return None
    attrs = "".join(f" {name}={quoteattr(uri)}" for name, uri in declarations.items())
    return f"<{roots[0]}:stream{attrs}>".encode()


class _StanzaReader:
    """parse_stanza's parser for one default namespace: a stream kept open and
    each stanza fed to it in turn (a new parser per stanza cost more than the
    parsing: stanzas from other nodes, offline storage, the smacks queue)."""

    RENEW_AFTER = 64 * 1024 * 1024  # bytes fed before a fresh parser

    def __init__(self, default_ns: str) -> None:
        self.default_ns = default_ns
        self.header = (f"<stream:stream xmlns='{default_ns}' "
                       f"xmlns:stream='{ns.STREAMS}'>").encode()
        self.parser: StreamParser | None = None

    def parse(self, xml: str) -> Element:
        parser, self.parser = self.parser, None  # taken: a failure leaves none half-fed
        if parser is None or parser.fed > self.RENEW_AFTER:
            parser = StreamParser(default_ns=self.default_ns, max_stanza_size=2 ** 31)
            parser.feed(self.header)
        events = parser.feed(xml.encode())
        stanzas = [event.element for event in events if isinstance(event, StanzaEvent)]
        if parser.between_stanzas and len(stanzas) == len(events):
            self.parser = parser  # else it is closed, or holds half a stanza
        if not stanzas:
            self.parser = None
            raise ValueError("no complete stanza in stored text")
        return stanzas[0]


_READERS: dict[str, _StanzaReader] = {}


def parse_stanza(xml: str, default_ns: str = ns.CLIENT) -> Element:
    """Parse one stanza kept as text (offline messages, pending subscriptions,
    stanzas from other cluster nodes) with the same restricted-XML rules as a
    live stream; the first, if the text holds several."""
    reader = _READERS.get(default_ns)
    if reader is None:
        reader = _READERS[default_ns] = _StanzaReader(default_ns)
    return reader.parse(xml)
