"""What modules provide, as data (Prosody's `module:provides`): listeners and HTTP apps.

The composition root opens every declared listener and mounts every HTTP app,
the same way under `app.py run` and under gunicorn.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class NetProvider:
    """A listening service (Prosody's "net" provider: c2s, s2s, component...).

    name: the service, and the prefix of its options (`<name>_ports`,
        `<name>_interfaces`, falling back to `interfaces`).
    make_session: makes the session machine for a new connection's transport.
    default_ports: when `<name>_ports` is not set.
    default_interfaces: when neither `<name>_interfaces` nor `interfaces` is set
        (None: every interface).
    interfaces: overrides the lookup above entirely (a service with its own rule).
    tls_context: direct TLS (the handshake first); None for plain or STARTTLS.
    starttls_context: the context for a session asking for STARTTLS.
    handshake_timeout: bound on a TLS handshake on this port.
    """

    name: str
    make_session: Callable[[Any], Any]
    default_ports: tuple[int, ...] = ()
    default_interfaces: tuple[str, ...] | None = None
    interfaces: tuple[str, ...] | None = None
    tls_context: Callable[[], ssl.SSLContext | None] | None = None
    starttls_context: Callable[[Any], ssl.SSLContext | None] | None = None
    handshake_timeout: float | None = None


class Providers:
    """Every provider the loaded modules declared, by kind."""

    def __init__(self) -> None:
        self.net: dict[str, NetProvider] = {}
        self.http: list[Any] = []  # http_apps.provider.HttpProvider

    def add(self, kind: str, provider: Any) -> None:
        if kind == "net":
            # One listener per service however many hosts declare it.
            self.net.setdefault(provider.name, provider)
        elif kind == "http":
            if not self.has("http", provider.name, provider.served_host):
                self.http.append(provider)
        else:
            raise ValueError(f"unknown provider kind {kind!r}")

    def has(self, kind: str, name: str, host: str | None = None) -> bool:
        if kind == "net":
            return name in self.net
        return any(p.name == name and (host is None or p.served_host == host)
                   for p in self.http)
