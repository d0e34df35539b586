"""PROXY protocol ports (HAProxy's proxy-protocol.txt, v1 and v2), as Prosody's mod_net_proxy.

A load balancer in front of Vireo opens each connection to a PROXY port with
one header naming the client's real address; Vireo reads exactly that header
(never a byte past it, see xmpp.proxy_protocol) and hands the connection to
the service the port is mapped to, with the client's address as the
session's address: logs, the failed-login throttle, `trusted_proxies` and the
admin session listing all see the address the proxy sent.

Like Prosody, Vireo opens PROXY ports only with `net_proxy` in the global
`modules_enabled`. Options (global section, Prosody's names):
- `proxy_port_mappings = { [15222] = "c2s", [15269] = "s2s", [15280] = "http" }`:
  the service each port serves. Any XMPP service opened through
  `Any.add_listener` (c2s, c2s_direct_tls, s2s, component, ...), and
  http/https when some module serves HTTP (http_apps.proxied).
- `proxy_ports`: the ports to open; by default every mapped port. A port
  without a mapping (or mapped to a service this server does not run) is
  reported at start, and its connections are dropped once their header is read.
- `proxy_interfaces`: falls back to `interfaces`, as Prosody's portmanager.
- `proxy_trusted_proxies` (default `{ "127.0.0.1", "::1" }`; exact addresses
  and CIDR ranges): the peers allowed to connect; any other is closed before
  a byte is read. An empty list trusts every peer, as in Prosody.
- `vireo_proxy_header_timeout` (seconds, default 10): a header still
  incomplete by then closes the connection.

Unlike Prosody's module, a port may map to a direct-TLS service
(`c2s_direct_tls`, `https`): the header comes first, then the TLS handshake
runs on the same socket (as ejabberd does).
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent

from xmpp.listeners import SocketTransport, XmppListener
from xmpp.netmatch import AddressMatcher
from xmpp.proxy_protocol import ProxyHeader, ProxyHeaderError, ProxyHeaderParser

if TYPE_CHECKING:
    from xmpp.config import Config

log = logging.getLogger(__name__)

MODULE = "net_proxy"
DEFAULT_TRUSTED_PROXIES = ("127.0.0.1", "::1")  # mod_net_proxy's default
DEFAULT_HEADER_TIMEOUT = 10.0
HTTP_SERVICES = frozenset({"http", "https"})


# -- configuration ------------------------------------------------------------------------


def port_mappings(config: Config) -> dict[int, str]:
    """`proxy_port_mappings` as {port: service}; bad entries are warned about and skipped."""
    raw = config.get("proxy_port_mappings", {})
    if isinstance(raw, list):  # a Lua table keyed 1..n reads as a list
        raw = {index: value for index, value in enumerate(raw, start=1)}
    if not isinstance(raw, dict):
        config.warn(f"option 'proxy_port_mappings': expected a table, got {raw!r}")
        return {}
    mappings: dict[int, str] = {}
    for port, service in raw.items():
        number = _port_number(port)
        if number is None or not isinstance(service, str) or not service:
            config.warn(f"option 'proxy_port_mappings': ignoring [{port!r}] = {service!r}")
            continue
        mappings[number] = service
    return mappings


def _port_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    return value if isinstance(value, int) and 0 < value <= 0xFFFF else None


def proxy_ports(config: Config, mappings: dict[int, str]) -> list[int]:
    """`proxy_ports`, or every mapped port when it is not set (Prosody's advice)."""
    ports = []
    for value in config.get_list("proxy_ports", sorted(mappings)):
        number = _port_number(value)
        if number is None:
            config.warn(f"option 'proxy_ports': ignoring {value!r}, not a port number")
        else:
            ports.append(number)
    return list(dict.fromkeys(ports))


def trusted_proxies(config: Config) -> AddressMatcher | None:
    """The peers allowed to send PROXY headers; None trusts every peer (an empty list)."""
    entries = config.get_list("proxy_trusted_proxies", DEFAULT_TRUSTED_PROXIES)
    return AddressMatcher(entries) if entries else None


# -- reading the header -------------------------------------------------------------------


def read_proxy_header(sock: Any, timeout: float) -> tuple[ProxyHeader, bytes]:
    """Read one PROXY header from `sock`, never past its end; return it and the bytes after.

    Raises ProxyHeaderError for a malformed, truncated or oversized header, or
    one not complete within `timeout` seconds; OSError when the socket fails.
    """
    parser = ProxyHeaderParser()
    header = None
    with gevent.Timeout(timeout, ProxyHeaderError(f"no complete header within {timeout:g}s")):
        while header is None:
            header = parser.feed(sock.recv(parser.bytes_wanted()))
    return header, parser.remainder


@dataclass(frozen=True)
class Admitted:
    """A connection whose header was accepted: the client's address, the service's first bytes."""

    peer: tuple[str, int]
    initial: bytes


@dataclass(frozen=True)
class ProxyGate:
    """What every PROXY port does before its service runs: trust check, then the header.

    `trusted` None trusts every peer.
    """

    port: int
    trusted: AddressMatcher | None
    header_timeout: float = DEFAULT_HEADER_TIMEOUT

    def admit(self, sock: Any, address: tuple[Any, ...]) -> Admitted | None:
        """The client's address once the header is read; None (socket closed) when dropped."""
        proxy = (str(address[0]), int(address[1]))
        if self.trusted is not None and proxy[0] not in self.trusted:
            log.warning("Refusing PROXY connection on port %d from untrusted %s",
                        self.port, proxy[0])
            _close(sock)
            return None
        try:
            header, initial = read_proxy_header(sock, self.header_timeout)
        except (ProxyHeaderError, OSError) as error:
            log.warning("Dropping PROXY connection on port %d from %s: %s",
                        self.port, proxy[0], error)
            _close(sock)
            return None
        # v1 UNKNOWN and v2 LOCAL (and UNSPEC) keep the socket's own addresses.
        peer = header.source or proxy
        log.debug("PROXY v%d header on port %d from %s: client %s:%d",
                  header.version, self.port, proxy[0], *peer)
        return Admitted(peer, initial)


def _close(sock: Any) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


# -- the listeners ------------------------------------------------------------------------


class ProxyListener(XmppListener):
    """One PROXY port in front of an XMPP service, or of none (dropped after the header).

    The service's sessions live in this listener's `sessions` like any other
    listener's (shutdown, session listing); their transports are labelled
    `proxy:<service>`.
    """

    def __init__(self, listener: Any, gate: ProxyGate, service: str | None,
                 make_session: Callable[[SocketTransport], Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(f"proxy:{service or 'unmapped'}", listener,
                         make_session or _no_session, **kwargs)
        self.gate = gate
        self.mapped = service if make_session is not None else None

    def _handle(self, sock: Any, address: tuple[Any, ...]) -> None:
        admitted = self.gate.admit(sock, address)
        if admitted is None:
            return
        if self.mapped is None:
            log.warning("Dropping proxied connection from %s on port %d: no service mapped",
                        admitted.peer[0], self.gate.port)
            _close(sock)
            return
        log.info("Passing proxied connection %s:%d to service %s", *admitted.peer, self.mapped)
        self.serve(sock, admitted.peer, admitted.initial)


def _no_session(transport: SocketTransport) -> Any:
    raise RuntimeError("an unmapped PROXY port has no service to run")


@dataclass(frozen=True)
class ProxyPort:
    """One configured PROXY port: its service (None when unmapped) and its gate."""

    port: int
    service: str | None
    gate: ProxyGate


def enabled(config: Config) -> bool:
    """Whether mod_net_proxy is loaded: Prosody opens no PROXY port without it."""
    return MODULE in config.get_list("modules_enabled", ())


def configured_ports(config: Config) -> list[ProxyPort]:
    """Every PROXY port of the config, in `proxy_ports` order (none without net_proxy)."""
    if not enabled(config):
        return []
    mappings = port_mappings(config)
    ports = proxy_ports(config, mappings)
    if not ports:
        return []
    trusted = trusted_proxies(config)
    timeout = config.get_number("vireo_proxy_header_timeout", DEFAULT_HEADER_TIMEOUT,
                                min=0.1, max=300)
    return [ProxyPort(port, mappings.get(port), ProxyGate(port, trusted, timeout))
            for port in ports]


Binder = Callable[[str, int], "socket.socket | None"]


def open_proxy_listeners(server: Any, bind: Binder) -> list[ProxyListener]:
    """Bind the PROXY ports of XMPP services, and the unmapped ones (not started yet).

    Call once every XMPP service is registered (`server.add_listener`): a port
    maps onto that service's session factory and TLS settings. The http and
    https ones are http_apps.proxied's when some module serves HTTP.
    """
    config = server.config
    if not enabled(config) and (config.get("proxy_port_mappings") or config.get("proxy_ports")):
        log.warning("PROXY ports are configured but %r is not in modules_enabled: not "
                    "listening on them", MODULE)
    entries = configured_ports(config)
    if entries and entries[0].gate.trusted is None:
        log.warning("proxy_trusted_proxies is empty: any peer may connect to the PROXY ports "
                    "and claim any client address")
    listeners = []
    for entry in entries:
        service = entry.service
        if service in HTTP_SERVICES and server.http_providers:
            continue  # http_apps.proxied opens these with the HTTP layer
        if service is None:
            log.warning("No port<>service mapping found for PROXY port %d: its connections "
                        "will be dropped", entry.port)
        elif service not in server.services or service in HTTP_SERVICES:
            log.error("PROXY port %d maps to %r, which this server does not run: its "
                      "connections will be dropped", entry.port, service)
            service = None
        make_session, kwargs = server.services[service] if service else (None, {})
        for interface in server.interfaces("proxy"):
            sock = bind(interface, entry.port)
            if sock is not None:
                listeners.append(ProxyListener(sock, entry.gate, service, make_session, **kwargs))
    return listeners
