"""XMPP over BOSH (XEP-0206): the c2s session machine running on a BOSH session.

A BOSH client is a c2s client like any other: the same SASL, binding, roster,
presence and routing. Only the carriage differs: the session is unframed (no
<stream:stream> tags, no STARTTLS; xmpp.c2s.C2SSession.framed), its input comes
as parsed elements, and what it writes is queued on the BOSH session for the
next response.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import gevent

from xmpp.c2s import C2SSession
from xmpp.errors import StreamError

if TYPE_CHECKING:
    from http_apps.bosh.manager import BoshStream


class BoshTransport:
    """The c2s session's view of its BOSH session (xmpp.c2s.Transport)."""

    listener = "bosh"

    def __init__(self, stream: BoshStream, peer: tuple[str, int], secure: bool) -> None:
        self.stream = stream
        self.peer = peer
        self.secure = secure
        #: Set while the c2s session closes; a stream error makes it `remote-stream-error`.
        self.closing_error: StreamError | None = None
        self.timers: list[Any] = []

    def write(self, data: bytes) -> None:
        self.stream.output(data)

    def start_tls(self) -> None:
        """Never asked: unframed sessions offer no STARTTLS."""

    def close(self) -> None:
        for timer in self.timers:
            timer.close()
        self.timers.clear()
        self.stream.ended(self.closing_error)

    def call_later(self, seconds: float, callback: Callable[[], None]) -> None:
        # A bare loop timer until it fires (a greenlet per idle session would cost
        # more than the rest of the session); the callback runs in its own greenlet.
        self.timers = [timer for timer in self.timers if timer.active]
        timer = gevent.get_hub().loop.timer(seconds)
        timer.start(gevent.spawn, callback)
        self.timers.append(timer)


class BoshC2SSession(C2SSession):
    """A c2s session carried by BOSH."""

    framed = False
    transport: BoshTransport

    def close(self, error: StreamError | None = None) -> None:
        if not self.closed:
            # The last words (a <stream:error/>) go in the terminate body, not before it.
            self.transport.closing_error = error
            self.transport.stream.hold_output()
        super().close(error)
