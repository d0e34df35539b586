"""XEP-0045 section 7.2.14: the discussion history a room keeps and what of it
a joining occupant asked for (<history maxchars maxstanzas seconds since/>)."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.etree.ElementTree import Element

from xmpp.muc.names import MUC
from xmpp.stanza import serialize

HISTORY = f"{{{MUC}}}history"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """A message as the room broadcast it, with its <delay/>, and its size on the wire."""

    stanza: Element
    when: float
    chars: int
    stanza_id: str | None = None

    @classmethod
    def of(cls, stanza: Element, when: float, stanza_id: str | None = None) -> HistoryEntry:
        return cls(stanza, when, len(serialize(stanza)), stanza_id)


@dataclass(frozen=True, slots=True)
class HistoryRequest:
    maxchars: int | None = None
    maxstanzas: int | None = None
    since: float | None = None

    @property
    def empty(self) -> bool:
        return self.maxchars is None and self.maxstanzas is None and self.since is None


def parse_request(muc_x: Element | None, now: float) -> HistoryRequest:
    """What <history/> asks for. As Prosody, values that are no number or date
    are ignored, so a malformed request gets the room's default."""
    history = muc_x.find(HISTORY) if muc_x is not None else None
    if history is None:
        return HistoryRequest()
    since = _timestamp(history.get("since"))
    seconds = _count(history.get("seconds"))
    if seconds is not None:
        since = max(since or 0.0, now - seconds)
    return HistoryRequest(_count(history.get("maxchars")), _count(history.get("maxstanzas")),
                          since)


def _count(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if not text.isascii() or not text.isdigit():
        return None
    return int(text[:18])  # a 10^18 count asks for everything, as 10^9 does


def _timestamp(text: str | None) -> float | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class History:
    """The last messages of a room, at most `length` of them."""

    def __init__(self, length: int) -> None:
        self.entries: deque[HistoryEntry] = deque(maxlen=max(length, 0))

    def resize(self, length: int) -> None:
        if length != self.entries.maxlen:
            self.entries = deque(self.entries, maxlen=max(length, 0))

    def add(self, entry: HistoryEntry) -> None:
        if self.entries.maxlen:
            self.entries.append(entry)

    def extend(self, entries: Iterable[HistoryEntry]) -> None:
        for entry in entries:
            self.add(entry)

    def replace(self, stanza_id: str, stanza: Element) -> bool:
        """Put `stanza` in place of the entry with `stanza_id` (a retraction)."""
        for index, entry in enumerate(self.entries):
            if entry.stanza_id == stanza_id:
                self.entries[index] = HistoryEntry.of(stanza, entry.when, stanza_id)
                return True
        return False

    def select(self, request: HistoryRequest, default_count: int) -> list[HistoryEntry]:
        """The newest entries the request allows, oldest first."""
        maxstanzas = request.maxstanzas
        if request.empty:
            maxstanzas = default_count
        chosen: list[HistoryEntry] = []
        chars = 0
        for entry in reversed(self.entries):
            if maxstanzas is not None and len(chosen) >= maxstanzas:
                break
            if request.since is not None and entry.when < request.since:
                break
            if request.maxchars is not None:
                chars += entry.chars
                if chars > request.maxchars:
                    break
            chosen.append(entry)
        chosen.reverse()
        return chosen
