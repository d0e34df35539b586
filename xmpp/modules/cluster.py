"""Cluster membership (issue 21; Vireo's own, loaded when the `cluster` option is set).

A resource bound on another node is, to this node's router, one more kind of
session: a `RemoteSession` whose `send` puts the stanza on that node's Redis
stream and whose `close` asks that node to close it. The router and the modules
(bare-JID delivery by priority, presence broadcast to the user's own resources,
probes, admin kicks) then work across nodes unchanged; a remote session carries
mod_presence's state (priority, availability, last presence) from the registry,
and the state other modules declared shared (`m.share_session_data`: carbons
enabled, roster requested, PEP's +notify nodes), so carbons, roster pushes and
PEP notifications reach it too.

What this module does itself:
- keeps the registry in Redis (`xmpp.cluster.node`) from the session events
  (`resource-bind`, outbound presence, `session-data-changed`,
  `resource-unbind`) and tells the other nodes through their streams, in
  order with the stanzas;
- consumes its own stream (one greenlet): delivers stanzas to local sessions,
  mirrors other nodes' sessions as RemoteSessions; at-least-once, de-duplicated;
- beats a heartbeat; a node whose heartbeat expired is reaped by one survivor,
  the holder of its `reaping` claim: its inbox is drained in stream order (the
  entries it took and never acknowledged, then those it never read) to the
  users' remaining sessions or to offline storage, and to its rooms' new
  homes, then closed, in a bounded time; only then are its sessions removed
  (all at once, while it is still silent) and announced unavailable (see
  "Order across a node's death" below). The drainer renews its claim before
  each take; should it die too, its claim lapses and the
  next survivor goes on from the first unacknowledged entry. A pending entry
  not idle for a heartbeat timeout yet (its node may be alive after all)
  holds back the later ones rather than be overtaken, until the next watch;
- on hosts whose entities live on one node (`m.keep_entities_on_one_node`: MUC
  rooms), passes each stanza for an entity to the node it lives on
  (xmpp.cluster.homes);
- tells the other nodes when a module's cached data went stale
  (`cached-data-changed` here, `cached-data-stale` there: PEP services);
- answers the `ownership-*` events (xmpp.ownership) with claims in Redis that
  live as long as the holder's heartbeat (homes of entities "KIND:NAME"): an
  external component's domain, a BOSH sid; stanzas for what another node
  holds go on that node's stream and are routed again there. It claims each
  remote domain's outgoing s2s link on `route/remote`, so one node at a time
  federates with a domain;
- opens an HTTP listener of its own (the `address` of the option, a free port)
  serving every HTTP app, and publishes its URL, so another node can pass on
  a request for something this one holds (a BOSH session's next request).

Order across a node's death: the dead node's inbox is the hold. Until its
reaper closes it, the other nodes go on writing there what they have for the
node (its sessions stay mirrored, its rooms' homes and its s2s links
remembered), behind the older stanzas, and the drainer routes all of it
afresh; to the drainer's greenlet alone the node's sessions are gone
(`gone_here`: a RemoteSession of it has no state there, so a message goes to
the user's other resources or offline storage; its rooms are claimed again),
while the node's other greenlets still write to the inbox too. Once a take
finds nothing more, the drainer closes the inbox at once, whatever came since
(under a steady flow something always has): one Lua step renames it to the
fenced inbox, entries, consumer group and pending entries with it, so the
close takes a bounded time whatever the flow. It hands on what the fenced
inbox holds, waits until all it handed on is written (into local sockets, out
of its outbox), deletes it, removes the node's sessions from the registry in
one Lua step while the node is still silent, and only then sends `DRAINED`
(the node's name) to every live node, ahead of the unbinds: no node counts a
session gone that the registry still has, so a node back from a freeze finds
all its sessions or none (`rejoin` ends the directed presence of those
reaped). Back before that step, it keeps them, and nothing is announced.
Reaped whole, a node leaves the registry's set of nodes, so the watches of
the survivors reap it once (its joining adds it back). Senders write with
XADD NOMKSTREAM, in the same pipeline as ever: a write after the close is
refused atomically,
and the sender holds that stanza, and whatever its outbox has for the node
from then on (the outbox writes nothing more there, `shut`), in order, until
`DRAINED` reaches it on its own stream, behind what the drainer handed on to
it; then it routes them afresh, and only then counts the node's sessions,
homes and links as gone, so that nothing routed directly overtakes them. So
each stanza either entered the inbox before the close and was handed on
before `DRAINED`, or is routed after it: at-least-once, in order per sender
and recipient. A drainer that dies after the close leaves the fenced inbox to
the next claimant (drained first, before the inbox), and the hold is let go
after a heartbeat timeout or past the outbox's limit (order may then break,
nothing is lost): to the node's new inbox if it beats again, else handed on
as the drainer would; the node's sessions stay bound there until `DRAINED`
or the unbinds. The cost: the dead node's users are announced gone only once
the drain is over (about a heartbeat timeout of traffic, plus what came during
the last take), and nothing on the single-process path or on the hot
cross-node path but the XADD's flag and one test of an empty set per batch.
The drainer's node keeps its other greenlets' view apart: a room the drainer
brought back there is theirs only once the inbox is closed (`Homes.taken`).
Left unordered: what one node at a time holds (`ownership-*`: a component's
domain, a BOSH sid), which a survivor may take over at once, as its client
comes back there; and a Redis that lost its data, whose streams are gone as
if closed (with no drainer to say `DRAINED`, what meets them is held a
heartbeat timeout, then routed afresh: nothing is lost, until each node,
finding its heartbeat lapsed, makes its inbox again).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any
from xml.etree.ElementTree import Element

import gevent

from http_apps.server import HttpServer
from xmpp import namespaces as ns
from xmpp.cluster.homes import Homes
from xmpp.cluster.metrics import ClusterMetrics
from xmpp.cluster.node import ClusterNode, Outbox, RedisError
from xmpp.cluster.options import cluster_options
from xmpp.cluster.outage import OutageLog, failure_kind
from xmpp.cluster.wire import (
    CLOSE,
    DELIVER,
    DRAINED,
    HELD,
    LOST,
    ROUTE,
    SESSION,
    STALE,
    UNBIND,
    DedupWindow,
    Envelope,
    SessionEntry,
)
from xmpp.errors import StanzaError, StreamError
from xmpp.jid import JID, InvalidJID, parse_jid
from xmpp.listeners import bind_socket
from xmpp.metrics import registry as metrics_registry
from xmpp.moduleapi import ModuleContext
from xmpp.modules.presence import MODULE as PRESENCE_MODULE
from xmpp.modules.presence import (
    PresenceState,
    broadcast,
    presence,
    presence_of,
    priority_of,
    tell_directed,
)
from xmpp.stanza import SerializedElement, serialize, serialized_element, with_delay
from xmpp.stream import parse_stanza

MESSAGE = f"{{{ns.CLIENT}}}message"
RECEIVE_BLOCK_MS = 1000
RETRY_DELAY = 1.0  # seconds before the consumer reads again after a Redis error
INBOX_GONE = (": this node's inbox is gone (closed by a reaper while the node was silent,"
              " or Redis lost its data) until the node rejoins at its next beat")
WRITE_WAIT = 30.0  # seconds entries wait for their stanzas to be written before their ack
# Seconds the consumer waits for what it read to be written before it reads again,
# so that the acknowledgement goes with that read: stanzas are commonly in the
# kernel's hands within a turn of the loop, and an acknowledgement of its own
# cost a Redis round trip, a third of those of a stanza between two nodes.
ACK_WAIT = 0.005


@dataclass(slots=True)
class Hold:
    """What met a dead node's closed inbox here, kept in order until its drainer
    says all it took from there is handed on (`Cluster.release`)."""

    envelopes: list[Envelope]
    timer: gevent.Greenlet | None  # releases it should the drainer never say so


@dataclass(slots=True)
class LocalEntry:
    """The cluster's note on a local session: its registry id and login time."""

    sid: str
    since: float


