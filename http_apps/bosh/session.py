"""The state of one BOSH session (XEP-0124 sections 7-14): rid window, hold, wait, inactivity.

Sans-I/O and clock-free: every method takes `now`, and those that may answer
requests return the rids they answered, so the caller can wake whoever waits on
them. Responses are kept as bytes: a repeated rid gets the very same bytes.

Rules (one place for all of them):
- rid: the next rid (last accepted + 1) is accepted for processing; a rid up to
  `requests - 1` further ahead waits, unprocessed, until the gap fills; a rid
  already answered and still among the last `requests` rids gets its response
  again; a rid accepted but not yet answered is simply waited on again; anything
  else is `item-not-found`.
- hold: once processing is over, while more than `hold` accepted requests are
  open, the oldest is answered (with whatever is queued, else empty); queued
  output answers the oldest open request at once.
- wait: an accepted request open for `wait` seconds is answered empty.
- inactivity: with no accepted request open for `inactivity` seconds, the
  session is over (`inactive`).
- terminate: every open and waiting request is answered with the terminate body.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from http_apps.bosh.body import BoshError, open_tag, response_body, terminate_body, wrap_payload

P = TypeVar("P")


@dataclass(frozen=True, slots=True)
class Limits:
    """The session's negotiated numbers, as sent in the creation response."""

    wait: int
    hold: int
    requests: int
    inactivity: int
    polling: int


@dataclass(slots=True)
class Received(Generic[P]):
    """What to do with a request: process payloads now, resend a response, or just wait."""

    process: list[tuple[int, P]] = field(default_factory=list)
    resend: bytes | None = None


class BoshSession(Generic[P]):
    """One session's requests and responses; P is whatever the caller processes per request."""

    def __init__(self, sid: str, rid: int, limits: Limits, now: float) -> None:
        self.sid = sid
        self.limits = limits
        self.rid = rid - 1               # the last rid accepted for processing
        self.open: dict[int, float] = {}     # accepted, unanswered rid -> answer-by time
        self.waiting: dict[int, P] = {}      # rid ahead of a gap -> its payload
        self.responses: dict[int, bytes] = {}
        self.outbox: list[bytes] = []
        self.busy = 0                    # requests being processed: answers wait for them
        self.idle_since: float | None = now
        self.ended = False
        self.first_attrs: dict[str, str] | None = None
        #: Every response after the first opens the same way: escaped once.
        self.open_tag = open_tag({"sid": sid})

    # -- requests -------------------------------------------------------------

    def receive(self, rid: int, payload: P, now: float) -> Received[P]:
        """Take request `rid`; raises BoshError("item-not-found") outside the window."""
        if self.ended:
            raise BoshError("item-not-found", "session is over")
        if rid == self.rid + 1:
            received: Received[P] = Received()
            self._accept(rid, payload, now, received)
            while self.rid + 1 in self.waiting:
                self._accept(self.rid + 1, self.waiting.pop(self.rid + 1), now, received)
            return received
        if self.rid + 1 < rid < self.rid + 1 + self.limits.requests:
            self.waiting.setdefault(rid, payload)
            return Received()
        if rid <= self.rid:
            if rid in self.responses:
                return Received(resend=self.responses[rid])
            if rid in self.open:
                return Received()
        raise BoshError("item-not-found", f"rid {rid} is outside the window")

    def _accept(self, rid: int, payload: P, now: float, received: Received[P]) -> None:
        self.rid = rid
        self.open[rid] = now + self.limits.wait
        self.idle_since = None
        received.process.append((rid, payload))

    def response(self, rid: int) -> bytes | None:
        """The answer to `rid`, once there is one."""
        return self.responses.get(rid)

    def deadline(self, rid: int) -> float | None:
        """When `rid` is answered empty; None while it waits for a gap to fill."""
        return self.open.get(rid)

    # -- output -----------------------------------------------------------------

    def push(self, data: bytes, now: float) -> list[int]:
        """Queue output of the stream; answers a request when one is open."""
        self.outbox.append(data)
        return [] if self.busy else self._answer(now)

    def begin(self) -> None:
        """Processing a request starts: hold answers back until `settle`."""
        self.busy += 1

    def settle(self, now: float) -> list[int]:
        """Processing is over: apply the hold rule and send what is queued."""
        self.busy -= 1
        return [] if self.busy else self._answer(now)

    def _answer(self, now: float) -> list[int]:
        if self.ended:
            return []
        answered = []
        while len(self.open) > self.limits.hold:
            answered.append(self._respond(next(iter(self.open)), now))
        if self.outbox and self.open:
            answered.append(self._respond(next(iter(self.open)), now))
        return answered

    def expire(self, now: float) -> list[int]:
        """Answer empty the open requests whose `wait` is over."""
        if self.ended:
            return []
        due = [rid for rid, deadline in self.open.items() if deadline <= now]
        return [self._respond(rid, now) for rid in due]

    def _respond(self, rid: int, now: float, body: bytes | None = None) -> int:
        if body is None:
            payload = b"".join(self.outbox)
            self.outbox.clear()
            if self.first_attrs is not None:
                attrs, self.first_attrs = {**self.first_attrs, "sid": self.sid}, None
                body = response_body(payload, attrs)
            else:
                body = wrap_payload(self.open_tag, payload)
        del self.open[rid]
        self.responses[rid] = body
        oldest = self.rid - self.limits.requests
        for old in [r for r in self.responses if r <= oldest]:
            del self.responses[old]
        if not self.open:
            self.idle_since = now
        return rid

    # -- the end ------------------------------------------------------------------

    def inactive(self, now: float) -> bool:
        """Whether no request has been open for `inactivity` seconds."""
        return (not self.ended and self.idle_since is not None
                and now - self.idle_since >= self.limits.inactivity)

    def terminate(self, now: float, condition: str | None = None) -> list[int]:
        """End the session: every open or waiting request gets the terminate body.

        Output still queued (such as a <stream:error/>) goes in that body.
        """
        if self.ended:
            return []
        body = terminate_body(condition, b"".join(self.outbox), {"sid": self.sid})
        self.outbox.clear()
        answered = [self._respond(rid, now, body) for rid in list(self.open)]
        for rid in self.waiting:
            self.responses[rid] = body
            answered.append(rid)
        self.waiting.clear()
        self.ended = True
        return answered
