"""What every XML stream session shares (RFC 6120 section 4): feeding the parser,
dispatching its events, and the order of a close.

c2s, component and s2s sessions subclass `XmlStreamSession` and supply
`stream_opened`, `handle_element`, `_send_error_header` and `_ended`.
"""

from __future__ import annotations

import logging
from typing import Any
from xml.etree.ElementTree import Element

from xmpp import namespaces as ns
from xmpp.errors import StreamError
from xmpp.stanza import STREAM_CLOSE
from xmpp.stream import StanzaEvent, StreamEnd, StreamOpen, StreamParser

log = logging.getLogger(__name__)


class XmlStreamSession:
    """A stream over a transport, from the first header to the closing tag."""

    kind = "stream"
    #: Whether the transport carries the stream's own framing (<stream:stream>,
    #: the closing tag). BOSH does not: its body wrapper frames the stanzas.
    framed = True
    transport: Any
    parser: StreamParser | None = None
    header_sent = False
    closed = False

    def data_received(self, data: bytes) -> None:
        """Parse bytes from the peer and act on each event they complete."""
        if self.closed or self.parser is None:
            return
        try:
            for event in self.parser.feed(data):
                # After <starttls/> or <proceed/>, the rest of this read was sent in
                # the clear before TLS: acting on it would let it be injected.
                if self.closed or getattr(self.transport, "tls_requested", False):
                    return
                if isinstance(event, StanzaEvent):
                    self.handle_element(event.element)
                elif isinstance(event, StreamOpen):
                    self.stream_opened(event.attrs)
                elif isinstance(event, StreamEnd):
                    self.close()
        except StreamError as error:
            log.debug("%s stream error on input %r", self.kind, data[:200])
            self.close(error)

    def connection_lost(self) -> None:
        """The transport is gone: tidy up as if the stream had ended."""
        # The parser is the largest part of an idle session, and of no use now
        # (a session may outlive its connection: XEP-0198 hibernation).
        if self.parser is not None:
            self.parser.close()
            self.parser = None
        if not self.closed:
            self.closed = True
            self._ended()

    def release_idle_memory(self) -> None:
        """The stream has gone quiet: let go of the parser until more bytes come."""
        if self.parser is not None:
            self.parser.release()

    def close(self, error: StreamError | None = None) -> None:
        """End the stream: our header first if none went out yet (RFC 6120
        4.9.1.2), then the stream error if there is one, then the closing tag."""
        if self.closed:
            return
        self.closed = True
        if error is not None:
            log.info("Closing %s stream with %s: %s", self.kind, self.peer_name(), error)
            if not self.header_sent:
                self._send_error_header()
            self.transport.write(error.to_xml())
        if self.framed:
            self.transport.write(STREAM_CLOSE.encode())
        self.transport.close()
        self._ended()

    def answer_starttls(self, allowed: bool) -> None:
        """RFC 6120 5.4.2: <proceed/> then TLS on the same socket, or <failure/> and close."""
        if not allowed:
            self.transport.write(f"<failure xmlns='{ns.TLS}'/>".encode())
            self.close()
            return
        self.transport.write(f"<proceed xmlns='{ns.TLS}'/>".encode())
        self.transport.start_tls()
        assert self.parser is not None
        self.parser.reset()

    def peer_name(self) -> str:
        """Who is at the other end, for logs."""
        return str(self.transport.peer[0])

    # -- supplied by each kind of stream ---------------------------------------------

    def stream_opened(self, attrs: dict[str, str]) -> None:
        raise NotImplementedError

    def handle_element(self, element: Element) -> None:
        raise NotImplementedError

    def _send_error_header(self) -> None:
        """Send our stream header so a stream error can follow it."""
        raise NotImplementedError

    def _ended(self) -> None:
        """The stream is over, by either side: release what it held."""


def supported_version(version: str | None) -> bool:
    """RFC 6120 4.7.5: "major.minor" compared as numbers. A newer client gets
    our 1.0 in reply; an older (or missing) version cannot do SASL."""
    major, _, minor = (version or "").partition(".")
    return major.isdigit() and (minor.isdigit() or not minor) and int(major) >= 1