class RemoteSession:
    """A resource bound on another node, as the router and modules see it."""

    kind = "c2s_remote"

    def __init__(self, cluster: Cluster, jid: JID, entry: SessionEntry) -> None:
        self.cluster = cluster
        self.jid = jid
        self.address = str(jid)  # written into each envelope for it
        self.entry = entry
        self.data: dict[str, Any] = {}
        self.update(entry)

    @property
    def node(self) -> str:
        return self.entry.node

    @property
    def module_data(self) -> dict[str, Any]:
        """The modules' state on the session; none (so it is unavailable) to
        the greenlet handing on its dead node's inbox, to which it is gone
        while the other greenlets still write to it there (`Cluster.drain`)."""
        return {} if self.cluster.gone_here(self.node) else self.data

    def update(self, entry: SessionEntry) -> None:
        """Take the presence the registry entry carries (mod_presence's state)
        and the modules' shared state."""
        self.entry = entry
        self.data[PRESENCE_MODULE] = PresenceState(
            priority=entry.priority, available=entry.available,
            presence=parse_stanza(entry.presence) if entry.presence else None,
            directed=set(entry.directed))
        self.cluster.m.shared_session_data.restore(self.data, entry.module_data)

    def send(self, stanza: Element) -> None:
        if self.cluster.gone_here(self.node):
            # Handed on as the drainer does with what was queued for the session.
            self.cluster.deliver(self.jid, serialize(stanza))
            return
        self.cluster.send_to(self.node, DELIVER, self.address, serialize(stanza).encode())

    def close(self, error: StreamError | None = None) -> None:
        reason = {"sid": self.entry.sid, "condition": error.condition if error else None,
                  "text": error.text if error else None}
        self.cluster.send_to(self.node, CLOSE, self.address, json.dumps(reason).encode())

    def describe(self) -> dict[str, object]:
        return {"kind": self.kind, "id": str(self.jid), "node": self.node, "address": None,
                "port": None, "secure": None, "listener": None}


