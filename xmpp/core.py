"""The server without its sockets and storage engines: hosts, modules, router and
the narrow services they share.

`ServerCore` is what `app.py run`, gunicorn and the unit tests all build:
the composition root (xmpp.server) hands it the stores and then opens the
listeners its modules declared. Nothing here opens a socket.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from xmpp.auth_throttle import failure_throttle
from xmpp.c2s import DEFAULT_UNAUTHENTICATED_STANZA_SIZE, C2SServices, Credentials
from xmpp.config import Config, HostConfig
from xmpp.hosts import GLOBAL, LocalHost
from xmpp.moduleapi import Accounts, ModuleServices, Users
from xmpp.modules import global_modules, load_module, modules_for
from xmpp.providers import Providers
from xmpp.router import Router
from xmpp.tls import SniContexts

DEFAULT_C2S_STANZA_SIZE = 256 * 1024  # Prosody 0.12's c2s_stanza_size_limit
DEFAULT_C2S_TIMEOUT = 300  # seconds to authenticate and bind, as Prosody's c2s_timeout


class ServerCore:
    """Every host with its modules, and the services they reach them through."""

    def __init__(self, config: Config, *, accounts: Accounts, stores: Any,
                 typed_stores: Mapping[str, Any], clock: Callable[[], float] = time.time,
                 storage_failure: Callable[[Exception], str | None] = lambda error: None) -> None:
        self.config = config
        self.clock = clock
        self.router = Router()
        self.certificates = SniContexts(config)  # reloaded in place on SIGHUP
        self.c2s = C2SServices(
            hosts=self.router.hosts, router=self.router,
            credentials=_as_credentials(accounts),
            throttle=failure_throttle(config, "c2s"),
            clock=clock, certificates=self.certificates,
            stanza_size_limit=self.c2s_stanza_size_limit,
            unauthenticated_stanza_size=config.get_int(
                "c2s_unauthenticated_stanza_size_limit", DEFAULT_UNAUTHENTICATED_STANZA_SIZE,
                min=1024),
            timeout=config.get_number("c2s_timeout", DEFAULT_C2S_TIMEOUT, min=1),
            storage_failure=storage_failure)
        self.services = ModuleServices(
            config=config, router=self.router, clock=clock, started_at=clock(),
            accounts=accounts, stores=stores, typed_stores=typed_stores,
            providers=Providers(), extra={"c2s": self.c2s, "router": self.router},
            load_module=load_module)
        self.global_host = LocalHost(GLOBAL, config)
        self._load_hosts()

    @property
    def providers(self) -> Providers:
        return self.services.providers

    def _load_hosts(self) -> None:
        for host_config in self.config.hosts.values():
            if not host_config.enabled:
                continue
            host = LocalHost(host_config.name, host_config,
                             is_component=host_config.kind == "Component")
            host.modules = modules_for(host)
            self.router.hosts[host.name] = host
        # Modules load once every host exists, so disco can see the components;
        # global ones (the listeners) last, once every host has declared its needs.
        for host in list(self.router.hosts.values()):
            for name in list(host.modules):
                load_module(host, name, self.services)
        self.global_host.modules = global_modules(self.config)
        for name in self.global_host.modules:
            load_module(self.global_host, name, self.services)

    def all_hosts(self) -> Iterator[LocalHost]:
        """The global pseudo-host, then every local host."""
        yield self.global_host
        yield from self.router.hosts.values()

    def fire_everywhere(self, event: str, **fields: Any) -> None:
        """A server-wide event (`server-started`, `server-stopping`) on every host."""
        for host in list(self.all_hosts()):
            host.fire(event, **fields)

    def users(self, host: str) -> Users:
        """The accounts of a local VirtualHost, firing its account events (for the CLI)."""
        local = self.router.hosts[host]
        return Users(self.services.accounts, local, local.fire)

    def c2s_stanza_size_limit(self, host: LocalHost | None) -> int:
        source: Config | HostConfig = host.config if host else self.config
        return source.get_int("c2s_stanza_size_limit", DEFAULT_C2S_STANZA_SIZE, min=10000)


def _as_credentials(accounts: Accounts) -> Credentials:
    assert hasattr(accounts, "scram_credentials"), "the account store must give SCRAM material"
    return accounts  # type: ignore[return-value]
