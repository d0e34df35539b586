"""One node's view of Redis: its heartbeat, the session registry, and the streams.

Keys (under the configured prefix):
  nodes                  set of the nodes that joined and were not reaped since
  node:NAME              heartbeat, expires after `node_timeout` seconds
  sessions:BARE          hash resource -> SessionEntry (JSON)
  users:NAME             set of bare JIDs with an entry of node NAME
  stream:NAME            the node's inbox (consumer group "vireo"); senders never
                         create it (XADD NOMKSTREAM): the reaper of dead NAME
                         closes it by renaming it to fenced:NAME, and NAME's
                         joining makes it again
  fenced:NAME            dead NAME's closed inbox, what its reaper has yet to
                         hand on; deleted once all it held is handed on
  reaping:NAME           held (with expiry, renewed while it works) by the one node
                         that reaps dead NAME and drains its inbox in stream order
  home:JID               the node an entity (a MUC room) lives on; the claim holds
                         while that node's heartbeat does (no expiry of its own);
                         home:KIND:NAME the same for what one node at a time holds
                         (an external component's domain, an outgoing s2s link, a
                         BOSH sid: xmpp.ownership)
  homes:NAME             set of the entities node NAME claimed (freed when reaped)
  http:NAME              the URL node NAME takes forwarded HTTP requests at
  setting:NAME           hash node -> fingerprint of a setting every node must share
                         (`dialback_secret`), as each node had it when it started
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import gevent
import gevent.event
import gevent.lock
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from xmpp.cluster.options import ClusterOptions
from xmpp.cluster.wire import MAX_PER_ENTRY, Envelope, SessionEntry, entry_fields, envelopes_of
from xmpp.jid import JID, InvalidJID, parse_jid

GROUP = "vireo"
BATCH = 200
# Entries the drainer of a dead node's inbox takes at a time (each may hold
# MAX_PER_ENTRY stanzas): its claim is renewed before each take, so a take is
# what it must handle within the claim's lifetime.
ORPHAN_ENTRIES = 4
SOCKET_TIMEOUT = 10.0  # seconds; above the longest blocking read
GATHER_DELAY = 0.002  # seconds the outbox gathers envelopes at most before a write

# Delete the resource's entry only if this session wrote it, and forget the
# user in the node's set once the node holds none of the user's resources.
_REMOVE = """
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if not raw or cjson.decode(raw)['sid'] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
for _, other in ipairs(redis.call('HVALS', KEYS[1])) do
  if cjson.decode(other)['node'] == ARGV[3] then return 1 end
end
redis.call('SREM', KEYS[2], ARGV[4])
return 1
"""

# Remove every registry entry node ARGV[1] wrote (its users' set KEYS[1]; ARGV[2]
# the prefix of the users' hashes) and return them (user, resource, entry, ...),
# in one step, so that a node coming back finds either all of its sessions or
# none; nothing (nil) while it beats again (ARGV[3] its heartbeat key, '' not to
# check). A malformed entry is left alone, as `sessions_of` skips it.
_REMOVE_ALL = """
if ARGV[3] ~= '' and redis.call('EXISTS', ARGV[3]) == 1 then return false end
local removed = {}
for _, user in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[2] .. user
  local fields = redis.call('HGETALL', key)
  for i = 1, #fields, 2 do
    local ok, entry = pcall(cjson.decode, fields[i + 1])
    if ok and type(entry) == 'table' and entry['node'] == ARGV[1] then
      redis.call('HDEL', key, fields[i])
      table.insert(removed, user)
      table.insert(removed, fields[i])
      table.insert(removed, fields[i + 1])
    end
  end
end
redis.call('DEL', KEYS[1])
return removed
"""

# An entity's home: the node named, while it beats; else (never claimed, or its
# node's heartbeat expired) the caller, in one atomic step so two nodes asking at
# once agree. Tying the claim to the heartbeat renews every claim of a node with
# its one beat, where a lease per entity would cost a write per room per beat.
_CLAIM = """
local owner = redis.call('GET', KEYS[1])
if owner and (owner == ARGV[1] or redis.call('EXISTS', ARGV[3] .. owner) == 1) then
  return owner
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return ARGV[1]
"""

# Give up this node's claim on entity ARGV[2], if it still holds it.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('SREM', KEYS[2], ARGV[2])
"""

