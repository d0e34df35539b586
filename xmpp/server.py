"""The server composition: config, storage, router, hosts, modules and listeners.

`VireoServer` is built once per process. `start()` migrates the database
and opens every listener; `stop()` closes streams, then listeners, in the
order close -> drain (bounded) -> stop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

from storage.accounts import AccountStore
from storage.db import Database, database_url
from storage.offline import OfflineStore
from storage.roster import RosterStore
from storage.uploads import UploadStore
from xmpp.admin import AdminSocket, describe_sessions, open_admin_socket
from xmpp.auth_throttle import FailureThrottle
from xmpp.c2s import DEFAULT_UNAUTHENTICATED_STANZA_SIZE, C2SSession
from xmpp.config import Config, HostConfig
from xmpp.errors import StreamError
from xmpp.hosts import LocalHost
from xmpp.listeners import SocketTransport, XmppListener, bind_socket
from xmpp.metrics import watch_server
from xmpp.modules import load_modules, modules_for
from xmpp.modules.component import add_listener as add_component_listener
from xmpp.proxy_listener import open_proxy_listeners
from xmpp.router import Router
from xmpp.s2s_manager import S2SManager, start_federation
from xmpp.tls import SniContexts

log = logging.getLogger(__name__)

DEFAULT_INTERFACES = ("*", "::")
DEFAULT_C2S_STANZA_SIZE = 256 * 1024  # Prosody 0.12's c2s_stanza_size_limit
DEFAULT_C2S_TIMEOUT = 300  # seconds to authenticate and bind, as Prosody's c2s_timeout


class VireoServer:
    """Everything one Vireo process serves."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.now = clock
        self.started_at = clock()
        self.db = Database(database_url(config))
        self.accounts = AccountStore(self.db)
        self.rosters = RosterStore(self.db)
        self.offline = OfflineStore(self.db)
        self.uploads = UploadStore(self.db)
        self.router = Router()
        self.auth_throttle = FailureThrottle(
            max_failures=config.get_int("vireo_auth_failure_limit", 5, min=1),
            window=config.get_number("vireo_auth_failure_window", 60.0, min=1),
            delay=config.get_number("vireo_auth_failure_delay", 2.0, min=0),
            max_delay=config.get_number("vireo_auth_failure_max_delay", 30.0, min=0),
        )
        self.unauthenticated_stanza_size = config.get_int(
            "c2s_unauthenticated_stanza_size_limit", DEFAULT_UNAUTHENTICATED_STANZA_SIZE,
            min=1024)
        self.c2s_timeout = config.get_number("c2s_timeout", DEFAULT_C2S_TIMEOUT, min=1)
        self.c2s_tls = SniContexts(config)
        self.http_providers: list[Any] = []
        self.http_servers: list[Any] = []
        self.listeners: list[XmppListener] = []
        # service -> (make_session, XmppListener kwargs): what a PROXY port hands off to.
        self.services: dict[str, tuple[Callable[[SocketTransport], Any], dict[str, Any]]] = {}
        self.admin_socket: AdminSocket | None = None
        self.s2s: S2SManager | None = None
        self._load_hosts()
        watch_server(sessions=lambda: (row["kind"] for row in describe_sessions(self)),
                     connections=lambda: ((listener.service, len(listener.sessions))
                                          for listener in self.listeners))

    # -- hosts and modules ------------------------------------------------------

    def _load_hosts(self) -> None:
        for host_config in self.config.hosts.values():
            if not host_config.enabled:
                continue
            host = LocalHost(host_config.name, host_config, self,
                             is_component=host_config.kind == "Component")
            host.modules = modules_for(host)
            self.router.hosts[host.name] = host
        # Modules load once every host exists, so disco can see the components.
        for host in list(self.router.hosts.values()):
            load_modules(host)

    def c2s_stanza_size_limit(self, host: LocalHost | None) -> int:
        source: Config | HostConfig = host.config if host else self.config
        return source.get_int("c2s_stanza_size_limit", DEFAULT_C2S_STANZA_SIZE, min=10000)

    # -- listeners -------------------------------------------------------------

    def interfaces(self, service: str, default: tuple[str, ...] = ()) -> list[str]:
        fallback = self.config.get_list("interfaces", list(default or DEFAULT_INTERFACES))
        return self.config.get_list(f"{service}_interfaces", fallback)

    def ports(self, service: str, default: tuple[int, ...]) -> list[int]:
        return [int(p) for p in self.config.get_list(f"{service}_ports", list(default))]

    def _c2s_session(self, transport: SocketTransport) -> C2SSession:
        return C2SSession(self, transport)

    def _starttls_context(self, session: Any) -> Any:
        return self.c2s_tls.context_for(session.host.name) if session.host else None

    def add_listener(self, service: str, ports: list[int], interfaces: list[str],
                     make_session: Callable[[SocketTransport], Any], **kwargs: Any) -> None:
        self.services[service] = (make_session, kwargs)
        for interface in interfaces:
            for port in ports:
                sock = bind_socket(interface, port)
                if sock is None:
                    continue
                listener = XmppListener(service, sock, make_session, **kwargs)
                self.listeners.append(listener)

    @cached_property
    def wsgi_app(self) -> Any:
        """The WSGI callable of every HTTP app the modules provide (pywsgi, gunicorn, tests)."""
        from http_apps import build_wsgi_app

        return build_wsgi_app(self.config, self.http_providers)

    def start(self) -> None:
        """Open everything: XMPP listeners, then the HTTP ports if a module serves HTTP."""
        self.start_xmpp_listeners()
        self._start_http()
        self.started()

    def started(self) -> None:
        """Every port is open: modules may now announce URLs and start periodic jobs."""
        for host in self.router.hosts.values():
            host.fire("server-started")

    def start_xmpp_listeners(self) -> None:
        """Migrate the database and open every non-HTTP listener (gunicorn opens HTTP)."""
        self.db.migrate()
        # Storage is ready and no port is open yet: modules tidy up after a crash.
        for host in self.router.hosts.values():
            host.fire("server-starting")
        self.add_listener("c2s", self.ports("c2s", (5222,)), self.interfaces("c2s"),
                          self._c2s_session, starttls_context=self._starttls_context)
        direct_tls_ports = self.ports("c2s_direct_tls", ())
        if direct_tls_ports:
            context = self.c2s_tls.server_context()
            if context is None:
                log.error("c2s_direct_tls_ports set but no certificate found; not listening")
            else:
                self.add_listener("c2s_direct_tls", direct_tls_ports,
                                  self.interfaces("c2s_direct_tls"), self._c2s_session,
                                  tls_context=lambda: context,
                                  starttls_context=self._starttls_context)
        add_component_listener(self)
        self.s2s = start_federation(self)
        # After every service is registered: PROXY ports hand off to them.
        self.listeners += open_proxy_listeners(self, bind_socket)
        for listener in self.listeners:
            listener.start()
        self.admin_socket = open_admin_socket(self)
        if self.admin_socket is not None:
            self.admin_socket.start()

    def _start_http(self) -> None:
        """Prosody's mod_http: the http/https ports open when some module serves HTTP
        or a host loads "http" itself (a `Component "x" "http"` among them)."""
        if not self.http_providers and not any(
                "http" in host.modules for host in self.router.hosts.values()):
            return
        from http_apps.proxied import start_proxy_http_servers
        from http_apps.server import start_http_servers

        self.http_servers = start_http_servers(self.config, self.wsgi_app)
        self.http_servers += start_proxy_http_servers(self, self.wsgi_app, bind_socket)

    def stop(self, timeout: float = 5.0) -> None:
        """Close every stream with system-shutdown, then the listeners."""
        for host in self.router.hosts.values():
            host.fire("server-stopping")
        if self.http_servers:
            from http_apps.server import stop_http_servers

            stop_http_servers(self.http_servers, timeout=timeout)
        if self.admin_socket is not None:
            self.admin_socket.stop()
        if self.s2s is not None:
            self.s2s.stop()
        for listener in self.listeners:
            listener.server.close()
        for listener in self.listeners:
            for session in list(listener.sessions.values()):
                session.close(StreamError("system-shutdown"))
        for listener in self.listeners:
            listener.stop(timeout=timeout)
        self.db.close()

