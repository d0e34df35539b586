"""XEP-0198 counters and the queue of unacknowledged stanzas, without sockets.

What is queued is the caller's choice (stream management keeps serialized
stanzas: far smaller than element trees in a hibernating session).

Both counters are unsigned 32-bit and wrap to 0 after 2^32 - 1 (XEP-0198
section 4), so every comparison is made modulo 2^32: an ack is valid when it
acknowledges between zero and all of the stanzas still queued.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

MODULUS = 2 ** 32


class AckError(Exception):
    """An `h` the peer cannot have sent (Prosody's texts, XEP-0198 undefined-condition)."""

    condition = "undefined-condition"


def parse_h(value: str | None) -> int | None:
    """An `h` attribute as a number, or None when missing or not an unsigned 32-bit integer."""
    if value is None or not value.isdigit():
        return None
    number = int(value)
    return number if number < MODULUS else None


@dataclass(slots=True)  # one per stream-managed session
class AckQueue:
    """What one stream-managed session counts: stanzas handled from the client
    (`handled`), stanzas sent to it and acknowledged (`acked`), and the copies of
    those sent but not yet acknowledged, oldest first, at most `max_size`."""

    max_size: int
    handled: int = 0
    acked: int = 0
    # A list, not a deque: a deque's first block alone is some 600 bytes, more
    # than the few stanzas a hibernating session usually holds (and the queue
    # is bounded by max_size, so dropping from its front stays cheap).
    unacked: list[Any] = field(default_factory=list)

    def count_handled(self) -> None:
        self.handled = (self.handled + 1) % MODULUS

    def push(self, stanza: Any) -> bool:
        """Queue a stanza being sent; False once the queue holds more than `max_size`
        (it is queued all the same, so it is not lost)."""
        self.unacked.append(stanza)
        return len(self.unacked) <= self.max_size

    @property
    def sent(self) -> int:
        """The `h` the client will have once it has everything sent so far."""
        return (self.acked + len(self.unacked)) % MODULUS

    def ack(self, h: int) -> int:
        """Drop the stanzas `h` acknowledges and return how many; AckError when `h`
        is beyond what was sent or behind what was already acknowledged."""
        newly = (h - self.acked) % MODULUS
        if newly > len(self.unacked):
            if newly >= MODULUS // 2:
                raise AckError("Client acknowledged less stanzas than already acknowledged")
            raise AckError("Client acknowledged more stanzas than sent by server")
        del self.unacked[:newly]
        self.acked = h
        return newly

    def drain(self) -> Iterator[Any]:
        """Take every unacknowledged stanza out of the queue, oldest first."""
        while self.unacked:
            yield self.unacked.pop(0)
