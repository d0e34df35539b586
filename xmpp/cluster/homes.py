"""Entities that live on one node of a cluster (MUC rooms): which node, and
passing their stanzas there.

A room's occupants, lock and history are live state in one process. Rather
than share that state stanza by stanza, each room lives on one node, named in
Redis (`home:JID`); every other node passes the stanzas addressed to the room
or its occupants on to that node, where they are routed as if they had
arrived there. The room's answers reach occupants on other nodes through
ordinary routing (their sessions are RemoteSessions there).

A claim holds as long as its node's heartbeat (xmpp.cluster.node `_CLAIM`):
once that node is dead, the next stanza for the room lets the node it reaches
claim the room, and the room's module reads it afresh from storage (a
persistent room comes back without occupants, a temporary one is gone, as
after a restart).

Each node remembers the homes it learnt, trusted until their node's inbox is
found closed (`forget`): a dead node's inbox holds what is sent there, behind
the older stanzas, until its drainer has routed them afresh (to the room's
new home) and closed it, so a sender's stanzas for a room keep their order
across the death of its node. A room costs a Redis round trip the first time
a node routes to it and after its home's inbox closed, not per stanza.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from xmpp.cluster.node import ClusterNode
from xmpp.jid import JID

log = logging.getLogger(__name__)


class Homes:
    """This node's view of where entities live, and the `route/local` step that
    sends a stanza to its entity's node.

    `forward(node, stanza, to)` passes a stanza to another node; `fire(host,
    event, jid)` tells the host's module that an entity came to or left this
    node; `gone(node)` whether the running greenlet hands on dead `node`'s
    inbox (to it, what lived there lives nowhere yet)."""

    def __init__(self, node: ClusterNode, forward: Callable[[str, Any, JID], None],
                 fire: Callable[[str, str, JID], None], gone: Callable[[str], bool]) -> None:
        self.node = node
        self.forward = forward
        self.fire = fire
        self.gone = gone
        self.known: dict[JID, str] = {}  # entity (bare JID) -> the node it lives on
        # Entity -> where the drainer of its dead home's inbox took it: the
        # node's other greenlets go on sending to that inbox until it is closed.
        self.taken: dict[JID, str] = {}

    def route(self, event: Any) -> bool:
        """`route/local` on a host whose entities live on one node, above the
        host's module: True when the stanza went on to another node."""
        to = event.to
        if to.local is None:
            return False  # the service itself (disco, the room list): every node answers
        home = self.home_of(to.bare)
        if home == self.node.name:
            return False
        self.forward(home, event.stanza, to)
        return True

    def home_of(self, entity: JID) -> str:
        """The node `entity` lives on (or lived on, its inbox still open), claimed
        for this one when it had none (RedisError when Redis cannot say)."""
        known = self.known.get(entity)
        if known is not None and not self.gone(known):
            return known
        home = self.node.claim_home(str(entity))
        # Another stanza's claim (both found the home dead) may have been answered
        # while this one waited: the module has taken the entity up since, and
        # told again it would drop what it holds now (a room's occupants).
        claimed_meanwhile = self.node.name in (self.known.get(entity), self.taken.get(entity))
        if known is None:
            self.known[entity] = home
        else:
            self.taken[entity] = home
        if home == self.node.name and not claimed_meanwhile:
            # What this node kept of the entity dates from before another held it.
            self.fire(entity.domain, "entity-claimed", entity)
        return home

    def forget(self, node: str) -> None:
        """`node`'s inbox is closed: what lived there lives where its drainer took
        it, or is claimed afresh."""
        for entity, home in list(self.known.items()):
            if home == node:
                taken = self.taken.pop(entity, None)
                if taken is None:
                    del self.known[entity]
                else:
                    self.known[entity] = taken

    def ended(self, entity: JID) -> None:
        """The module has no such entity (any more): free the claim, if it was this
        node's. A stanza still on its way here claims it again, or finds where it went."""
        if self.node.name in (self.known.get(entity), self.taken.get(entity)):
            if self.known.get(entity) == self.node.name:
                del self.known[entity]
            self.taken.pop(entity, None)
            self.node.release_home(str(entity))

    def verify(self) -> None:
        """After this node's heartbeat lapsed: survivors may have claimed its
        entities meanwhile; those are released here (and the rest kept)."""
        for entity, home in list(self.known.items()):
            if home != self.node.name:
                continue
            home = self.known[entity] = self.node.claim_home(str(entity))
            if home != self.node.name:
                log.warning("Cluster: %s moved to node %s while this node was silent",
                            entity, home)
                self.fire(entity.domain, "entity-released", entity)
