"""Address matching against lists of exact addresses and CIDR ranges.

Used wherever trust depends on the peer's address: `trusted_proxies`,
`proxy_trusted_proxies`, `openmetrics_allow_ips` / `openmetrics_allow_cidr`.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressMatcher:
    """Answers whether an address is in a configured set of addresses and ranges."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.networks: list[IPNetwork] = []
        for entry in entries:
            try:
                self.networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
            except ValueError:
                log.warning("Ignoring invalid address or range %r", entry)

    def __contains__(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.networks)
