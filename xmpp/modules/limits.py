"""Bandwidth limits on incoming data (Prosody's mod_limits, a global module):

    limits = {
        c2s = { rate = "10kb/s", burst = "2s" },
        s2sin = { rate = "30kb/s" },
    }
    unlimited_jids = { "bot@example.com", "trusted.example" }

Each connection of a limited kind has a token bucket of `rate` bytes per second
holding `burst` seconds' worth. A reader over its budget is paused (no more
reads until the debt is repaid), never dropped; TCP slows the peer down and
other connections are unaffected. Prosody's units: "kb" is 1000 bytes.
Defaults as Prosody's: c2s 10 KiB/s, s2sin 30 KiB/s, burst 2 s; `s2sout`
(links we dial) is limited only when configured. `unlimited_jids` lifts the
limit of a client authenticated as one of them, and of a server link once its
remote domain is authenticated as one of them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xmpp.jid import InvalidJID, parse_jid
from xmpp.moduleapi import ModuleContext

DEFAULT_RATE = 3000  # bytes/s, when a configured rate cannot be read
DEFAULT_BURST = 2.0
DEFAULT_LIMITS = {"c2s": (10 * 1024, DEFAULT_BURST), "s2sin": (30 * 1024, DEFAULT_BURST)}
LIMITED_KINDS = ("c2s", "s2sin", "s2sout")
_RATE = re.compile(r"^(\d+) ?([^/]+)/s$")
# Prosody 0.12 has b = 1 (so "500b/s" is 5000 bytes/s): a slip not copied.
_UNITS = {"b": 0, "k": 3, "m": 6, "g": 9, "t": 12}
_BURST = re.compile(r"^(\d+) ?s$")


def parse_rate(text: Any) -> int | None:
    """Bytes per second of "10kb/s", "1 mb/s", "500b/s"; None if unreadable."""
    match = _RATE.match(text) if isinstance(text, str) else None
    exponent = match and _UNITS.get(match.group(2)[:1].lower())
    if exponent is None:
        return None
    return int(match.group(1)) * 10 ** exponent


def parse_burst(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _BURST.match(value) if isinstance(value, str) else None
    return float(match.group(1)) if match else None


@dataclass
class TokenBucket:
    """`rate` bytes per second, up to `rate * burst` saved; it may go into debt."""

    rate: float
    burst: float
    clock: Callable[[], float]

    def __post_init__(self) -> None:
        self.capacity = self.rate * self.burst
        self.tokens = self.capacity
        self.updated = self.clock()

    def take(self, amount: int) -> float:
        """Spend `amount` bytes; the seconds to wait before reading again."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= amount
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


def read_limits(m: ModuleContext) -> dict[str, tuple[int, float]]:
    limits = dict(DEFAULT_LIMITS)
    configured = m.config.get("limits", {}) or {}
    if not isinstance(configured, dict):
        m.log.error("limits must be a table of connection types")
        return limits
    for kind, options in configured.items():
        options = options if isinstance(options, dict) else {}
        rate = parse_rate(options.get("rate"))
        if rate is None:
            m.log.error("Error parsing rate for %s: %r, using default rate (%d bytes/s)",
                        kind, options.get("rate"), DEFAULT_RATE)
        burst = parse_burst(options.get("burst", DEFAULT_BURST))
        if burst is None:
            m.log.error("Unable to parse burst for %s: %r, using default burst interval (%ds)",
                        kind, options.get("burst"), DEFAULT_BURST)
        limits[str(kind)] = (rate or DEFAULT_RATE, burst or DEFAULT_BURST)
    return limits


def setup(m: ModuleContext) -> None:
    limits = read_limits(m)
    unlimited = set()
    for entry in m.config.get_list("unlimited_jids", []):
        try:
            unlimited.add(str(parse_jid(str(entry))))
        except InvalidJID:
            m.log.warning("unlimited_jids: %r is not a JID", entry)

    def on_session(event: Any) -> None:
        session = event.session
        kind = getattr(session, "kind", "")
        transport = getattr(session, "transport", None)
        if kind not in LIMITED_KINDS or kind not in limits or \
                not hasattr(transport, "read_throttle"):
            return
        rate, burst = limits[kind]
        transport.read_throttle = TokenBucket(rate, burst, m.now).take

    def unthrottle(session: Any) -> None:
        if hasattr(getattr(session, "transport", None), "read_throttle"):
            session.transport.read_throttle = None

    def on_authenticated(event: Any) -> None:
        session = event.session
        host = getattr(session, "host", None)
        if host is not None and f"{session.username}@{host.name}" in unlimited:
            unthrottle(session)

    def on_s2s_established(event: Any) -> None:
        # By the remote domain, once authenticated (Prosody: from_host / to_host).
        if event.session.peer_domain in unlimited:
            unthrottle(event.session)

    m.hook("session-opened", on_session)
    if unlimited:
        m.hook_each_host("authentication-success", on_authenticated)
        m.hook("s2sin-established", on_s2s_established)
        m.hook("s2sout-established", on_s2s_established)
