"""Trusted reverse proxies (Prosody's `trusted_proxies`): X-Forwarded-For and X-Forwarded-Proto.

Use it in front of every HTTP app. It trusts nothing by default except what
`trusted_proxies` lists (exact addresses and CIDR ranges; Prosody's default is
loopback). Only when the connected peer is trusted are the headers believed:
the client is the rightmost X-Forwarded-For address that is not a trusted proxy
(the peer itself when every address is trusted), and `X-Forwarded-Proto: https`
marks the request secure. From any other peer the headers are ignored.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from xmpp.netmatch import AddressMatcher

DEFAULT_TRUSTED_PROXIES = ("127.0.0.1", "::1")

#: The environ key keeping the connected peer's address when REMOTE_ADDR is rewritten.
PEER_ADDR = "vireo.peer_addr"

_BRACKETED = re.compile(r"^\[([^\]]+)\](?::\d+)?$")
_V4_WITH_PORT = re.compile(r"^(\d+\.\d+\.\d+\.\d+):\d+$")


def _address(entry: str) -> str | None:
    """The address in one X-Forwarded-For entry ("[v6]:port" and "v4:port" allowed), or None."""
    match = _BRACKETED.match(entry) or _V4_WITH_PORT.match(entry)
    candidate = match.group(1) if match else entry
    try:
        ipaddress.ip_address(candidate.split("%", 1)[0])
    except ValueError:
        return None
    return candidate


def forwarded_client(peer: str, forwarded_for: str | None, trusted: AddressMatcher) -> str:
    """The client address of a request from trusted proxy `peer` carrying `forwarded_for`.

    Walking from the right, trusted proxies are skipped and the first other address
    is the client; entries that are not addresses ("unknown") are skipped too.
    """
    for entry in reversed(re.split(r"[\s,]+", forwarded_for or "")):
        address = _address(entry)
        if address is not None and address not in trusted:
            return address
    return peer


class TrustedProxies:
    """WSGI middleware believing forwarding headers from trusted proxies only.

    After it, REMOTE_ADDR is the client address and `wsgi.url_scheme` is "https"
    for requests that were secure on the client side; the connected peer stays
    in environ["vireo.peer_addr"].
    """

    def __init__(self, app, trusted: Iterable[str] = DEFAULT_TRUSTED_PROXIES) -> None:
        self.app = app
        self.trusted = AddressMatcher(trusted)
        # Peers repeat: remember the verdicts instead of parsing each address again.
        self.is_trusted = functools.lru_cache(maxsize=4096)(self.trusted.__contains__)

    def __call__(self, environ, start_response):
        peer = environ.get("REMOTE_ADDR", "")
        environ[PEER_ADDR] = peer
        client, https = self.believed(peer, environ.get("HTTP_X_FORWARDED_FOR"),
                                      environ.get("HTTP_X_FORWARDED_PROTO"))
        if client != peer:
            environ["REMOTE_ADDR"] = client
        if https:
            environ["wsgi.url_scheme"] = "https"
        return self.app(environ, start_response)

    def believed(self, peer: str, forwarded_for: str | None,
                 forwarded_proto: str | None) -> tuple[str, bool]:
        """The client address, and whether the client's side was https, after the
        forwarding headers of a request from `peer`: (peer, False) unless it is trusted."""
        if not self.is_trusted(peer):
            return peer, False
        client = forwarded_client(peer, forwarded_for, self.trusted) if forwarded_for else peer
        return client, (forwarded_proto or "").strip().lower() == "https"

    def direct_route(self, request: Any) -> Any:
        """The app's direct route (http_apps.plain) of `request`, whose client address
        and security this sets as __call__ sets them in the environ."""
        find = getattr(self.app, "direct_route", None)
        if find is None:
            return None
        request.remote_addr, https = self.believed(request.peer, request.forwarded_for,
                                                   request.forwarded_proto)
        request.secure = request.secure or https
        return find(request)
