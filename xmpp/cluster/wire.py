"""What nodes write to Redis, as plain values: a session's registry entry, a
stream envelope, and the window a consumer de-duplicates envelopes with.

Pure: no Redis, no sockets, so the unit tests check the encoding directly.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

# Envelope kinds: a stanza for one session, a session bound or changed, a session
# gone, a session to be closed (replaced by a login elsewhere, kicked by an admin),
# a stanza for something living on the receiver (a MUC room, an external
# component's connection, an s2s link), to be routed there, a module's cached data
# gone stale (`jid` the host, `data` {"module", "key"}), a claim another node
# took over (`jid` "KIND NAME", xmpp.ownership), a stanza for what the
# receiver holds (`jid` "KIND NAME"), for the holding module first, and a dead
# node's closed inbox all handed on (`jid` the node's name).
DELIVER, SESSION, UNBIND, CLOSE = "deliver", "session", "unbind", "close"
ROUTE, STALE, LOST, HELD, DRAINED = "route", "stale", "lost", "held", "drained"
KINDS = frozenset((DELIVER, SESSION, UNBIND, CLOSE, ROUTE, STALE, LOST, HELD, DRAINED))


@dataclass(frozen=True, slots=True)
class SessionEntry:
    """One bound resource in the registry hash of its bare JID.

    `sid` tells apart two sessions that had the same full JID in turn (only the
    one that wrote an entry may delete it); `since` orders two logins with the
    same full JID on different nodes (the later one wins). `module_data` is the
    modules' shared state on the session (xmpp.shared_session_data), by module."""

    node: str
    sid: str
    since: float
    priority: int = 0
    available: bool = False
    presence: str | None = None  # the last available presence, serialized
    module_data: dict[str, Any] = field(default_factory=dict)
    # Who got directed presence from it (MUC rooms): told it left if its node dies.
    directed: list[str] = field(default_factory=list)

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, raw: str | bytes) -> SessionEntry:
        """ValueError for anything that is no entry (a corrupt or foreign key)."""
        try:
            data = json.loads(raw)
        except (TypeError, UnicodeDecodeError) as error:
            raise ValueError(f"not a session entry: {error}") from error
        if not isinstance(data, dict):
            raise ValueError("not a session entry: not an object")
        node, sid, since = data.get("node"), data.get("sid"), data.get("since")
        priority, presence = data.get("priority", 0), data.get("presence")
        module_data, directed = data.get("module_data", {}), data.get("directed", [])
        if not (isinstance(node, str) and isinstance(sid, str)
                and isinstance(since, int | float) and isinstance(priority, int)
                and (presence is None or isinstance(presence, str))
                and isinstance(module_data, dict) and isinstance(directed, list)
                and all(isinstance(jid, str) for jid in directed)):
            raise ValueError("not a session entry: fields missing or of the wrong type")
        return cls(node, sid, float(since), priority, bool(data.get("available")), presence,
                   module_data, directed)

    def replaces(self, other: SessionEntry) -> bool:
        """Whether this login wins over `other` for the same full JID."""
        return (self.since, self.node, self.sid) > (other.since, other.node, other.sid)


class Envelope(NamedTuple):
    """One message between nodes: `id` (unique per envelope, kept on retries),
    `kind`, the full JID it is about, the sender (`origin`, a node) and the
    payload (a serialized stanza, an encoded entry, a session id: all text).
    A tuple: one is made per stanza on each side, a frozen dataclass cost
    several times as much."""

    id: str
    kind: str
    jid: str
    origin: str
    data: bytes = b""


# Envelopes per stream entry: a sender's batch for one node goes as few entries,
# since an entry each cost an XADD to pack and a field map to read per stanza.
MAX_PER_ENTRY = 256


def entry_fields(envelopes: Sequence[Envelope]) -> dict[str, bytes]:
    """The fields of one stream entry carrying `envelopes`, in order."""
    return {"batch": json.dumps([[e.id, e.kind, e.jid, e.origin, e.data.decode()]
                                 for e in envelopes], separators=(",", ":")).encode()}


def envelopes_of(fields: dict[Any, Any]) -> list[Envelope]:
    """The envelopes of one stream entry, as XREADGROUP gives its fields;
    ValueError when it is malformed (a foreign or corrupt entry)."""
    raw = fields.get(b"batch", fields.get("batch"))
    try:
        items = json.loads(raw)
    except (TypeError, ValueError) as error:
        raise ValueError(f"stream entry without a batch: {error}") from error
    if not isinstance(items, list):
        raise ValueError("stream entry batch is not a list")
    envelopes = []
    for item in items:
        if type(item) is not list or len(item) != 5:
            raise ValueError(f"malformed envelope in a stream entry: {item!r:.80}")
        envelope_id, kind, jid, origin, data = item
        if not (type(envelope_id) is str and type(kind) is str and kind in KINDS
                and type(jid) is str and type(origin) is str and type(data) is str):
            raise ValueError(f"malformed envelope in a stream entry: {item!r:.80}")
        envelopes.append(Envelope(envelope_id, kind, jid, origin, data.encode()))
    return envelopes


class DedupWindow:
    """The last `size` envelope ids a consumer handled: at-least-once delivery
    (a producer retrying an XADD whose answer it lost, an entry claimed again)
    may hand one envelope over twice; it is acted on once."""

    def __init__(self, size: int = 10000) -> None:
        assert size > 0
        self.size = size
        self._seen: set[str] = set()
        self._order: deque[str] = deque()

    def first_time(self, envelope_id: str) -> bool:
        """True the first time an id is offered (and records it), False after."""
        if envelope_id in self._seen:
            return False
        self._seen.add(envelope_id)
        self._order.append(envelope_id)
        if len(self._order) > self.size:
            self._seen.discard(self._order.popleft())
        return True

    def __len__(self) -> int:
        return len(self._order)
