"""RFC 2782 SRV target selection: priority order, then weighted random order.

Pure: the records come from a resolver and the randomness from an
injectable `random.Random`, so tests can fix the draw.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import groupby


@dataclass(frozen=True, slots=True)
class SrvRecord:
    """One SRV answer; `target` without the trailing dot."""

    priority: int
    weight: int
    port: int
    target: str


def service_unavailable(records: Iterable[SrvRecord]) -> bool:
    """RFC 2782: a single record whose target is "." says the service is
    decidedly not available at this domain."""
    records = list(records)
    return len(records) == 1 and records[0].target in ("", ".")


def order_records(records: Iterable[SrvRecord],
                  rng: random.Random | None = None) -> list[SrvRecord]:
    """The order in which to try `records`: lowest priority first; within a
    priority, RFC 2782's weighted draw picks each next record: zero weights
    first in the running sum, a uniform draw from 0 to the sum inclusive, the
    first record whose running sum reaches it (so a zero weight keeps a
    small chance, as the RFC intends)."""
    rng = rng or random.SystemRandom()
    ordered: list[SrvRecord] = []
    by_priority = sorted(records, key=lambda record: record.priority)
    for _priority, group in groupby(by_priority, key=lambda record: record.priority):
        remaining = sorted(group, key=lambda record: record.weight != 0)
        while remaining:
            total = sum(record.weight for record in remaining)
            draw = rng.randint(0, total)
            running = 0
            for index, record in enumerate(remaining):
                running += record.weight
                if running >= draw:
                    ordered.append(remaining.pop(index))
                    break
    return ordered