class Cluster:
    """This node as a member: registry writes, its stream's consumer, the reaper."""

    def __init__(self, m: ModuleContext, node: ClusterNode, queue_limit: int) -> None:
        self.m = m
        self.node = node
        self.outbox = Outbox(node, m.log, self.refused, self.inbox_closed, limit=queue_limit)
        self.router = m.service("router")
        self.dedup = DedupWindow()
        self.peers: list[str] = []  # live nodes but this one, refreshed each beat
        self.consumer: gevent.Greenlet | None = None
        self.acks: list[bytes] = []  # entries of this node's stream handled, for the next read
        self.reading = False  # whether the consumer waits for Redis's answer to a read
        self.lapsed = False  # the heartbeat lapsed, and this node has not rejoined since
        self.beaten = time.monotonic()  # when the last answered beat was sent
        self.unanswered = False  # whether a beat's answer was lost since that one
        self.homes = Homes(node, self.forward, self.fire_on, self.gone_here)
        self.http: Any = None  # the listener for requests other nodes pass on
        # Remote domain -> the peer linked to it, trusted until its inbox is
        # found closed (like homes: what waits there for the link keeps its place).
        self.s2s_holders: dict[str, str] = {}
        self.reapers: dict[str, gevent.Greenlet] = {}  # dead node -> who reaps it here
        # (dead node, greenlet handing on what was meant for it): to that greenlet
        # the node's sessions are gone (`gone_here`), to the others not yet.
        self.handing_on: set[tuple[str, gevent.Greenlet]] = set()
        # Dead node -> the last entry of its inbox this node handled: the next
        # pass goes on after it, not held back by entries whose acks wait for
        # their stanzas to be written.
        self.drained_to: dict[str, bytes] = {}
        self.holds: dict[str, Hold] = {}  # dead node -> what met its closed inbox here
        # Dead nodes whose closed inbox was all handed on: what meets it now is
        # routed afresh at once (until the node is back).
        self.released: set[str] = set()

    # -- local sessions -> registry and peers --------------------------------------

    def local(self, session: Any) -> LocalEntry:
        return self.m.session_data(session, lambda: LocalEntry(secrets.token_hex(8),
                                                               self.m.now()))

    def note_of(self, session: Any) -> LocalEntry | None:
        """The cluster's note on a local session that has one (bound, announced)."""
        return getattr(session, "module_data", {}).get(self.m.name)

    def publish_session(self, session: Any, state: PresenceState | None = None) -> None:
        """Write a local session's entry and announce it; `state` is the presence
        it is about to have (by default the one it has)."""
        note = self.local(session)
        state = state or session.module_data.get(PRESENCE_MODULE) or PresenceState()
        entry = SessionEntry(self.node.name, note.sid, note.since, state.priority,
                             state.available,
                             serialize(state.presence) if state.presence is not None else None,
                             self.m.shared_session_data.export(session.module_data),
                             sorted(state.directed))
        self.write(self.node.put_session, session.jid, entry)
        self.broadcast(SESSION, session.jid, entry.encode().encode())

    def write(self, action: Callable[..., object], *args: Any) -> None:
        """A registry write for a local session; a Redis failure is logged, never
        the session's problem (peers still learn through the outbox, and a lapsed
        heartbeat writes every session again)."""
        try:
            action(*args)
        except RedisError as error:
            self.m.log.warning("Cluster registry not updated: %s", error)

    def presence_sent(self, event: Any) -> None:
        """A local client's presence: the registry carries the state it gives the
        session (written before mod_presence sends it, so peers see it first).
        Broadcast presence sets availability (unavailable ends directed presence
        too); directed presence adds or removes its recipient, for the reaper to
        tell should this node die."""
        stanza, session = event.stanza, event.origin
        kind, to = stanza.get("type"), stanza.get("to")
        if kind not in (None, "unavailable") or session.jid is None:
            return
        current = presence_of(session)
        if to:
            directed = current.directed | {to} if kind is None else current.directed - {to}
            if directed == current.directed:
                return
            state = replace(current, directed=directed)
        elif kind is None:
            state = PresenceState(priority_of(stanza), True,
                                  with_delay(stanza, session.jid.domain, self.m.now()),
                                  set(current.directed))
        else:
            state = PresenceState(priority_of(stanza), False)
        self.publish_session(session, state)

    def data_changed(self, event: Any) -> None:
        """A module's shared state on a local session changed: announce it (a
        session not yet bound is announced whole at `resource-bind`)."""
        if self.note_of(event.session) is not None:
            self.publish_session(event.session)

    def unbound(self, session: Any) -> None:
        note = self.local(session)
        self.write(self.node.remove_session, session.jid, note.sid, self.node.name)
        self.broadcast(UNBIND, session.jid, note.sid.encode())

    def broadcast(self, kind: str, jid: JID, data: bytes) -> None:
        envelope = self.envelope(kind, jid, data)
        for peer in self.peers:
            self.outbox.put(peer, envelope)

    def send_to(self, node: str, kind: str, jid: JID | str, data: bytes) -> None:
        self.outbox.put(node, self.envelope(kind, jid, data))

    def forward(self, node: str, stanza: Element, to: JID) -> None:
        self.send_to(node, ROUTE, to, serialize(stanza).encode())

    def fire_on(self, host: str, event: str, jid: JID) -> None:
        local = self.router.hosts.get(host)
        if local is not None:
            local.fire(event, jid=jid)

    def route_to_home(self, event: Any) -> bool:
        """`route/local` on hosts whose entities live on one node: a stanza for
        an entity living elsewhere goes there. Without Redis to say where, it is
        refused at once rather than served by a second copy of the room."""
        try:
            return self.homes.route(event)
        except RedisError as error:
            self.m.log.warning("Cluster: no home for %s (%s)", event.to, error)
            self.router.bounce(event.stanza, event.origin,
                               StanzaError("service-unavailable", "Cluster store unreachable"))
            return True

    def entity_ended(self, event: Any) -> None:
        try:
            self.homes.ended(event.jid)
        except RedisError as error:  # the claim stays: harmless, freed with the node
            self.m.log.warning("Cluster: claim on %s not freed (%s)", event.jid, error)

    def cache_changed(self, event: Any) -> None:
        data = json.dumps({"module": event.module, "key": event.key}).encode()
        self.broadcast(STALE, JID(None, event.host), data)

    def refused(self, node: str, envelope: Envelope) -> None:
        """The outbox is full (Redis unreachable too long): a stanza for another
        node goes back to its sender now, as an error, rather than be lost
        later; the registry's state is written afresh once Redis is back."""
        stanza = parse_stanza(envelope.data.decode()) if envelope.kind in (DELIVER, ROUTE, HELD) \
            else None
        if stanza is not None and stanza.tag.startswith(f"{{{ns.CLIENT}}}"):
            self.router.bounce(stanza, None,
                               StanzaError("resource-constraint", "Cluster queue full"))
        else:  # a server's own element (<db:verify/>) waits for its timeout
            self.m.log.debug("Cluster queue full: %s envelope for %s not sent to %s",
                             envelope.kind, envelope.jid, node)

    def envelope(self, kind: str, jid: JID | str, data: bytes) -> Envelope:
        """An envelope about `jid` (as text already, when the caller keeps it so)."""
        return Envelope(self.node.new_id(), kind, str(jid), self.node.name, data)

    def inbox_closed(self, node: str, envelopes: list[Envelope]) -> None:
        """What this node sent met `node`'s inbox closed (the outbox's writer
        calls this before its next write). Its drainer may still be handing on
        what it took from there last: this node holds what it meant for the
        node, in order (the outbox writes nothing more there, `shut`, but hands
        it here), until the drainer says it is all written and the node's
        sessions are gone (`DRAINED`), or a heartbeat timeout passed, or the
        hold is as large as the outbox's limit (`hold_expired`). Once
        released, at once."""
        if node in self.released:
            with self.gone_to_me(node):
                self.handle_closed(node, envelopes)
            return
        self.outbox.shut.add(node)
        hold = self.holds.get(node)
        if hold is None:
            timer = gevent.spawn_later(self.node.timeout, self.hold_expired, node)
            hold = self.holds[node] = Hold([], timer)
        elif len(hold.envelopes) >= self.outbox.limit and hold.timer is not None:
            self.m.log.warning("Cluster: more than %d stanzas wait for the drain of %s;"
                               " routed afresh now", self.outbox.limit, node)
            hold.timer.kill(block=False)
            hold.timer = gevent.spawn(self.hold_expired, node)
        hold.envelopes.extend(envelopes)

    def release_hold(self, node: str) -> None:
        """`node`'s closed inbox is all handed on and its sessions are gone from
        the registry, its drainer said: what this node held for it, then what
        its outbox has for it, is handed on as the drainer would have, in
        order, and its sessions are gone here too."""
        if node == self.node.name:
            return  # back, and told late of its own reaping: nothing of it is mirrored
        self.hand_on_hold(node)
        # From here on nothing yields until the sessions are gone here: nothing
        # routed directly overtakes what was meant for them.
        self.released.add(node)
        self.m.log.info("Cluster: the inbox of %s is closed", node)
        for resources in list(self.router.sessions.values()):
            for session in list(resources.values()):
                if isinstance(session, RemoteSession) and session.node == node:
                    self.router.unbind(session)
        self.forget_links(node)
        self.counted_dead(node)
        # Nothing is routed there any more but what was on its way: should it be
        # back (a restart), its inbox says so.
        self.outbox.shut.discard(node)

    def hold_expired(self, node: str) -> None:
        """No `DRAINED` for `node` within a heartbeat timeout of the first write
        that met its inbox closed (or the hold outgrew the outbox's limit): the
        node beats again (back after its inbox closed, before the reaper got to
        its sessions), or its drainer died or lags. What was held is routed
        afresh now (order may break, nothing is lost): back, to its new inbox;
        else as the drainer would. Its sessions stay: only the registry's
        dropping them, which `DRAINED` follows, makes them gone."""
        try:
            back = self.node.beating(node)
        except RedisError as error:
            self.m.log.warning("Cluster: is %s back? (%s)", node, error)
            back = False
        if back:
            self.outbox.wait_sent(node, self.node.timeout / 3)
            held = self.end_hold(node)
            self.outbox.shut.discard(node)
            for envelope in held + self.outbox.take(node):
                self.outbox.put(node, envelope)
        else:
            self.hand_on_hold(node)
            self.outbox.shut.discard(node)  # the next write meeting it closed holds anew

    def hand_on_hold(self, node: str) -> None:
        """Hand on what this node holds for `node`'s closed inbox, then what its
        outbox has for it, in order, as the drainer would; the hold ends."""
        # What is being written there comes back into the hold; what is queued
        # for it is later (and the next batches hold none of it once `shut`).
        self.outbox.wait_sent(node, self.node.timeout / 3)
        hold = self.holds.setdefault(node, Hold([], None))
        hold.envelopes += self.outbox.take(node)
        with self.gone_to_me(node):
            # What is routed there meanwhile (should handing on wait for Redis)
            # joins the hold's end.
            while hold.envelopes:
                envelopes, hold.envelopes = hold.envelopes, []
                self.handle_closed(node, envelopes)
        self.end_hold(node)

    def end_hold(self, node: str) -> list[Envelope]:
        """What this node holds for `node`, the hold ended (a timer's release
        and DRAINED may both come: the second finds none)."""
        hold = self.holds.pop(node, None)
        if hold is None:
            return []
        if hold.timer is not None and hold.timer is not gevent.getcurrent():
            hold.timer.kill(block=False)
        return hold.envelopes

    def forget_links(self, node: str) -> None:
        """`node`'s inbox is closed: its rooms and s2s links live elsewhere now."""
        self.homes.forget(node)
        self.s2s_holders = {domain: holder for domain, holder in self.s2s_holders.items()
                            if holder != node}

    def handle_closed(self, node: str, envelopes: list[Envelope]) -> None:
        """Act on envelopes meant for closed `node`'s inbox, as its drainer does."""
        for envelope in envelopes:
            try:
                self.handle(envelope, orphaned=True)
            except Exception:
                self.m.log.exception("Cluster envelope %s (%s) for closed %s failed",
                                     envelope.id, envelope.kind, node)

    @contextmanager
    def gone_to_me(self, node: str) -> Iterator[None]:
        """Within, the running greenlet hands on what was meant for dead `node`:
        to it the node's sessions are gone, and its rooms and links live
        nowhere yet, while the other greenlets still write to its inbox."""
        mark = (node, gevent.getcurrent())
        self.handing_on.add(mark)
        try:
            yield
        finally:
            self.handing_on.discard(mark)

    def gone_here(self, node: str) -> bool:
        """Whether the running greenlet hands on what was meant for dead `node`."""
        return bool(self.handing_on) and (node, gevent.getcurrent()) in self.handing_on

    # -- the mirror of other nodes' sessions ---------------------------------------------

    def mirror(self, jid: JID, entry: SessionEntry) -> None:
        """Bind (or update) a RemoteSession for another node's session; the later
        of two logins with one full JID wins, the other is closed (conflict)."""
        current = self.router.resources(jid.bare).get(jid.resource or "")
        if isinstance(current, RemoteSession):
            if current.node == entry.node:
                # One node holds one session per full JID: its latest word counts
                # (a new sid is what it writes on coming back from a partition).
                current.update(entry)
                return
            if not entry.replaces(current.entry):
                return
            self.router.unbind(current)  # its own node closes it, quietly here
        elif current is not None:
            note = self.note_of(current)
            if note is not None and not entry.replaces(
                    SessionEntry(self.node.name, note.sid, note.since)):
                return  # ours is the later login: the other node closes its own
        self.router.bind(RemoteSession(self, jid, entry), jid)

    def look_up(self, event: Any) -> None:
        """`session-missing`: a session bound on a peer a moment ago may not have
        reached this node's stream yet; the registry has it already."""
        try:
            entries = self.node.sessions_for(event.to.bare)
        except RedisError as error:
            self.m.log.warning("Cluster registry lookup failed: %s", error)
            return
        for jid, entry in entries:
            if entry.node in self.peers and (event.to.resource is None
                                             or jid.resource == event.to.resource):
                self.mirror(jid, entry)

    def refresh_for_probe(self, event: Any) -> None:
        """`presence/bare`: a probe is answered from the presence of the user's
        sessions, so those on peers are read afresh from the registry (written
        before each broadcast) rather than from an envelope still on its way."""
        if event.stanza.get("type") == "probe" and self.router.resources(event.to):
            self.look_up(event)

    def unmirror(self, jid: JID, sid: str) -> None:
        current = self.router.resources(jid.bare).get(jid.resource or "")
        if isinstance(current, RemoteSession) and current.entry.sid == sid:
            self.router.unbind(current)

    def unbind_mirrored(self, jid: JID, sid: str, origin: str) -> None:
        """`origin` says that the session `sid` of `jid` is gone. When another node
        than the session's says so, it reaped it, once its inbox was closed and
        handed on (its `DRAINED` came first, unless this node was no peer of
        its then): what this node held or queued for the node is handed on
        ahead of what is routed here from now on."""
        current = self.router.resources(jid.bare).get(jid.resource or "")
        if not isinstance(current, RemoteSession) or current.entry.sid != sid:
            return
        if current.node != origin and current.node not in self.released:
            self.release_hold(current.node)
        self.unmirror(jid, sid)

    def resync(self, *, prune: bool = False) -> None:
        """Mirror every live peer's registry entries (on joining: updates sent
        before the peers knew of this node are in the registry, not the stream).
        With `prune`, also drop the mirrored sessions the registry no longer
        has (after a partition: their unbinds went to a reaper, not here), and
        tell this node's clients they left; only those mirrored before the
        registry was read, as the stream may bring newer ones meanwhile."""
        before = [session for resources in list(self.router.sessions.values())
                  for session in resources.values() if isinstance(session, RemoteSession)]
        listed: set[tuple[JID, str]] = set()
        for peer in self.peers:
            for jid, entry in self.node.sessions_of(peer):
                self.mirror(jid, entry)
                listed.add((jid, entry.sid))
        if not prune:
            return
        for session in before:
            bound = self.router.resources(session.jid.bare).get(session.jid.resource or "")
            if bound is session and (session.jid, session.entry.sid) not in listed:
                self.router.unbind(session)
                if session.entry.available:
                    broadcast(self.m, presence("unavailable", str(session.jid), ""),
                              session.jid)

    # -- this node's stream ------------------------------------------------------------

    def consume(self) -> None:
        recovering = False  # after a Redis error: first what was read but not handled
        outage = OutageLog(self.m.log, "Cluster stream read")
        while True:
            # Entries handled since the last read are acknowledged with this one.
            acks, self.acks = self.acks, []
            try:
                asked = time.monotonic()
                self.reading = True
                try:
                    entries = self.node.receive(RECEIVE_BLOCK_MS, pending=recovering, ack=acks)
                finally:
                    self.reading = False
                outage.succeeded()
                if time.monotonic() - asked > self.node.timeout / 2:
                    # An answer that long on its way (the network cut meanwhile)
                    # may hold entries a reaper has taken since: only those still
                    # this node's are handled, read again (which makes them fresh,
                    # so no reaper takes them while they are). An empty one too:
                    # it may answer a read sent again, the first one's entries lost.
                    self.m.log.warning("Cluster stream read came late; reading it again")
                    recovering = True
                    continue
                if recovering and not entries:
                    recovering = False
                    continue
                acking = self.handle_all(self.node.name, entries, orphaned=False)
                if acking is not None:
                    acking.join(ACK_WAIT)
            except RedisError as error:
                outage.failed(error, INBOX_GONE if failure_kind(error) == "NOGROUP" else "")
                self.acks[:0] = acks  # maybe not acknowledged: again with the next read
                recovering = True
                gevent.sleep(RETRY_DELAY)
            except Exception:
                self.m.log.exception("Cluster stream consumer failed; retrying")
                gevent.sleep(RETRY_DELAY)

    def handle_all(self, node: str, entries: list[tuple[bytes, list[Envelope] | None]],
                   *, orphaned: bool) -> gevent.Greenlet | None:
        """Act on the envelopes of `entries` read from `node`'s stream; the
        greenlet that acknowledges them once their stanzas are written, if any
        were (else they are acknowledged already)."""
        written: dict[int, Any] = {}  # the transports stanzas were written to
        for _entry_id, envelopes in entries:
            if envelopes is None:
                self.m.log.warning("Malformed entry on the stream of %s dropped", node)
                continue
            for envelope in envelopes:
                if not self.dedup.first_time(envelope.id):
                    continue
                try:
                    transport = self.handle(envelope, orphaned)
                except Exception:
                    self.m.log.exception("Cluster envelope %s (%s) failed", envelope.id,
                                         envelope.kind)
                else:
                    if transport is not None:
                        written[id(transport)] = transport
        entry_ids = [entry_id for entry_id, _ in entries]
        if written:
            return gevent.spawn(self.ack_when_written, node, entry_ids,
                                list(written.values()), orphaned)
        self.acknowledge(node, entry_ids, orphaned)
        return None

    def acknowledge(self, node: str, entry_ids: list[bytes], orphaned: bool) -> None:
        """Handled entries of this node's own stream go with the consumer's next
        read (one round trip for both, where an ack of its own cost a second),
        unless it waits in a read already; a dead node's at once."""
        if not orphaned and node == self.node.name and not self.reading:
            self.acks.extend(entry_ids)
        else:
            self.node.ack(node, entry_ids, orphaned=orphaned)

    def ack_when_written(self, node: str, entry_ids: list[bytes],
                         transports: Iterable[Any], orphaned: bool) -> None:
        """Entries count as handled once their stanzas are in the kernel's
        socket buffers: until then a node killed leaves them pending, for the
        reaper to deliver elsewhere. A client that does not read holds its
        entries back for WRITE_WAIT at most, and nobody else's meanwhile."""
        deadline = self.m.now() + WRITE_WAIT
        gevent.sleep(0)  # the writers of transports without `drained` run once
        for transport in transports:
            drained = getattr(transport, "drained", None)
            if drained is not None:
                drained(max(0.0, deadline - self.m.now()))
        try:
            self.acknowledge(node, entry_ids, orphaned)
        except RedisError as error:
            # Still pending: read again after a reconnection (de-duplicated).
            self.m.log.warning("Cluster entries not acknowledged: %s", error)

    def handle(self, envelope: Envelope, orphaned: bool) -> Any:
        """Act on one envelope; the transport a stanza was written to, if any."""
        if envelope.kind == LOST:  # its `jid` is "KIND NAME", no JID
            kind, _, name = envelope.jid.partition(" ")
            if not orphaned:
                self.fire_everywhere("ownership-lost", kind=kind, key=name)
            return None
        if envelope.kind == HELD:  # its `jid` is "KIND NAME" too
            self.take_held(envelope)
            return None
        if envelope.kind == DRAINED:  # its `jid` is a node's name
            if not orphaned:
                self.release_hold(envelope.jid)
            return None
        try:
            jid = parse_jid(envelope.jid)
        except InvalidJID:
            return None
        if envelope.kind == DELIVER:
            return self.deliver(jid, envelope.data.decode())
        if envelope.kind == ROUTE:
            # Routed here afresh: to this node's entity, or on to where it lives now.
            self.router.route(parse_stanza(envelope.data.decode()))
            return None
        if orphaned:
            return None  # what a dead node was told about sessions no longer matters
        if envelope.kind == SESSION:
            entry = SessionEntry.decode(envelope.data)
            if entry.node != self.node.name:
                self.mirror(jid, entry)
        elif envelope.kind == UNBIND:
            self.unbind_mirrored(jid, envelope.data.decode(), envelope.origin)
        elif envelope.kind == CLOSE:
            self.close_local(jid, json.loads(envelope.data))
        elif envelope.kind == STALE:
            host = self.router.hosts.get(jid.domain)
            stale = json.loads(envelope.data)
            if host is not None:
                host.fire("cached-data-stale", module=stale["module"], key=stale["key"])
        return None

    def deliver(self, jid: JID, wire: str) -> Any:
        """A stanza (as the sender serialized it) for one of this node's
        sessions (the transport it was written to); when that has gone, a chat
        message goes to the user's bare JID (remaining sessions, else offline
        storage, RFC 6121 8.5.3.2.1) and the rest is bounced."""
        session = self.router.resources(jid.bare).get(jid.resource or "")
        if session is not None and not isinstance(session, RemoteSession):
            stanza = as_sent(session, wire)
            session.send(stanza if stanza is not None else parse_stanza(wire))
            return getattr(session, "transport", None)
        stanza = parse_stanza(wire)
        host = self.router.hosts.get(jid.domain)
        if host is not None and stanza.tag == MESSAGE and \
                stanza.get("type", "normal") in ("normal", "chat", "headline"):
            self.router.to_bare(host, stanza, jid.bare, None)
        else:
            self.router.bounce(stanza, None, StanzaError("service-unavailable"))
        return None

    def close_local(self, jid: JID, reason: dict[str, Any]) -> None:
        session = self.router.resources(jid.bare).get(jid.resource or "")
        if session is None or isinstance(session, RemoteSession):
            return
        note = self.note_of(session)
        if note is not None and note.sid == reason.get("sid"):
            condition = reason.get("condition")
            session.close(StreamError(condition, reason.get("text")) if condition else None)

    # -- claims: what one node at a time holds (xmpp.ownership) ---------------------

    def claim(self, event: Any) -> None:
        """`ownership-claim`; while Redis cannot be reached a node holds what it
        asks for (serving beats refusing), and says so."""
        try:
            holder = self.node.claim(event.kind, event.key, take=event.replace)
        except RedisError as error:
            self.m.log.warning("Cluster claim of %s %s not recorded: %s", event.kind,
                               event.key, error)
            return
        if holder is None:
            return
        if event.replace:
            self.send_lost(holder, event.kind, event.key)
        else:
            event.holder = holder

    def release(self, event: Any) -> None:
        self.write(self.node.release, event.kind, event.key)

    def holder(self, kind: str, name: str) -> str | None:
        """The live peer holding `kind`/`name` (None: this node, nobody, or a dead one)."""
        try:
            holder = self.node.holder(kind, name)
        except RedisError as error:
            self.m.log.warning("Cluster claim lookup failed: %s", error)
            return None
        return holder if holder in self.peers else None

    def pass_on(self, event: Any) -> str | None:
        """`ownership-forward`: the stanza goes to the holder (`take_held` there),
        whose name comes back."""
        holder = self.holder(event.kind, event.key)
        if holder is None:
            return None
        self.outbox.put(holder, Envelope(self.node.new_id(), HELD, f"{event.kind} {event.key}",
                                         self.node.name, serialize(event.stanza).encode()))
        return holder

    def take_held(self, envelope: Envelope) -> None:
        """A stanza for what this node holds: the holding module's, unless it
        leaves it to the router (which finds this node the holder and delivers)."""
        kind, _, name = envelope.jid.partition(" ")
        stanza = parse_stanza(envelope.data.decode())
        if not self.m.fire("ownership-forwarded", kind=kind, key=name, stanza=stanza):
            self.router.route(stanza)

    def route_on(self, node: str, stanza: Element) -> bool:
        try:
            to = parse_jid(stanza.get("to", ""))
        except InvalidJID:
            return False  # the router bounces it here
        self.forward(node, stanza, to)
        return True

    def locate(self, event: Any) -> None:
        """`ownership-locate`: the holder's HTTP URL, for a request to be passed on."""
        try:
            holder, url = self.node.located(event.kind, event.key)
        except RedisError as error:
            self.m.log.warning("Cluster claim lookup failed: %s", error)
            return
        if holder in self.peers:
            event.http = url

    def agree(self, event: Any) -> None:
        """`shared-setting` (`setting`, `fingerprint`): a setting every node must
        have alike (`dialback_secret`); `differs` names the live nodes that have
        it otherwise. Without Redis to ask, the node starts unchecked (serving
        beats refusing), and says so."""
        try:
            event.differs = self.node.agree(event.setting, event.fingerprint)
        except RedisError as error:
            self.m.log.warning("Cluster: %s not compared with the other nodes' (%s)",
                               event.setting, error)

    def route_remote(self, event: Any) -> bool:
        """`route/remote`: one node at a time links to a remote domain; the
        others pass it what they have for there."""
        if not self.m.provided("net", "s2s"):
            return False  # no federation at all
        # An s2s claim is never released, so the holder is asked once.
        remembered = self.s2s_holders.get(event.to_host)
        if remembered is not None and not self.gone_here(remembered):
            return self.route_on(remembered, event.stanza)
        try:
            holder = self.node.claim("s2s", event.to_host)
        except RedisError as error:
            self.m.log.warning("Cluster s2s claim failed (%s); linking from here", error)
            return False
        if holder not in self.peers:
            return False
        if remembered is None:  # a dead one is, until its inbox is found closed
            self.s2s_holders[event.to_host] = holder
        return self.route_on(holder, event.stanza)

    def send_lost(self, node: str, kind: str, name: str) -> None:
        self.outbox.put(node, Envelope(self.node.new_id(), LOST, f"{kind} {name}",
                                       self.node.name))

    def fire_everywhere(self, event: str, **fields: Any) -> None:
        self.m.fire(event, **fields)
        for host in list(self.m.hosts().values()):
            host.fire(event, **fields)

    def verify_claims(self, lapsed: bool) -> None:
        for kind, name in self.node.verify_claims(every=lapsed):
            self.m.log.info("Cluster: %s %s is held by another node now", kind, name)
            self.fire_everywhere("ownership-lost", kind=kind, key=name)

    def serve_http(self, address: str) -> None:
        """The listener other nodes pass HTTP requests to, and its URL published."""
        app = self.m.service("wsgi_app")()
        if app is None:
            return
        sock = bind_socket(address, 0)
        if sock is None:
            return
        self.http = HttpServer(sock, app, service="http")
        self.http.start()
        host = f"[{address}]" if ":" in address else address
        url = f"http://{host}:{self.http.port}"
        self.write(self.node.publish_http, url)
        self.m.log.info("Cluster: forwarded HTTP requests at %s", url)

    # -- heartbeat and dead nodes -------------------------------------------------

    def beat(self) -> None:
        """The heartbeat, in a loop of its own so that reaping work never delays it."""
        sent = time.monotonic()
        try:
            expired = self.node.beat()
        except RedisError:
            self.unanswered = True
            raise
        # Redis says whether the key had expired; but a beat whose answer was
        # lost (the link cut) may have renewed it since, so then the time since
        # the last answered beat counts too. Only then: a beat answered late
        # (it hung through a cut) renewed the key when it went through, so the
        # beat after it, answered, has no lapse to make up for (a second rejoin).
        lapsed = expired or (self.unanswered and sent - self.beaten >= self.node.timeout)
        self.unanswered = False
        self.beaten = sent
        if lapsed:
            self.m.log.warning("Cluster heartbeat had lapsed; registering sessions again")
            self.lapsed = True
        # Until a rejoin went through (Redis may fail again meanwhile).
        self.verify_claims(self.lapsed)
        if self.lapsed:
            self.rejoin()
            self.lapsed = False

    def rejoin(self) -> None:
        """Back after too long without a beat (cut off by the network, or
        overloaded): the others have reaped this node's sessions, or will find
        it alive before they do (the reaper removes nothing once it beats again).
        Its sessions are written again, each under a new sid so that an unbind a
        reaper sent meanwhile matches none of them, and announced to their
        contacts, who were told they left; what it mirrors is read afresh, as
        the changes peers sent meanwhile went to the reaper. What it queued for
        its peers meanwhile goes first (de-duplicated there), so the outbox has
        room for the sessions' entries (within a third of the heartbeat's time).
        A session the reaper removed had its directed presence ended too."""
        self.outbox.wait_empty(self.node.timeout / 3)
        self.node.join()
        # Once this node beats, no reaper removes anything of it: what the
        # registry has of it now was not reaped.
        kept = {(jid, entry.sid) for jid, entry in self.node.sessions_of(self.node.name)}
        self.watch()
        for resources in list(self.router.sessions.values()):
            for session in list(resources.values()):
                note = self.note_of(session)
                if note is None:
                    continue
                if (session.jid, note.sid) not in kept:
                    self.end_directed(session)
                note.sid = secrets.token_hex(8)
                self.publish_session(session)
                state = presence_of(session)
                if state.available and state.presence is not None:
                    broadcast(self.m, state.presence, session.jid)
        self.resync(prune=True)
        self.homes.verify()
        # As on joining: what peers changed before they saw this node again.
        self.m.add_timer(2 * self.node.timeout / 3 + 1, lambda: self.resync(prune=True))

    def end_directed(self, session: Any) -> None:
        """A reaper removed this local session while the node was silent and told
        the recipients of its directed presence that it left (rooms took it
        out): that presence is over, and each recipient this server hosts hears
        so (`directed-presence-ended`: a room tells the client it is no longer
        an occupant, so that it joins again)."""
        state = presence_of(session)
        if not state.directed:
            return
        session.module_data[PRESENCE_MODULE] = replace(state, directed=set())
        for to in sorted(state.directed):
            try:
                target = parse_jid(to)
            except InvalidJID:
                continue
            host = self.router.hosts.get(target.domain)
            if host is not None:
                host.fire("directed-presence-ended", session=session, to=target)

    def watch(self) -> None:
        live, dead = self.node.nodes()
        peers = [name for name in live if name != self.node.name]
        # This node silent is its own to handle (`rejoin`), never its own reaper.
        dead = [name for name in dead if name != self.node.name]
        self.set_peers(peers)
        for name in dead:
            # In a greenlet of its own, one per dead node: a long drain delays
            # neither this watch nor another node's reaping, and a watch from
            # `rejoin` never drains the same inbox a second time at once.
            if name not in self.reapers:
                self.reapers[name] = gevent.spawn(self.reap_in_turn, name)

    def counted_dead(self, node: str) -> None:
        """A reaper closed `node`'s inbox (a write met it closed, or it removed a
        session of `node`): this node may have missed the short while `node`
        counted as dead (between two of its watches), but `node` reads nothing
        this node sends until it has joined again. So `node` is no peer until
        the next watch finds it beating; should it rejoin, it reads what
        changed meanwhile from the registry."""
        if node in self.peers:
            self.m.log.info("Cluster: %s was reaped", node)
            self.set_peers([peer for peer in self.peers if peer != node])

    def set_peers(self, peers: list[str]) -> None:
        # A node beating again has an inbox again: its next death is drained anew.
        self.released.difference_update(peers)
        self.outbox.shut.difference_update(peers)
        if peers == self.peers:
            return
        # Until this line names a new node, what changes here does not reach it.
        self.m.log.info("Cluster peers: %s", ", ".join(peers) or "none")
        gone = [peer for peer in self.peers if peer not in peers]
        self.peers = peers
        for node in gone:
            # What waits for an answer from there (a <db:verify/>) is asked again.
            self.fire_everywhere("ownership-holder-gone", node=node)

    def reap_in_turn(self, dead: str) -> None:
        try:
            self.reap(dead)
        except RedisError as error:
            self.m.log.warning("Cluster: reaping %s failed (%s); again at the next watch",
                               dead, error)
        except Exception:
            self.m.log.exception("Cluster: reaping %s failed", dead)
        finally:
            self.reapers.pop(dead, None)

    def reap(self, dead: str) -> None:
        """A node stopped beating: one survivor, the holder of its reaping claim,
        hands on what was queued for it and closes its inbox (`drain`), then
        removes its sessions from the registry in one step while it is still
        silent, and only then says `DRAINED` and tells their contacts and the
        users' other resources they are gone. Until its inbox is closed the
        other nodes go on writing there, in order behind the older stanzas;
        until the registry dropped its sessions no node counts them gone, so a
        node back from a freeze meanwhile finds them all still its own, or
        none (`rejoin`). A node reaped whole has left the set of nodes: a reap
        started from an older listing does nothing. A restart reaping its
        previous run says no `DRAINED` (below)."""
        if not self.node.claim_reaping(dead) or not self.node.is_known(dead) \
                or not self.drain(dead):
            return
        # A restart reaps its previous run, whose heartbeat may not have expired.
        while_dead = dead != self.node.name
        gone = self.node.remove_sessions_of(dead, while_dead=while_dead)
        if gone is None:
            return  # back since its inbox closed: its sessions are its own
        if while_dead:
            # Not at a restart: its peers would count gone every session of this
            # name, the new run's too, should it have bound some by the time
            # DRAINED reaches them. What met the old inbox closed there is routed
            # to the new one when their holds expire; the old run's sessions end
            # by their UNBINDs below.
            self.announce_drained(dead)
        if gone:
            self.m.log.info("Node %s is gone: %d session(s) end", dead, len(gone))
        for jid, entry in gone:
            self.broadcast(UNBIND, jid, entry.sid.encode())
            self.unmirror(jid, entry.sid)
            gone_presence = presence("unavailable", str(jid), "")
            informed = broadcast(self.m, gone_presence, jid) if entry.available else set()
            tell_directed(self.m, gone_presence, entry.directed, informed)
        self.node.forget_node(dead, while_dead=while_dead)

    def drain(self, node: str) -> bool:
        """Hand on what `node`'s inbox holds, in stream order (so in order per
        sender and recipient), to the users' other sessions or offline storage
        (to this greenlet, `node`'s sessions are gone: `gone_here`), and close
        the inbox; whether it is closed and all it held handed on and written.
        A drainer that dies leaves its unacknowledged entries to the next one."""
        acking: list[gevent.Greenlet] = []  # of what was handed on, until written
        with self.gone_to_me(node):
            # What an earlier drainer closed and left (it died too) is the oldest.
            if not self.hand_on_fenced(node, acking) or \
                    not self.hand_on(node, acking, fenced=False):
                return False
            # Empty a moment ago: closed now, in one step whatever came since
            # (under a steady flow something always has), which stays in the
            # closed inbox to be taken there.
            return self.node.fence_inbox(node) and self.hand_on_fenced(node, acking)

    def hand_on_fenced(self, node: str, acking: list[gevent.Greenlet]) -> bool:
        """Hand on what `node`'s closed inbox holds (none: there is none), wait
        until that and what was handed on before is written, and delete it;
        whether that is done."""
        if not self.hand_on(node, acking, fenced=True):
            return False
        gevent.joinall(acking, timeout=WRITE_WAIT)
        acking.clear()
        if not self.outbox.wait_written(self.node.timeout / 3):
            return False
        if self.node.drop_fenced(node):
            self.drained_to.pop(node, None)
        return True

    def hand_on(self, node: str, acking: list[gevent.Greenlet], *, fenced: bool) -> bool:
        """Take `node`'s inbox (`fenced`: its closed one) and hand it on until a
        take finds nothing more; whether it did. `acking` collects the
        greenlets acknowledging what was handed on once it is written."""
        min_idle_ms = 0 if node == self.node.name else int(self.node.timeout * 1000)
        # The claim before each take: `node` may be back since the last one (or
        # since `reap` began), and what its peers send it now is its own to
        # read; its closed inbox is the reaper's whatever.
        while self.node.claim_reaping(node, fenced=fenced):
            after = self.drained_to.get(node, b"0-0")
            taken = self.node.orphans(node, min_idle_ms, after, fenced=fenced)
            if taken is None:
                return False  # held back by an entry not idle yet: at the next watch
            reached, entries = taken
            if not entries and reached == after:
                return True
            acker = self.handle_all(node, entries, orphaned=True)
            if acker is not None:
                acking.append(acker)
            self.drained_to[node] = reached
        # Another node took over (this one was too slow), or `node` is back.
        self.m.log.warning("Cluster: no longer draining the inbox of %s", node)
        return False

    def announce_drained(self, node: str) -> None:
        """`node`'s inbox is closed, all it held handed on and written, and its
        sessions are gone from the registry: the live nodes (read afresh: at a
        restart this node knows none yet) route what they held for it afresh
        now and count its sessions gone (`DRAINED`, ahead of the unbinds on
        their streams), and so does this one."""
        live, _dead = self.node.nodes()
        for peer in live:
            if peer not in (self.node.name, node):
                self.outbox.put(peer, Envelope(self.node.new_id(), DRAINED, node,
                                               self.node.name))
        self.release_hold(node)

    # -- life cycle -------------------------------------------------------------------

    def start(self) -> None:
        for host in self.m.one_node_hosts:
            # Above the host's own module, which would serve its copy of the entity.
            events = self.router.hosts[host].events
            events.hook("route/local", self.route_to_home, 100)
            events.hook("entity-ended", self.entity_ended)
        # A restart under the same name: the previous run's sessions are gone.
        self.reap(self.node.name)
        self.beaten = time.monotonic()
        self.node.join()
        self.watch()
        self.resync()
        self.consumer = gevent.spawn(self.consume)
        # Peers learn of this node at their next beat: what they changed before
        # that is in the registry, not in this node's stream.
        self.m.add_timer(2 * self.node.timeout / 3 + 1, self.resync)

    def stop(self) -> None:
        if self.consumer is not None:
            self.consumer.kill(block=False)
        for reaper in list(self.reapers.values()):
            reaper.kill(block=False)  # its claim lapses; the next drainer goes on
        if self.acks:
            # Else a restart under this name would take them for undelivered.
            self.write(self.node.ack, self.node.name, self.acks)
        if self.http is not None:
            self.http.stop(timeout=1)


