"""RFC 6120 section 3.2 name resolution for outgoing s2s: SRV, then A/AAAA, over dnspython.

Prosody's `unbound` option picks the DNS servers:

    unbound = { forward = "ADDR@PORT" | { ... }, resolvconf = true | "PATH",
                hoststxt = false | true | "PATH" }

`forward` lists the servers to ask; `resolvconf` reads them from a
resolv.conf (the system's when true, Prosody's default) and `hoststxt`
answers A/AAAA from a hosts file first (the system's when true; off by
default as in Prosody). When `forward` is given, resolv.conf is only used
as well when `resolvconf` is set explicitly. Lookups are plain blocking
dnspython calls: under gevent's monkey-patching they only block the
greenlet that connects. `dns_timeout` bounds each lookup.
"""

from __future__ import annotations

import ipaddress
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xmpp.srv import SrvRecord, order_records, service_unavailable

if TYPE_CHECKING:
    import dns.resolver

log = logging.getLogger(__name__)

DEFAULT_PORT = 5269
SERVICE_PREFIX = "_xmpp-server._tcp."
DEFAULT_DNS_TIMEOUT = 15.0  # Prosody's dns_timeout
SYSTEM_RESOLV_CONF = "/etc/resolv.conf"
SYSTEM_HOSTS = "/etc/hosts"


class ResolverConfigError(ValueError):
    """An `unbound` option Vireo cannot use."""


@dataclass(frozen=True)
class ResolverSettings:
    """What the `unbound`, `dns_timeout`, `use_ipv4` and `use_ipv6` options say."""

    forward: tuple[tuple[str, int], ...] = ()
    resolvconf: str | None = SYSTEM_RESOLV_CONF
    hoststxt: str | None = None
    timeout: float = DEFAULT_DNS_TIMEOUT
    families: tuple[str, ...] = field(default=("A", "AAAA"))


def parse_forwarder(text: str) -> tuple[str, int]:
    """Unbound's "ADDR" or "ADDR@PORT" (IPv4 or IPv6 address) as (address, port)."""
    address, at, port = text.strip().rpartition("@")
    if not at:
        address, port = text.strip(), "53"
    try:
        ipaddress.ip_address(address)
        number = int(port)
    except ValueError:
        raise ResolverConfigError(f"unbound.forward: {text!r} is not ADDR or ADDR@PORT") from None
    if not 0 < number < 65536:
        raise ResolverConfigError(f"unbound.forward: bad port in {text!r}")
    return address, number


def _path_option(value: Any, default: str, name: str) -> str | None:
    if value is None or value is False:
        return None
    if value is True:
        return default
    if isinstance(value, str):
        return value
    raise ResolverConfigError(f"unbound.{name} must be true, false or a path")


def settings_from_config(config: Any) -> ResolverSettings:
    """Read Prosody's `unbound` table (and `dns_timeout`, `use_ipv4`, `use_ipv6`).

    Raises ResolverConfigError for values that cannot be used.
    """
    raw = config.get("unbound") or {}
    if not isinstance(raw, Mapping):
        raise ResolverConfigError("unbound must be a table")
    forward = raw.get("forward") or ()
    if isinstance(forward, str):
        forward = (forward,)
    forwarders = tuple(parse_forwarder(str(item)) for item in forward)
    resolvconf_default: Any = not forwarders
    resolvconf = _path_option(raw.get("resolvconf", resolvconf_default), SYSTEM_RESOLV_CONF,
                              "resolvconf")
    hoststxt = _path_option(raw.get("hoststxt", False), SYSTEM_HOSTS, "hoststxt")
    families = tuple(family for family, option in (("A", "use_ipv4"), ("AAAA", "use_ipv6"))
                     if config.get_bool(option, True))
    return ResolverSettings(forward=forwarders, resolvconf=resolvconf, hoststxt=hoststxt,
                            timeout=float(config.get_number("dns_timeout", DEFAULT_DNS_TIMEOUT,
                                                            min=1)),
                            families=families)


class Resolver:
    """SRV and address lookups for one server process."""

    def __init__(self, settings: ResolverSettings, *, rng: random.Random | None = None) -> None:
        self.settings = settings
        self.rng = rng

    @cached_property
    def _dns(self) -> dns.resolver.Resolver:
        """dnspython's resolver, made at the first lookup: dnspython is some
        2 MiB of a process's memory, which a server that never dials out
        (no s2s, or no peer yet) does without."""
        import dns.exception
        import dns.nameserver
        import dns.resolver

        settings = self.settings
        resolver = dns.resolver.Resolver(configure=False)
        servers: list[Any] = []
        if settings.resolvconf is not None:
            try:
                servers += dns.resolver.Resolver(filename=settings.resolvconf).nameservers
            except (OSError, dns.exception.DNSException) as error:
                log.warning("Cannot read DNS servers from %s: %s", settings.resolvconf, error)
        servers += [dns.nameserver.Do53Nameserver(address, port)
                    for address, port in settings.forward]
        if not servers:
            log.error("No DNS servers configured: outgoing s2s connections will fail")
        resolver.nameservers = servers
        resolver.lifetime = settings.timeout
        resolver.timeout = min(2.0, settings.timeout)
        resolver.cache = dns.resolver.LRUCache()
        return resolver

    def _query(self, name: str, rdtype: str) -> list[Any]:
        import dns.exception

        try:
            answer = self._dns.resolve(name, rdtype, search=False, raise_on_no_answer=False)
        except (dns.exception.DNSException, OSError) as error:
            log.debug("DNS %s %s: %s", rdtype, name, error)
            return []
        return list(answer.rrset or ())

    def srv(self, domain: str) -> list[SrvRecord]:
        """The `_xmpp-server._tcp` records of `domain` (empty when there are none)."""
        return [SrvRecord(r.priority, r.weight, r.port, r.target.to_text().rstrip("."))
                for r in self._query(SERVICE_PREFIX + domain, "SRV")]

    def addresses(self, host: str) -> list[str]:
        """The IP addresses of `host`: itself when it is one, the hosts file, then DNS."""
        try:
            return [str(ipaddress.ip_address(host))]
        except ValueError:
            pass
        if self.settings.hoststxt is not None:
            found = hosts_file_addresses(Path(self.settings.hoststxt), host)
            if found:
                return found
        return [r.address for family in self.settings.families for r in self._query(host, family)]

    def targets(self, domain: str) -> list[tuple[str, int]]:
        """(host, port) pairs to try in order: the SRV targets as RFC 2782
        orders them, else the domain itself on 5269; empty when SRV says the
        domain offers no XMPP server."""
        records = self.srv(domain)
        if not records:
            return [(domain, DEFAULT_PORT)]
        if service_unavailable(records):
            return []
        return [(record.target, record.port) for record in order_records(records, self.rng)]


def hosts_file_addresses(path: Path, host: str) -> list[str]:
    """Addresses `path` (in /etc/hosts format) gives for `host`."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        log.debug("Cannot read hosts file %s: %s", path, error)
        return []
    host = host.lower()
    found = []
    for line in lines:
        fields = line.partition("#")[0].split()
        if len(fields) >= 2 and host in (name.lower() for name in fields[1:]):
            found.append(fields[0])
    return found