# Forget reaped node ARGV[1]'s users and free its claims that still name it;
# nothing while it beats again (ARGV[3] its heartbeat key, or '' not to check).
# Reaped while dead, it leaves the set of nodes (KEYS[3]) too, so that nobody
# reaps it again; its joining adds it back.
_FORGET = """
if ARGV[3] ~= '' and redis.call('EXISTS', ARGV[3]) == 1 then return 0 end
redis.call('DEL', KEYS[1])
for _, entity in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  local key = ARGV[2] .. entity
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
redis.call('DEL', KEYS[2])
if ARGV[3] ~= '' then redis.call('SREM', KEYS[3], ARGV[1]) end
return 1
"""

# The claim to reap a dead node (KEYS[1]) for node ARGV[1], for ARGV[2] seconds
# more: taken when nobody holds it, renewed when this node does; refused while
# another does, or once the dead node beats again (KEYS[2], its heartbeat;
# unless ARGV[3] is '': its inbox is closed, what is left there is the reaper's).
_REAP = """
if ARGV[3] ~= '' and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""

# Close a dead node's inbox (KEYS[1]) by renaming it to KEYS[2], entries, group
# and pending entries with it: senders' XADD NOMKSTREAM fail from then on, and
# what came after its drainer's last take is still there to take, should that
# drainer die too. Not while the node beats again (ARGV[1] its heartbeat key, ''
# not to check): its inbox is its own; nor over an earlier fenced inbox not
# handed on yet (that one goes first).
_FENCE = """
if ARGV[1] ~= '' and redis.call('EXISTS', ARGV[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('RENAME', KEYS[1], KEYS[2])
return 1
"""

# Take entity ARGV[2]'s home for node ARGV[1] whoever held it; that one comes back.
_TAKE = """
local before = redis.call('GET', KEYS[1])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
return before
"""

# The node named as holding entity KEYS[1] and the URL it takes forwarded HTTP
# requests at (ARGV[1] the prefix of those keys): one round trip for both.
_LOCATE = """
local holder = redis.call('GET', KEYS[1])
if not holder then return false end
return {holder, redis.call('GET', ARGV[1] .. holder)}
"""

# Record node ARGV[1]'s fingerprint ARGV[2] of a setting all nodes must share
# (KEYS[1]: node -> "FINGERPRINT TIME") unless another one was recorded by a live
# node (ARGV[3] the prefix of the heartbeat keys) or less than ARGV[4] seconds ago
# (a node starting too, not beating yet): those nodes come back, nothing is written.
_AGREE = """
local now = tonumber(redis.call('TIME')[1])
local differ = {}
local recorded = redis.call('HGETALL', KEYS[1])
for i = 1, #recorded, 2 do
  local node = recorded[i]
  local value, at = string.match(recorded[i + 1], '^(%S+) (%d+)$')
  if node ~= ARGV[1] and value ~= ARGV[2] and (now - tonumber(at or 0) < tonumber(ARGV[4])
      or redis.call('EXISTS', ARGV[3] .. node) == 1) then
    table.insert(differ, node)
  end
end
if #differ == 0 then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. now) end
return differ
"""

RedisError = redis.RedisError


class Lane:
    """A connection of the client's pool kept for one hot path (the outbox's
    writes, the consumer's reads): its commands go out as one write and their
    raw replies are read in order, past the pool's checkout (which polls the
    socket), the client's retry wrapper and its instrumentation, which cost
    several times the round trip itself (about 130 µs of CPU a pipeline of one
    command under gevent, against 35 µs). The connection reconnects itself
    after an error, as the pool's do; the client's `close` closes it too.
    One caller at a time."""

    def __init__(self, client: redis.Redis) -> None:
        self.pool = client.connection_pool
        self.connection: Any = None
        self.lock = gevent.lock.Semaphore()

    def call(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """The replies to `commands`, sent in one write; a RedisError as the
        client raises it: the first error reply, once every reply is read."""
        with self.lock:
            if self.connection is None:
                self.connection = self.pool.get_connection()
            connection = self.connection
            # On any failure (a greenlet killed in a read included) the connection
            # drops itself, so no reply is left to be taken for the next call's.
            connection.send_packed_command(connection.pack_commands(commands),
                                           check_health=False)
            replies, error = [], None
            for _command in commands:
                try:
                    replies.append(connection.read_response())
                except redis.ResponseError as reply:
                    replies.append(reply)
                    error = error or reply
            if error is not None:
                raise error
            return replies


class ClusterNode:
    """This node's calls to Redis; no XMPP logic beyond JIDs."""

    def __init__(self, options: ClusterOptions) -> None:
        self.name = options.node
        self.timeout = options.node_timeout
        self._prefix = options.prefix
        # No command is tried again by the client (redis-py does so when the URL
        # says `retry_on_timeout`, and its defaults have changed before): a
        # stream read retried after a timeout may hide that the first one's
        # entries were given to this consumer and lost on the way, which only
        # the consumer's recovery (reading its pending entries) makes good.
        # Every caller handles a RedisError itself.
        self.redis = redis.Redis.from_url(options.redis, socket_timeout=SOCKET_TIMEOUT,
                                          socket_connect_timeout=SOCKET_TIMEOUT,
                                          retry=Retry(NoBackoff(), 0))
        self._remove = self.redis.register_script(_REMOVE)
        self._remove_all = self.redis.register_script(_REMOVE_ALL)
        self._claim = self.redis.register_script(_CLAIM)
        self._forget = self.redis.register_script(_FORGET)
        self._release = self.redis.register_script(_RELEASE)
        self._take = self.redis.register_script(_TAKE)
        self._reap = self.redis.register_script(_REAP)
        self._locate = self.redis.register_script(_LOCATE)
        self._agree = self.redis.register_script(_AGREE)
        self._fence = self.redis.register_script(_FENCE)
        self._writes = Lane(self.redis)  # the outbox's
        self._reads = Lane(self.redis)  # the stream consumer's
        # entity ("KIND:NAME") -> (kind, name) of what this node holds (xmpp.ownership)
        self.claims: dict[str, tuple[str, str]] = {}
        self.unrecorded: set[str] = set()  # of those, what Redis could not be told yet
        # Envelope ids: unique across restarts of a node with the same name.
        # The random part is drawn once per run: in the generator's expression it
        # was drawn (an os.urandom call) for every stanza sent.
        run = f"{self.name}.{secrets.token_hex(4)}."
        self._ids = map(run.__add__, map(str, itertools.count()))

    def key(self, *parts: str) -> str:
        return self._prefix + ":".join(parts)

    # -- membership ----------------------------------------------------------------

    def join(self) -> None:
        """Make this node's inbox (again, if a reaper closed it while this node
        was silent: all it held was handed on) and announce it (then beat
        regularly)."""
        try:
            self.redis.xgroup_create(self.key("stream", self.name), GROUP, id="0",
                                     mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        # Known and beating in one step: a reaper that drops it from the set of
        # nodes, which it does only while the node is silent, cannot do so
        # between the two, leaving a beating node that nobody knows.
        pipe = self.redis.pipeline(transaction=True)
        pipe.sadd(self.key("nodes"), self.name)
        # Reaped its own previous run (or was reaped): a later death is reaped anew.
        pipe.delete(self.key("reaping", self.name))
        pipe.set(self.key("node", self.name), "1", ex=math.ceil(self.timeout))
        pipe.execute()

    def beat(self) -> bool:
        """Renew the heartbeat; True when it had lapsed (others may have reaped
        this node meanwhile)."""
        previous = self.redis.set(self.key("node", self.name), "1",
                                  ex=math.ceil(self.timeout), get=True)
        return previous is None

    def nodes(self) -> tuple[list[str], list[str]]:
        """(live, dead) node names: dead ones joined, stopped beating and were
        not reaped whole yet."""
        names = sorted(name.decode() for name in self.redis.smembers(self.key("nodes")))
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.exists(self.key("node", name))
        beating = pipe.execute()
        return ([n for n, up in zip(names, beating, strict=True) if up],
                [n for n, up in zip(names, beating, strict=True) if not up])

    def agree(self, setting: str, fingerprint: str) -> list[str]:
        """The live nodes (but this one) whose `setting` has another fingerprint
        than this node's; when none, this node's is recorded, for nodes joining
        later to compare theirs with. A node that recorded its own less than a
        heartbeat's timeout ago counts too (two nodes starting at once, before
        either beats), and a node stopped counts until its heartbeat expires:
        a setting changed on every node may need that long."""
        differ = self._agree(keys=[self.key("setting", setting)],
                             args=[self.name, fingerprint, self.key("node", ""),
                                   math.ceil(self.timeout)])
        return sorted(name.decode() for name in differ)

    def claim_reaping(self, node: str, *, fenced: bool = False) -> bool:
        """Whether this node is the one to reap dead `node` (and drain its inbox)
        now; its claim, if it held it already, lasts longer from now on. Its own
        name (a restart: the previous run's inbox) it takes from whoever had it.
        With `fenced` (to drain the closed inbox), even should `node` beat again."""
        key, lifetime = self.key("reaping", node), math.ceil(self.timeout) * 3
        if node == self.name:
            self.redis.set(key, self.name, ex=lifetime)
            return True
        return bool(self._reap(keys=[key, self.key("node", node)],
                               args=[self.name, lifetime, "" if fenced else "1"]))

    # -- claims: what one node at a time holds (xmpp.ownership) -------------------------
    # Homes (below) of entities named "KIND:NAME" (no JID looks like that).

    def claim(self, kind: str, name: str, *, take: bool = False) -> str | None:
        """Hold `kind`/`name` while this node beats. Without `take`, the other
        live node that holds it already (None: this one holds it now); with
        `take`, this node holds it whatever, and the one that held it before
        comes back (None: nobody else)."""
        entity = f"{kind}:{name}"
        if entity in self.claims and not take:
            return None
        try:
            if take:
                found = self._take(keys=[self.key("home", entity), self.key("homes", self.name)],
                                   args=[self.name, entity])
                other = found.decode() if found is not None else None
            else:
                other = self.claim_home(entity)
        except redis.RedisError:
            # Held here meanwhile; the next beat tells Redis.
            self.claims[entity] = (kind, name)
            self.unrecorded.add(entity)
            raise
        if other == self.name:
            other = None
        if other is None or take:
            self.claims[entity] = (kind, name)
        return other

    def holder(self, kind: str, name: str) -> str | None:
        """The node named as holding `kind`/`name` (maybe a dead one), None when none is."""
        entity = f"{kind}:{name}"
        if entity in self.claims:
            return self.name
        found = self.redis.get(self.key("home", entity))
        return found.decode() if found is not None else None

    def release(self, kind: str, name: str) -> None:
        entity = f"{kind}:{name}"
        if self.claims.pop(entity, None) is not None:
            self.unrecorded.discard(entity)
            self.release_home(entity)

    def verify_claims(self, *, every: bool) -> list[tuple[str, str]]:
        """Claim again what Redis was not told (`every`: all this node holds,
        after its heartbeat lapsed and others may have taken them); those
        another node holds now are dropped and returned (kind, name)."""
        entities = list(self.claims) if every else list(self.unrecorded)
        lost = []
        for entity in entities:
            if self.claim_home(entity) != self.name:
                lost.append(self.claims.pop(entity))
            self.unrecorded.discard(entity)
        return lost

    def publish_http(self, url: str) -> None:
        self.redis.set(self.key("http", self.name), url)

    def located(self, kind: str, name: str) -> tuple[str | None, str | None]:
        """The node named as holding `kind`/`name` (as `holder` tells) and the
        URL that node takes forwarded HTTP requests at (None: not published, or
        this node is the holder)."""
        entity = f"{kind}:{name}"
        if entity in self.claims:
            return self.name, None
        found = self._locate(keys=[self.key("home", entity)], args=[self.key("http", "")])
        if not found:
            return None, None
        holder, url = found
        return holder.decode(), url.decode() if url is not None else None

    # -- the session registry ----------------------------------------------------------

    def put_session(self, jid: JID, entry: SessionEntry) -> None:
        pipe = self.redis.pipeline(transaction=False)
        pipe.hset(self.key("sessions", str(jid.bare)), jid.resource or "", entry.encode())
        pipe.sadd(self.key("users", entry.node), str(jid.bare))
        pipe.execute()

    def remove_session(self, jid: JID, sid: str, node: str) -> bool:
        """Delete the entry session `sid` of `node` wrote; whether it was deleted."""
        return bool(self._remove(
            keys=[self.key("sessions", str(jid.bare)), self.key("users", node)],
            args=[jid.resource or "", sid, node, str(jid.bare)]))

    def remove_sessions_of(self, node: str, *, while_dead: bool = False
                           ) -> list[tuple[JID, SessionEntry]] | None:
        """Delete every registry entry `node` wrote, in one step, and return
        them (malformed ones left out); with `while_dead`, only while `node`
        is silent (None when it beats again: a reaper's removal must not undo
        a node that came back and counts its sessions as still its own)."""
        alive_key = self.key("node", node) if while_dead else ""
        removed = self._remove_all(keys=[self.key("users", node)],
                                   args=[node, self.key("sessions", ""), alive_key])
        if removed is None:
            return None
        found = (_entry(user.decode(), resource.decode(), raw)
                 for user, resource, raw in zip(*[iter(removed)] * 3, strict=True))
        return [entry for entry in found if entry is not None]

    def is_known(self, node: str) -> bool:
        """Whether `node` is in the set of nodes: it joined and was not reaped
        since (a node reaped whole left it)."""
        return bool(self.redis.sismember(self.key("nodes"), node))

    def beating(self, node: str) -> bool:
        """Whether `node`'s heartbeat is there (it joined and beats)."""
        return bool(self.redis.exists(self.key("node", node)))

    def sessions_of(self, node: str) -> Iterator[tuple[JID, SessionEntry]]:
        """Every registry entry node `node` wrote (malformed ones are skipped)."""
        users = sorted(user.decode() for user in self.redis.smembers(self.key("users", node)))
        for start in range(0, len(users), BATCH):
            chunk = users[start:start + BATCH]
            pipe = self.redis.pipeline(transaction=False)
            for user in chunk:
                pipe.hgetall(self.key("sessions", user))
            for user, resources in zip(chunk, pipe.execute(), strict=True):
                for resource, raw in resources.items():
                    found = _entry(user, resource.decode(), raw)
                    if found is not None and found[1].node == node:
                        yield found

    def sessions_for(self, bare: JID) -> list[tuple[JID, SessionEntry]]:
        """The registry entries of one user, whichever node wrote them."""
        resources = self.redis.hgetall(self.key("sessions", str(bare)))
        return [found for resource, raw in resources.items()
                if (found := _entry(str(bare), resource.decode(), raw)) is not None]

    def forget_node(self, node: str, *, while_dead: bool = False) -> bool:
        """Forget a node that is gone (or restarts: its sessions and entities went
        with its memory): its set of users, and its claims; with `while_dead`,
        only while it is silent, and it leaves the set of nodes (its joining
        adds it back). Whether it was forgotten."""
        alive_key = self.key("node", node) if while_dead else ""
        return bool(self._forget(keys=[self.key("users", node), self.key("homes", node),
                                       self.key("nodes")],
                                 args=[node, self.key("home", ""), alive_key]))

    # -- entities that live on one node -------------------------------------------------

    def claim_home(self, entity: str) -> str:
        """The node `entity` lives on: the live one that claimed it, else this one
        (claimed now)."""
        owner = self._claim(keys=[self.key("home", entity), self.key("homes", self.name)],
                            args=[self.name, entity, self.key("node", "")])
        return owner.decode() if isinstance(owner, bytes) else str(owner)

    def release_home(self, entity: str) -> None:
        """This node no longer has `entity` (a temporary room ended)."""
        self._release(keys=[self.key("home", entity), self.key("homes", self.name)],
                      args=[self.name, entity])

    # -- streams ---------------------------------------------------------------------

    def new_id(self) -> str:
        return next(self._ids)

    def send(self, batch: Iterable[tuple[str, Envelope]]) -> list[tuple[str, list[Envelope]]]:
        """Append each (node, envelope) to the node's inbox, in order, in one
        round trip: a node's envelopes in as few entries as MAX_PER_ENTRY lets.
        What met a closed inbox (its node reaped, `fence_inbox`) comes back,
        in order, by node: it was written nowhere. A RedisError means the batch
        may not have been written: the caller sends it again with the same ids
        (consumers drop the duplicates)."""
        by_node: dict[str, list[Envelope]] = {}
        for node, envelope in batch:
            by_node.setdefault(node, []).append(envelope)
        chunks, commands = [], []
        for node, envelopes in by_node.items():
            for start in range(0, len(envelopes), MAX_PER_ENTRY):
                chunk = envelopes[start:start + MAX_PER_ENTRY]
                chunks.append((node, chunk))
                fields = itertools.chain.from_iterable(entry_fields(chunk).items())
                commands.append(("XADD", self.key("stream", node), "NOMKSTREAM", "*", *fields))
        closed: dict[str, list[Envelope]] = {}
        for (node, chunk), entry_id in zip(chunks, self._writes.call(commands), strict=True):
            if entry_id is None:
                closed.setdefault(node, []).extend(chunk)
        return list(closed.items())

    def receive(self, block_ms: int, *, pending: bool = False, ack: Sequence[bytes] = ()
                ) -> list[tuple[bytes, list[Envelope] | None]]:
        """New entries of this node's inbox, each with its envelopes (None for a
        malformed one, acked anyway).
        With `pending`, instead those already given to this consumer and never
        acknowledged: after a lost connection, the answer that carried them may
        never have arrived. `ack`: entries handled meanwhile, acknowledged and
        dropped first, in the same round trip."""
        stream_key = self.key("stream", self.name)
        commands: list[tuple[Any, ...]] = []
        if ack:
            commands += [("XACK", stream_key, GROUP, *ack), ("XDEL", stream_key, *ack)]
        block = () if pending else ("BLOCK", block_ms)
        commands.append(("XREADGROUP", "GROUP", GROUP, self.name, "COUNT", BATCH, *block,
                         "STREAMS", stream_key, "0" if pending else ">"))
        answer = self._reads.call(commands)[-1] or ()
        # Per stream, [[id, [field, value, ...] or None when deleted], ...]: a
        # map by stream in RESP3, a list of [stream, entries] pairs in RESP2.
        streams = answer.values() if isinstance(answer, dict) else \
            [entries for _stream, entries in answer]
        return [(entry_id, _envelopes_in(fields) if fields else None)
                for entries in streams for entry_id, fields in entries]

    def orphans(self, node: str, min_idle_ms: int, after: bytes, *, fenced: bool = False
                ) -> tuple[bytes, list[tuple[bytes, list[Envelope] | None]]] | None:
        """The next entries of dead `node`'s inbox (`fenced`: of its closed
        one, `fence_inbox`) after entry `after` ("0-0": from
        the start), in stream order, given to this node now: first those a
        consumer took and never acknowledged (the dead node's own, or an earlier
        drainer's), then those never read. With them the last entry id they
        reach (past deleted ones); no entries (and `after`) when none is left
        (or the inbox is closed). None when the next one is not idle for
        `min_idle_ms` yet (its consumer may still be at it): no later one may
        overtake it."""
        stream = self.key("fenced" if fenced else "stream", node)
        try:
            pending = self.redis.xpending_range(stream, GROUP, min=b"(" + after, max="+",
                                                count=ORPHAN_ENTRIES)
            if pending:
                ids = [entry["message_id"] for entry in itertools.takewhile(
                    lambda entry: entry["time_since_delivered"] >= min_idle_ms, pending)]
                if not ids:
                    return None
                # Claimed only if still idle: a live consumer may read one again meanwhile.
                entries = self.redis.xclaim(stream, GROUP, self.name, min_idle_ms, ids)
                return ids[-1], _decoded(entries)
            unread = self.redis.xreadgroup(GROUP, self.name, {stream: ">"},
                                           count=ORPHAN_ENTRIES)
        except redis.ResponseError as error:
            if "NOGROUP" in str(error):
                return after, []
            raise
        entries = [entry for _s, batch in unread or () for entry in batch]
        return (entries[-1][0], _decoded(entries)) if entries else (after, [])

    def fence_inbox(self, node: str) -> bool:
        """Close dead `node`'s inbox at once, whatever came after its drainer's
        last take: it becomes the fenced inbox, which keeps its entries and
        their ids (`orphans` with `fenced` goes on where the drainer was). Not
        while `node` beats again (unless it is this node's own, a restart's),
        nor while an earlier fenced inbox of `node` is left; whether it is
        closed now. Senders learn of it from their writes (`send`)."""
        alive_key = "" if node == self.name else self.key("node", node)
        return bool(self._fence(keys=[self.key("stream", node), self.key("fenced", node)],
                                args=[alive_key]))

    def drop_fenced(self, node: str) -> bool:
        """Delete `node`'s fenced inbox, all it held handed on; whether there was one."""
        return bool(self.redis.delete(self.key("fenced", node)))

    def ack(self, node: str, entry_ids: list[bytes], *, orphaned: bool = False) -> None:
        """Acknowledge handled entries and drop them (the stream stays small);
        `orphaned`: entries of a dead node's inbox, which may have been fenced
        since they were taken (the same ids, under the other key)."""
        if entry_ids:
            keys = ("stream", "fenced") if orphaned else ("stream",)
            pipe = self.redis.pipeline(transaction=False)
            for key in keys:
                stream = self.key(key, node)
                pipe.xack(stream, GROUP, *entry_ids)
                pipe.xdel(stream, *entry_ids)
            pipe.execute()


def _decoded(entries: list) -> list[tuple[bytes, list[Envelope] | None]]:
    """Stream entries with their envelopes; those deleted meanwhile left out."""
    return [(entry_id, _envelopes(fields)) for entry_id, fields in entries if fields]


def _envelopes(fields: dict) -> list[Envelope] | None:
    try:
        return envelopes_of(fields)
    except ValueError:
        return None


def _envelopes_in(fields: list[bytes]) -> list[Envelope] | None:
    """The envelopes of an entry whose fields a raw reply gives (a flat list)."""
    return _envelopes(dict(zip(fields[::2], fields[1::2], strict=False)))


def _entry(user: str, resource: str, raw: bytes) -> tuple[JID, SessionEntry] | None:
    try:
        return parse_jid(f"{user}/{resource}"), SessionEntry.decode(raw)
    except (InvalidJID, ValueError):
        return None


def gather() -> None:
    """Until the loop has nothing else to run (every connection with bytes
    waiting has routed what it read), or GATHER_DELAY seconds passed: what is
    routed meanwhile joins the batch, as a write costs as much CPU for a few
    envelopes as for hundreds (and so does its reading). Unlike a fixed delay,
    it leaves no idle time to wait out, nor a wakeup of its own: a process
    waking from an idle wait cost about 60 us of CPU."""
    with gevent.Timeout(GATHER_DELAY, False):
        gevent.idle()


class Outbox:
    """Envelopes on their way to other nodes' inboxes: whoever routes a stanza
    only queues it, and one greenlet writes everything queued meanwhile in one
    pipeline (a Redis round trip per batch, not per stanza; order kept).

    While Redis cannot be reached the envelopes wait, retried with their ids
    (consumers drop what arrives twice), up to `limit`; beyond it an envelope
    is handed to `refused` at once (its stanza is bounced to its sender),
    never queued: one that was tried may have reached Redis already. What met
    a closed inbox is handed to `closed` (node, envelopes) before the next
    batch is written, so that it is routed afresh ahead of what follows; from
    then on (the node in `shut`) what is queued for that node is handed there
    unwritten, in order."""

    def __init__(self, node: ClusterNode, log: logging.Logger,
                 refused: Callable[[str, Envelope], None],
                 closed: Callable[[str, list[Envelope]], None], *, limit: int,
                 retry_delay: float = 1.0) -> None:
        self.node = node
        self.log = log
        self.refused = refused
        self.closed = closed
        self.limit = limit
        self.retry_delay = retry_delay
        self.queue: list[tuple[str, Envelope]] = []
        self.sending: list[tuple[str, Envelope]] = []  # the batch being written
        self.flusher: gevent.Greenlet | None = None
        self.batch_done = gevent.event.Event()  # set (and replaced) after each batch
        self.shut: set[str] = set()  # nodes whose inbox is closed

    def put(self, node: str, envelope: Envelope) -> None:
        if len(self.queue) + len(self.sending) >= self.limit:
            self.refused(node, envelope)
            return
        self.queue.append((node, envelope))
        if self.flusher is None:
            self.flusher = gevent.spawn(self.flush)

    def wait_empty(self, timeout: float) -> None:
        """Until what is queued has been written (or `timeout` seconds passed)."""
        if self.flusher is not None:
            self.flusher.join(timeout)

    def take(self, node: str) -> list[Envelope]:
        """The envelopes queued for `node`, taken out of the queue in order."""
        taken = [envelope for queued, envelope in self.queue if queued == node]
        if taken:
            self.queue = [(queued, envelope) for queued, envelope in self.queue
                          if queued != node]
        return taken

    def wait_sent(self, node: str, timeout: float) -> None:
        """Until the batch being written holds nothing for `node` (or `timeout`
        seconds passed); once `node` is shut, the next batches hold nothing
        for it."""
        deadline = time.monotonic() + timeout
        while any(queued == node for queued, _envelope in self.sending):
            if not self.batch_done.wait(max(0.0, deadline - time.monotonic())):
                return

    def wait_written(self, timeout: float, node: str | None = None) -> bool:
        """Until what is queued now (for `node`, else for any node) has been
        written, or handed to `closed` (or `timeout` seconds passed); whether
        it has. Unlike waiting for the outbox to be empty, this ends under a
        steady flow of new envelopes."""
        waiting = [envelope for queued, envelope in itertools.chain(self.sending, self.queue)
                   if node is None or queued == node]
        ids = {id(envelope) for envelope in waiting}  # `waiting` keeps them from reuse
        deadline = time.monotonic() + timeout
        while any(id(envelope) in ids
                  for _node, envelope in itertools.chain(self.sending, self.queue)):
            if not self.batch_done.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def flush(self) -> None:
        try:
            gather()
            while self.queue:
                self.sending, self.queue = self.queue, []
                self.hand_back_shut()
                try:
                    closed = self.node.send(self.sending) if self.sending else []
                except redis.RedisError as error:
                    self.queue = self.sending + self.queue
                    self.sending = []
                    self.log.warning("Cluster: %d envelope(s) wait for Redis (%s)",
                                     len(self.queue), error)
                    gevent.sleep(self.retry_delay)
                    continue
                self.sending = []
                for node, envelopes in closed:
                    self.closed(node, envelopes)
                self.batch_written()
        finally:
            self.flusher = None
            self.batch_written()

    def hand_back_shut(self) -> None:
        """What the batch holds for a closed inbox goes to `closed` unwritten."""
        if not self.shut:
            return
        kept, back = [], {}
        for node, envelope in self.sending:
            if node in self.shut:
                back.setdefault(node, []).append(envelope)
            else:
                kept.append((node, envelope))
        self.sending = kept
        for node, envelopes in back.items():
            self.closed(node, envelopes)

    def batch_written(self) -> None:
        done, self.batch_done = self.batch_done, gevent.event.Event()
        done.set()