def as_sent(session: Any, wire: str) -> SerializedElement | None:
    """`wire` to be written to `session` as it is, neither parsed nor written
    anew (half of a cross-node message's cost was both), where nothing on the
    way reads the element: a c2s session (one with filters) without
    "stanzas/out" filters (stream management keeps a stamped copy, CSI may
    hold it) writes a stanza by serializing it, nothing more. None otherwise."""
    filters = getattr(session, "filters", None)
    if filters is None or filters.get("stanzas/out"):
        return None
    return serialized_element(wire)


def setup(m: ModuleContext) -> None:
    options = cluster_options(m.global_config)
    assert options is not None, "loaded only when the cluster option is set"
    cluster = Cluster(m, ClusterNode(options), options.queue_limit)
    m.hook_each_host("resource-bind", lambda event: cluster.publish_session(event.session))
    # Above mod_presence, which ends the chain.
    for kind in ("bare", "full", "host"):
        m.hook_each_host(f"pre-presence/{kind}", cluster.presence_sent, 100)
    m.hook_each_host("session-data-changed", cluster.data_changed)
    m.hook_each_host("resource-unbind", lambda event: cluster.unbound(event.session))
    m.hook_each_host("session-missing", cluster.look_up)
    m.hook_each_host("presence/bare", cluster.refresh_for_probe, 100)  # before mod_presence
    m.hook_each_host("cached-data-changed", cluster.cache_changed)
    for event, handler in (("ownership-claim", cluster.claim),
                           ("ownership-release", cluster.release),
                           ("ownership-forward", cluster.pass_on),
                           ("ownership-locate", cluster.locate)):
        m.hook(event, handler)
        m.hook_each_host(event, handler)
    m.hook("shared-setting", cluster.agree)
    # After the hosts' own modules (blocklist, anonymous), before mod_s2s (-1).
    m.hook_each_host("route/remote", cluster.route_remote, 0)
    m.hook("server-started", lambda event: cluster.start())
    m.hook("server-started", lambda event: cluster.serve_http(options.address))
    m.hook("server-stopping", lambda event: cluster.stop())
    # The first beat comes from start().
    interval = options.node_timeout / 3
    m.add_periodic(interval, cluster.beat, first_delay=interval, what="Cluster heartbeat")
    m.add_periodic(interval, cluster.watch, first_delay=interval, what="Cluster watch")
    metrics = ClusterMetrics(cluster.node, metrics_registry(), lambda: cluster.peers, m.log)
    m.add_periodic(interval, metrics.publish, first_delay=0, what="Cluster metrics")
    m.hook_each_host("openmetrics-scrape",
                     lambda event: setattr(event, "registry", metrics.view))
