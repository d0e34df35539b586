"""What a module sees (the idea of Prosody's core/moduleapi.lua): `setup(m)` gets a
ModuleContext bound to one host, and reaches the rest of the server only
through it: events and filters, routing, sessions, the clock, stores,
options, and what it provides (listeners, HTTP apps).

A module never holds the server. The services behind the context are the
narrow ones in `ModuleServices`, which the composition root (xmpp.core) fills.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from xml.etree.ElementTree import Element

import gevent

from xmpp.events import Event, Handler
from xmpp.filters import Filter, add_filter, remove_filter
from xmpp.hosts import GLOBAL, Identity, IqHandler, LocalHost, hook_iq
from xmpp.jid import JID
from xmpp.providers import Providers
from xmpp.shared_session_data import SharedSessionData
from xmpp.timers import Timer, start_timer

if TYPE_CHECKING:
    from xmpp.config import Config, HostConfig
    from xmpp.router import Router, Session
    from xmpp.scram import ScramCredentials


class Accounts(Protocol):
    """The account store, as modules and SASL use it (storage.accounts.AccountStore)."""

    def create(self, host: str, username: str, password: str) -> None: ...
    def exists(self, host: str, username: str) -> bool: ...
    def delete(self, host: str, username: str) -> bool: ...
    def set_password(self, host: str, username: str, password: str) -> bool: ...
    def check_password(self, host: str, username: str, password: str) -> bool: ...
    def users(self, host: str) -> list[str]: ...
    def scram_credentials(self, host: str, username: str,
                          mechanism: str) -> ScramCredentials | None: ...
    def add_sha256(self, host: str, username: str, sha256: ScramCredentials,
                   sha1_stored_key: bytes) -> bool: ...


class Users:
    """One host's accounts (Prosody's usermanager for `module.host`)."""

    def __init__(self, accounts: Accounts, host: LocalHost, fire: Callable[..., Any]) -> None:
        self._accounts = accounts
        self._host = host
        self._fire = fire

    def exists(self, username: str) -> bool:
        return self._accounts.exists(self._host.name, username)

    def create(self, username: str, password: str) -> None:
        """Raises storage.accounts.AccountExists when taken; fires `user-created`."""
        self._accounts.create(self._host.name, username, password)
        self._fire("user-created", username=username, host=self._host.name)

    def set_password(self, username: str, password: str) -> bool:
        """Replace the password; `user-password-changed` lets modules drop what the
        old one granted (FAST tokens). False when there is no such account."""
        changed = self._accounts.set_password(self._host.name, username, password)
        if changed:
            self._fire("user-password-changed", username=username, host=self._host.name)
        return changed

    def check_password(self, username: str, password: str) -> bool:
        """Whether `password` is the account's (checked against its SCRAM keys)."""
        return self._accounts.check_password(self._host.name, username, password)

    def delete(self, username: str) -> bool:
        """Remove the account; `user-deleted` lets modules drop the user's data."""
        removed = self._accounts.delete(self._host.name, username)
        self._fire("user-deleted", username=username, host=self._host.name)
        return removed

    def list(self) -> list[str]:
        return self._accounts.users(self._host.name)

    def scram_credentials(self, username: str, mechanism: str) -> ScramCredentials | None:
        """The stored SCRAM material of `mechanism`'s hash; None when the account
        has none (no account, or material it was never given)."""
        return self._accounts.scram_credentials(self._host.name, username, mechanism)

    def add_sha256(self, username: str, sha256: ScramCredentials,
                   sha1_stored_key: bytes) -> bool:
        """SCRAM-SHA-256 material for an account that has SHA-1 material only."""
        return self._accounts.add_sha256(self._host.name, username, sha256, sha1_stored_key)


@dataclass
class ModuleServices:
    """Everything modules share, filled by the composition root."""

    config: Config
    router: Router
    clock: Callable[[], float]
    started_at: float
    accounts: Accounts
    stores: Any  # storage.stores.StoreFactory: open_store(host, name, kind)
    typed_stores: Mapping[str, Any]  # "rosters", "offline", "uploads": storage classes
    providers: Providers = field(default_factory=Providers)
    # Objects one module keeps for the whole server (Prosody's shared tables).
    shared: dict[str, Any] = field(default_factory=dict)
    # Which modules' per-session state other cluster nodes see (share_session_data).
    shared_session_data: SharedSessionData = field(default_factory=SharedSessionData)
    # Hosts whose entities live on one node of a cluster (keep_entities_on_one_node).
    one_node_hosts: set[str] = field(default_factory=set)
    # Service objects other parts of the core hand to modules ("c2s": C2SServices).
    extra: dict[str, Any] = field(default_factory=dict)
    load_module: Callable[[LocalHost, str, ModuleServices], None] | None = None
    # Runs a callback once after some seconds (tests may run them by hand).
    timers: Callable[[float, Callable[[], object]], Timer] = start_timer


