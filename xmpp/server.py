"""The composition root: storage, the server core, and the listeners its modules declare.

`VireoServer` is built once per process. `start()` migrates the database
and opens every declared listener; `stop()` closes streams, then listeners,
in the order close -> drain (bounded) -> stop. The same object serves
`app.py run`, gunicorn (gunicorn.conf.py, wsgi.py) and the tests.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import cached_property
from typing import Any

import gevent.event

from storage.accounts import AccountStore
from storage.db import Database, database_url, is_storage_error, storage_error_condition
from storage.offline import OfflineStore
from storage.roster import RosterStore
from storage.stores import StoreFactory
from storage.uploads import UploadStore
from xmpp.admin import AdminSocket, describe_sessions, live_sessions, open_admin_socket
from xmpp.config import Config, ConfigError, check_authentication, load_config
from xmpp.core import ServerCore
from xmpp.errors import StreamError
from xmpp.listeners import SocketTransport, XmppListener, bind_socket
from xmpp.logconfig import configure_logging
from xmpp.metrics import storage_errors, watch_server
from xmpp.providers import NetProvider
from xmpp.proxy_listener import open_proxy_listeners

log = logging.getLogger(__name__)

DEFAULT_INTERFACES = ("*", "::")


class VireoServer:
    """Everything one Vireo process serves."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.now = clock
        self.db = Database(database_url(config))
        self.accounts = AccountStore(self.db, run_blocking=gevent.get_hub().threadpool.apply)
        self.rosters = RosterStore(self.db)
        self.offline = OfflineStore(self.db)
        self.uploads = UploadStore(self.db)
        self.core = ServerCore(
            config, accounts=self.accounts, stores=StoreFactory(self.db),
            typed_stores={"rosters": self.rosters, "offline": self.offline,
                          "uploads": self.uploads},
            clock=clock, storage_failure=_storage_failure)
        self.router = self.core.router
        self.started_at = self.core.services.started_at
        self.http_servers: list[Any] = []
        self.listeners: list[XmppListener] = []
        # service -> (make_session, XmppListener kwargs): what a PROXY port hands off to.
        self.services: dict[str, tuple[Callable[[SocketTransport], Any], dict[str, Any]]] = {}
        self.admin_socket: AdminSocket | None = None
        # Set to ask the process to stop (signals, the admin shell's server:shutdown()).
        self.stopping = gevent.event.Event()
        # Prosody's prosody.shutdown(reason): the text of every stream's system-shutdown.
        self.shutdown_reason: str | None = None
        self.core.services.extra["shutdown"] = self.request_shutdown
        # Every live session (the web admin's listing), as the admin socket sees them.
        self.core.services.extra["sessions"] = lambda: list(live_sessions(self))
        # Every HTTP app as one WSGI callable (None when nothing serves HTTP), for a
        # module opening a listener of its own (a cluster node's for passed-on requests).
        self.core.services.extra["wsgi_app"] = \
            lambda: self.wsgi_app if self.serves_http() else None
        watch_server(sessions=lambda: (row["kind"] for row in describe_sessions(self)),
                     connections=lambda: ((listener.service, len(listener.sessions))
                                          for listener in self.listeners))

    def reload(self) -> bool:
        """SIGHUP (Prosody's mod_posix): read the config file again, load the
        certificates again for new connections, reopen the log files, and fire
        `config-reloaded` everywhere. A config that fails to load changes
        nothing (logged). Modules keep the options they read at start."""
        log.info("Reloading configuration file")
        try:
            config = load_config(self.config.path)
            check_authentication(config)
        except ConfigError as error:
            log.error("Config not reloaded: %s:%s: %s", error.file, error.line or "",
                      error.message)
            return False
        self.core.certificates.reload(config)
        if self.http_servers:
            from http_apps.server import reload_certificates
            reload_certificates(self.http_servers, config)
        configure_logging(config)
        log.info("Configuration reloaded; certificates and log files reopened")
        for warning in config.warnings:
            log.warning("%s", warning)
        self.core.fire_everywhere("config-reloaded", config=config)
        return True

    def signal_received(self, name: str) -> None:
        """SIGUSR1/SIGUSR2: Prosody's `signal/<NAME>` events, for modules."""
        log.info("Received %s", name)
        self.core.fire_everywhere(f"signal/{name}")

    def request_shutdown(self, reason: str | None = None) -> None:
        """Ask `app.py run` to stop the server (it calls stop())."""
        log.info("Shutdown requested%s", f": {reason}" if reason else "")
        self.shutdown_reason = reason
        self.stopping.set()

    @property
    def http_providers(self) -> list[Any]:
        return self.core.providers.http

    @property
    def s2s(self) -> Any:
        """The federation manager, or None while federation is off."""
        return self.core.services.shared.get("s2s")

    # -- listeners -------------------------------------------------------------

    def interfaces(self, service: str, default: tuple[str, ...] = ()) -> list[str]:
        fallback = self.config.get_list("interfaces", list(default or DEFAULT_INTERFACES))
        return self.config.get_list(f"{service}_interfaces", fallback)

    def ports(self, service: str, default: tuple[int, ...]) -> list[int]:
        return [int(p) for p in self.config.get_list(f"{service}_ports", list(default))]

    def add_listener(self, provider: NetProvider) -> None:
        """Open the ports of one declared service (Prosody's portmanager)."""
        kwargs: dict[str, Any] = {"tls_context": provider.tls_context,
                                  "starttls_context": provider.starttls_context}
        if provider.handshake_timeout is not None:
            kwargs["handshake_timeout"] = provider.handshake_timeout
        def make_session(transport: SocketTransport,
                         make: Callable[[SocketTransport], Any] = provider.make_session) -> Any:
            session = make(transport)
            # Global modules see each new connection's session (mod_limits).
            self.core.global_host.fire("session-opened", session=session)
            return session

        self.services[provider.name] = (make_session, kwargs)
        interfaces = (list(provider.interfaces) if provider.interfaces is not None
                      else self.interfaces(provider.name, provider.default_interfaces or ()))
        for interface in interfaces:
            for port in self.ports(provider.name, provider.default_ports):
                sock = bind_socket(interface, port)
                if sock is not None:
                    self.listeners.append(
                        XmppListener(provider.name, sock, make_session, **kwargs))

    @cached_property
    def wsgi_app(self) -> Any:
        """The WSGI callable of every HTTP app the modules provide (pywsgi, gunicorn, tests)."""
        from http_apps import build_wsgi_app

        return build_wsgi_app(self.config, self.http_providers)

    def start(self) -> None:
        """Open everything: XMPP listeners, then the HTTP ports if a module serves HTTP."""
        self.start_xmpp_listeners()
        self.start_http(("http", "https"))
        self.started()

    def started(self) -> None:
        """Every port is open: modules may now announce URLs and start periodic jobs."""
        self.core.fire_everywhere("server-started")

    def start_xmpp_listeners(self) -> None:
        """Migrate the database and open every declared non-HTTP listener."""
        self.db.migrate_in_child()
        # Storage is ready and no port is open yet: modules tidy up after a crash.
        self.core.fire_everywhere("server-starting")
        for provider in self.core.providers.net.values():
            self.add_listener(provider)
        # After every service is registered: PROXY ports hand off to them.
        self.listeners += open_proxy_listeners(self, bind_socket)
        for listener in self.listeners:
            listener.start()
        self.admin_socket = open_admin_socket(self)
        if self.admin_socket is not None:
            self.admin_socket.start()

    def serves_http(self) -> bool:
        """Prosody's mod_http: the HTTP ports open when some module serves HTTP
        or a host loads "http" itself (a `Component "x" "http"` among them)."""
        return bool(self.http_providers) or any(
            "http" in host.modules for host in self.router.hosts.values())

    def start_http(self, services: tuple[str, ...]) -> None:
        """Open the HTTP `services` ("http", "https"; gunicorn binds "http" itself)
        and the PROXY-protocol HTTP ports."""
        if not self.serves_http():
            return
        from http_apps.proxied import start_proxy_http_servers
        from http_apps.server import start_http_servers

        self.http_servers = start_http_servers(self.config, self.wsgi_app, services=services)
        self.http_servers += start_proxy_http_servers(self, self.wsgi_app, bind_socket)

    def stop(self, timeout: float = 5.0) -> None:
        """Close every stream with system-shutdown (the reason given to
        request_shutdown as its text, as Prosody does), then the listeners."""
        error = StreamError("system-shutdown", self.shutdown_reason)
        self.core.fire_everywhere("server-stopping", reason=self.shutdown_reason, error=error)
        if self.http_servers:
            from http_apps.server import stop_http_servers

            stop_http_servers(self.http_servers, timeout=timeout)
        if self.admin_socket is not None:
            self.admin_socket.stop()
        for listener in self.listeners:
            listener.server.close()
        for listener in self.listeners:
            for session in list(listener.sessions.values()):
                session.close(error)
        for listener in self.listeners:
            listener.stop(timeout=timeout)
        self.db.close()


def _storage_failure(error: Exception) -> str | None:
    """The stanza condition for a storage failure (counted), None for other errors."""
    if not is_storage_error(error):
        return None
    storage_errors().labels(store="sql").inc()
    return storage_error_condition(error)
