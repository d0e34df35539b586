"""The live BOSH sessions of XEP-0124/XEP-0206: session creation, requests, held requests, expiry.

`BoshManager.handle(bytes, secure=, peer=)` takes one request body and gives the
response bytes, or a `Parked` request to `wait()` on. A parked request is a
greenlet blocked on a gevent AsyncResult, woken when output is queued for the
session, when its `wait` runs out or when the session ends: no thread, no
polling. One sweeper greenlet, alive while sessions exist, ends sessions with
no request open for `bosh_max_inactivity` seconds, as if terminated.

In a cluster each session is claimed by the node that holds it (xmpp.ownership);
a request for a sid held by another node comes back as `Elsewhere`, for the
HTTP layer to pass on to that node.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import gevent
from gevent.event import AsyncResult

from http_apps.bosh.body import (
    XBOSH,
    Body,
    BoshError,
    bosh_error_body,
    parse_body,
)
from http_apps.bosh.session import BoshSession, Limits
from http_apps.bosh.transport import BoshC2SSession, BoshTransport
from xmpp.errors import StreamError

if TYPE_CHECKING:
    from xmpp.c2s import C2SServices

log = logging.getLogger(__name__)

#: rid values are positive integers below 2**53 (XEP-0124 section 14.1).
MAX_RID = 2**53 - 1
_MAX_DIGITS = 16


class Claims(Protocol):
    """Where sessions are held (xmpp.ownership.Ownership, of kind "bosh")."""

    def claim(self, name: str) -> str | None: ...
    def release(self, name: str) -> None: ...
    def locate(self, name: str) -> str | None: ...


class LoneClaims:
    """One process: every session is here."""

    def claim(self, name: str) -> str | None:
        return None

    def release(self, name: str) -> None:
        return None

    def locate(self, name: str) -> str | None:
        return None


@dataclass(frozen=True, slots=True)
class Elsewhere:
    """A request for a session another node holds, at base URL `url`."""

    url: str


@dataclass(frozen=True)
class BoshOptions:
    """mod_bosh's options (global section only, as in Prosody), with Prosody's defaults."""

    max_wait: int = 120
    max_inactivity: int = 60
    max_requests: int = 2
    default_hold: int = 1
    max_polling: int = 5
    consider_secure: bool = False

    @classmethod
    def from_config(cls, config: Any) -> BoshOptions:
        """Read the options once, bounded below where smaller values make no sense."""
        default = cls()
        return cls(
            max_wait=config.get_int("bosh_max_wait", default.max_wait, min=0),
            max_inactivity=config.get_int("bosh_max_inactivity", default.max_inactivity,
                                          min=1),
            max_requests=config.get_int("bosh_max_requests", default.max_requests, min=1),
            default_hold=config.get_int("bosh_default_hold", default.default_hold, min=0),
            max_polling=config.get_int("bosh_max_polling", default.max_polling, min=0),
            consider_secure=bool(config.get_bool("consider_bosh_secure", False)),
        )


@dataclass(slots=True)
class Parked:
    """A request whose response is not ready yet: `BoshManager.wait()` on it."""

    stream: BoshStream
    rid: int


@dataclass(eq=False)
class BoshStream:
    """One live session: its BOSH state, its c2s machine and the requests parked on it."""

    manager: BoshManager
    host: str
    state: BoshSession[Body]
    c2s: BoshC2SSession = field(init=False)
    waiters: dict[int, AsyncResult] = field(default_factory=dict)

    def output(self, data: bytes) -> None:
        """The c2s session wrote `data`: answer a held request with it, or queue it."""
        self.manager.wake(self, self.state.push(data, self.manager.now()))

    def hold_output(self) -> None:
        """Keep output queued: the session is closing and it goes in the terminate body."""
        self.state.begin()

    def ended(self, error: StreamError | None) -> None:
        """The c2s session is over: answer every request with the terminate body."""
        self.manager.end(self, "remote-stream-error" if error is not None else None)


class BoshManager:
    """Every BOSH session of one server, whichever host and HTTP app its requests arrive on."""

    def __init__(self, c2s: C2SServices, options: BoshOptions,
                 serves: Callable[[str], bool], claims: Claims | None = None) -> None:
        """`serves(domain)` says whether BOSH sessions may be opened to that host."""
        self.c2s = c2s
        self.claims = claims or LoneClaims()
        self.options = options
        self.serves = serves
        self.now = c2s.clock
        self.streams: dict[str, BoshStream] = {}
        self.sweeper: gevent.Greenlet | None = None

    # -- requests ------------------------------------------------------------------

    def handle(self, data: bytes, *, secure: bool, peer: str,
               forwarded: bool = False) -> bytes | Parked | Elsewhere:
        """Take one request body; its response, a Parked request to wait on, or
        where to pass it on (unless another node `forwarded` it here already)."""
        try:
            body = parse_body(data)
            sid = body.get("sid")
            if sid is None:
                return self._create(body, secure, peer)
            stream = self.streams.get(sid)
            if stream is None:
                url = None if forwarded else self.claims.locate(sid)
                if url is not None:
                    return Elsewhere(url)
                raise BoshError("item-not-found", "unknown sid")
            rid = _number(body.get("rid"), "rid", minimum=1, maximum=MAX_RID)
            try:
                received = stream.state.receive(rid, body, self.now())
            except BoshError:
                # A broken session: the client would only go on making things worse.
                stream.c2s.close()
                raise
        except BoshError as error:
            log.debug("BOSH request from %s refused: %s", peer, error)
            return bosh_error_body(error)
        if received.resend is not None:
            return received.resend
        self._process(stream, received.process)
        return self._result(stream, rid)

    def _create(self, body: Body, secure: bool, peer: str) -> bytes | Parked:
        to = (body.get("to") or "").strip().lower().rstrip(".")
        if not to or not self.serves(to):
            raise BoshError("improper-addressing", f"no BOSH service for {to!r}")
        rid = _number(body.get("rid"), "rid", minimum=1, maximum=MAX_RID)
        wait = _number(body.get("wait"), "wait", minimum=0)
        hold = self.options.default_hold
        if body.get("hold") is not None:
            hold = min(hold, _number(body.get("hold"), "hold", minimum=0))
        options = self.options
        limits = Limits(wait=min(wait, options.max_wait), hold=hold,
                        requests=options.max_requests, inactivity=options.max_inactivity,
                        polling=options.max_polling)
        sid = str(uuid.uuid4())
        now = self.now()
        stream = BoshStream(self, to, BoshSession(sid, rid, limits, now))
        transport = BoshTransport(stream, (peer, 0), secure or options.consider_secure)
        stream.c2s = BoshC2SSession(self.c2s, transport)
        self.streams[sid] = stream
        self.claims.claim(sid)
        self._start_sweeper()
        log.info("New BOSH session %s to %s from %s (%s)", sid, to, peer,
                 "secure" if transport.secure else "insecure")
        received = stream.state.receive(rid, body, now)
        self._process(stream, received.process, create=True)
        return self._result(stream, rid)

    def _process(self, stream: BoshStream, requests: list[tuple[int, Body]],
                 create: bool = False) -> None:
        state = stream.state
        state.begin()
        try:
            for _rid, body in requests:
                if create:
                    self._open(stream, body)
                else:
                    self._feed(stream, body)
        finally:
            answered = state.settle(self.now())
            self.wake(stream, answered + [rid for rid, _body in requests if rid not in answered])

    def _open(self, stream: BoshStream, body: Body) -> None:
        c2s = stream.c2s
        c2s.open_stream({"to": stream.host, "version": "1.0",
                         "xml:lang": body.get("xml:lang") or "en"})
        limits = stream.state.limits
        # The creation response (XEP-0124 section 7.1, XEP-0206 section 3).
        stream.state.first_attrs = {
            "wait": str(limits.wait), "requests": str(limits.requests),
            "hold": str(limits.hold), "inactivity": str(limits.inactivity),
            "polling": str(limits.polling), "ver": "1.6", "from": stream.host,
            # As Prosody: the sid is the stream id (the c2s one never reaches the client).
            "authid": stream.state.sid, "secure": "true",
            "xmlns:xmpp": XBOSH, "xmpp:version": "1.0", "xmpp:restartlogic": "true",
        }

    def _feed(self, stream: BoshStream, body: Body) -> None:
        c2s = stream.c2s
        if body.restart:
            c2s.open_stream({"to": stream.host, "version": "1.0"})
            return
        for child in body.children:
            if c2s.closed:
                return
            c2s.element_received(child)
        if body.get("type") == "terminate":
            log.info("BOSH session %s terminated by the client", stream.state.sid)
            c2s.close()

    def _result(self, stream: BoshStream, rid: int) -> bytes | Parked:
        response = stream.state.response(rid)
        return response if response is not None else Parked(stream, rid)

    def wait(self, parked: Parked) -> bytes:
        """Block this greenlet until the parked request is answered (at most its `wait`)."""
        stream, rid, state = parked.stream, parked.rid, parked.stream.state
        while True:
            response = state.response(rid)
            if response is not None:
                return response
            deadline = state.deadline(rid)
            # A request waiting for an earlier rid has no deadline yet: it is woken
            # when processed, or answered when the session ends.
            timeout = self.options.max_wait if deadline is None else deadline - self.now()
            if timeout <= 0:
                self.wake(stream, state.expire(self.now()))
                continue
            result = stream.waiters.get(rid)
            if result is None:
                result = stream.waiters[rid] = AsyncResult()
            # A bare loop timer wakes the request when its time is up: a gevent
            # Timeout (what wait(timeout) makes) cost more than the rest of the wait.
            timer = gevent.get_hub().loop.timer(timeout)
            timer.start(self.wake, stream, [rid])
            try:
                response = result.wait()
            finally:
                timer.close()
            if response is not None:
                return response

    def wake(self, stream: BoshStream, rids: list[int]) -> None:
        """Wake the requests parked on `rids`: with the response when answered, else
        (a waiting request now processed) to look at its new deadline."""
        for rid in rids:
            waiter = stream.waiters.pop(rid, None)
            if waiter is not None:
                waiter.set(stream.state.response(rid))

    # -- the end --------------------------------------------------------------------

    def end(self, stream: BoshStream, condition: str | None) -> None:
        """The session is over: terminate bodies to every request, forget the sid."""
        self.wake(stream, stream.state.terminate(self.now(), condition))
        if self.streams.get(stream.state.sid) is stream:
            del self.streams[stream.state.sid]
            self.claims.release(stream.state.sid)

    def _start_sweeper(self) -> None:
        if self.sweeper is None or self.sweeper.dead:
            self.sweeper = gevent.spawn(self._sweep_while_sessions)

    def _sweep_while_sessions(self) -> None:
        period = min(1.0, self.options.max_inactivity / 4)
        while self.streams:
            gevent.sleep(period)
            self.sweep()

    def sweep(self) -> None:
        """End the sessions that had no request open for `bosh_max_inactivity` seconds."""
        now = self.now()
        for stream in [s for s in self.streams.values() if s.state.inactive(now)]:
            log.info("BOSH session %s silent for over %d seconds", stream.state.sid,
                     stream.state.limits.inactivity)
            stream.c2s.close()

    def close_all(self, error: StreamError | None = None) -> None:
        """Close every session (server shutdown), answering their parked requests."""
        for stream in list(self.streams.values()):
            stream.c2s.close(error)
        if self.sweeper is not None:
            self.sweeper.kill(block=False)


def _number(value: str | None, name: str, *, minimum: int, maximum: int | None = None) -> int:
    # ASCII digits, 1 to 16 of them: str.isdigit alone takes other scripts' digits too.
    digits = value.strip() if value is not None else ""
    if not (0 < len(digits) <= _MAX_DIGITS and digits.isascii() and digits.isdigit()):
        raise BoshError("bad-request", f"missing or invalid '{name}'")
    number = int(digits)
    if number < minimum or (maximum is not None and number > maximum):
        raise BoshError("bad-request", f"'{name}' out of range")
    return number