class ModuleContext:
    """One module loaded on one host (or on the global pseudo-host "*")."""

    def __init__(self, name: str, host: LocalHost, services: ModuleServices) -> None:
        self.name = name
        self.host = host
        self._services = services
        self.log = logging.getLogger(f"{host.name}:{name}")
        self.users = Users(services.accounts, host, self.fire)

    # -- options ------------------------------------------------------------------

    @property
    def config(self) -> HostConfig | Config:
        """The host's options (falling back to the global section), with typed getters."""
        return self.host.config

    @property
    def global_config(self) -> Config:
        return self._services.config

    @property
    def is_global(self) -> bool:
        return self.host.name == GLOBAL

    # -- events -------------------------------------------------------------------

    def hook(self, event: str, handler: Handler, priority: int = 0) -> None:
        """Run `handler(event)` when `event` fires on this host; truthy stops the chain."""
        self.host.events.hook(event, handler, priority)

    def unhook(self, event: str, handler: Handler) -> None:
        self.host.events.unhook(event, handler)

    def fire(self, event: str, **fields: Any) -> Any:
        return self.host.events.fire(event, **fields)

    def fire_event(self, name: str, **fields: Any) -> Event:
        """Fire `name` and hand back the event itself, for events whose handlers
        answer by changing its fields (`user-registering`'s `allowed`)."""
        event = Event(**fields)
        self.host.events.fire_event(name, event)
        return event

    def hook_each_host(self, event: str, handler: Handler, priority: int = 0) -> None:
        """Hook `event` on every local host (for global modules)."""
        for host in self._services.router.hosts.values():
            host.events.hook(event, handler, priority)

    def hook_iq(self, iq_type: str, payload_tag: str, handler: IqHandler,
                target: str = "host", priority: int = 0) -> None:
        """Answer IQs of `iq_type` whose payload is `payload_tag` (Clark notation)
        sent to `target`: "host", "bare" (a user's JID), "self" (the sender's own)."""
        hook_iq(self.host, iq_type, payload_tag, handler, target, priority)

    def add_filter(self, session: Any, kind: str, fn: Filter, priority: int = 0) -> None:
        """Filter a session's "stanzas/in" or "stanzas/out": `fn(stanza, session)`
        returns the stanza (possibly another one) or None to drop it."""
        add_filter(session, kind, fn, priority)

    def remove_filter(self, session: Any, kind: str, fn: Filter) -> None:
        remove_filter(session, kind, fn)

    # -- disco ----------------------------------------------------------------------

    def add_feature(self, var: str) -> None:
        self.host.add_feature(var)

    def add_identity(self, category: str, type_: str, name: str | None = None) -> None:
        self.host.identities.append(Identity(category, type_, name))

    def add_extension(self, form: Element) -> None:
        self.host.extensions.append(form)

    # -- routing and sessions ----------------------------------------------------------

    def route(self, stanza: Element, origin: Any = None) -> None:
        """Send a stanza on its way (Prosody's module:send)."""
        self._services.router.route(stanza, origin)

    def reply(self, origin: Any, stanza: Element) -> None:
        """Answer the session a stanza came from (or route the answer)."""
        self._services.router.reply(origin, stanza)

    def bounce(self, stanza: Element, origin: Any, error: Any) -> None:
        self._services.router.bounce(stanza, origin, error)

    def sessions(self, bare: JID) -> Mapping[str, Session]:
        """The bound sessions of a user, by resource."""
        return self._services.router.resources(bare)

    def online_users(self, every_host: bool = False) -> dict[JID, Mapping[str, Session]]:
        """This host's (or, with `every_host`, every local host's) users with bound
        sessions: bare JID -> sessions by resource (Prosody's host.sessions)."""
        hosts = self._services.router.hosts
        return {bare: resources for bare, resources in
                list(self._services.router.sessions.items())
                if resources and (bare.domain == self.host.name
                                  or (every_host and bare.domain in hosts))}

    def hosts(self) -> Mapping[str, LocalHost]:
        """Every local host, by name."""
        return self._services.router.hosts

    def users_of(self, host: str) -> Users | None:
        """The accounts of another local VirtualHost (global modules: the admin shell),
        or None when there is no such host."""
        local = self._services.router.hosts.get(host)
        if local is None or local.is_component:
            return None
        return Users(self._services.accounts, local, local.fire)

    def session_data(self, session: Any, factory: Callable[[], Any]) -> Any:
        """This module's own state on `session`, made by `factory` on first use."""
        data = session.module_data
        state = data.get(self.name)
        if state is None:
            state = data[self.name] = factory()
        return state

    def share_session_data(self, encode: Callable[[Any], Any],
                           decode: Callable[[Any], Any]) -> None:
        """Declare this module's state on a session (`session_data`) as read by
        other nodes of a cluster, where the session stands in for one bound
        elsewhere: `encode` turns it into a small JSON value, `decode` back.
        Call `session_data_changed` after each change."""
        self._services.shared_session_data.declare(self.name, encode, decode)

    @property
    def shared_session_data(self) -> SharedSessionData:
        """The declarations of `share_session_data`, for the module that carries them."""
        return self._services.shared_session_data

    def session_data_changed(self, session: Any) -> None:
        """This module's shared state on `session` changed: `session-data-changed`
        lets a cluster announce it (nothing listens on a lone node)."""
        self.fire("session-data-changed", session=session, module=self.name)

    def keep_entities_on_one_node(self) -> None:
        """Declare that the entities of this (component) host, its addresses with
        a local part (MUC rooms and their occupants), have live state in the
        process: in a cluster each lives on one node at a time, and stanzas for
        it are passed to that node (mod_cluster). The host then hears
        `entity-claimed` (`jid`: this node took the entity over, what it cached of
        it before is stale) and `entity-released` (another node holds it now);
        the module fires `entity-ended` (`jid`) when one no longer exists here
        (a temporary room emptied), so the cluster frees its claim. Alone, a
        node holds them all and nobody listens."""
        self._services.one_node_hosts.add(self.host.name)

    @property
    def one_node_hosts(self) -> frozenset[str]:
        """The hosts declared by `keep_entities_on_one_node`."""
        return frozenset(self._services.one_node_hosts)

    def cached_data_changed(self, key: str) -> None:
        """Stored data this module caches under `key` was written (an account's
        pubsub nodes): `cached-data-changed` (`host`, `module`, `key`) lets a
        cluster tell the other nodes, which fire `cached-data-stale` (`module`,
        `key`) on this host for their copies (nothing listens on a lone node)."""
        self.fire("cached-data-changed", host=self.host.name, module=self.name, key=key)

    # -- time ---------------------------------------------------------------------

    def now(self) -> float:
        return self._services.clock()

    def add_timer(self, seconds: float, callback: Callable[[], object]) -> Timer:
        """Run `callback()` once, `seconds` from now; `.cancel()` the result to stop it."""
        return self._services.timers(seconds, callback)

    def add_periodic(self, interval: float, job: Callable[[], object], *,
                     first_delay: float, what: str) -> None:
        """Run `job()` `first_delay` seconds after the server has started, then
        every `interval` seconds until it stops; a failing run is logged (as
        "`what` failed") and the next one still comes."""
        running: list[Any] = []

        def loop() -> None:
            gevent.sleep(min(first_delay, interval))
            while True:
                try:
                    job()
                except Exception:
                    self.log.exception("%s failed", what)
                gevent.sleep(interval)

        def stopping(event: Any) -> None:
            for greenlet in running:
                greenlet.kill(block=False)

        self.hook("server-started", lambda event: running.append(gevent.spawn(loop)))
        self.hook("server-stopping", stopping)

    @property
    def process_started(self) -> float:
        return self._services.started_at

    # -- storage -----------------------------------------------------------------------

    def open_store(self, name: str | None = None, kind: str = "keyval") -> Any:
        """Prosody's module:open_store: "keyval" (a value per user), "map" (keys
        per user) or "archive" (timestamped items per user), named `name`
        (default: the module's name), for this host."""
        return self._services.stores.open(self.host.name, name or self.name, kind)

    def typed_store(self, name: str) -> Any:
        """A store with its own SQL tables: "rosters", "offline", "uploads"."""
        return self._services.typed_stores[name]

    # -- what the module offers -----------------------------------------------------

    def provides(self, kind: str, provider: Any) -> None:
        """Declare a listener ("net") or an HTTP app ("http") as data; the server
        opens what is declared, under `app.py run` and gunicorn alike."""
        self._services.providers.add(kind, provider)

    def provided(self, kind: str, name: str) -> bool:
        return self._services.providers.has(kind, name)

    def shared(self, key: str, factory: Callable[[], Any]) -> Any:
        """One object for the whole server, made once (e.g. the BOSH session table)."""
        shared = self._services.shared
        if key not in shared:
            shared[key] = factory()
        return shared[key]

    def service(self, name: str) -> Any:
        """A core service handed to modules that build sessions ("c2s")."""
        return self._services.extra[name]

    def depends(self, name: str) -> None:
        """Load module `name` on this host too, unless it is loaded already."""
        if name not in self.host.modules and self._services.load_module is not None:
            self.host.modules.append(name)
            self._services.load_module(self.host, name, self._services)
