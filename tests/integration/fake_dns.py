"""A small authoritative DNS server for federation tests (dnslib), on a loopback port.

Answers SRV, A and AAAA from a table the test fills; every other name is
NXDOMAIN. It serves UDP and TCP on the same port, so servers can be
pointed at it with `unbound = { forward = "127.0.0.1@PORT" }`.
"""

from __future__ import annotations

import socket

from dnslib import AAAA, QTYPE, RCODE, RR, SRV, A
from dnslib.server import BaseResolver, DNSLogger, DNSServer

TTL = 60


class _Table(BaseResolver):
    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[RR]] = {}

    def resolve(self, request, handler):
        reply = request.reply()
        question = request.q
        name = str(question.qname).lower().rstrip(".")
        answers = self.records.get((name, QTYPE[question.qtype]), [])
        for record in answers:
            reply.add_answer(record)
        if not answers and not any(key[0] == name for key in self.records):
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


class FakeDns:
    """The test's DNS: `add_srv`, `add_address`, then point servers at `forward`."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.address = address
        self.table = _Table()
        self.servers: list[DNSServer] = []
        self.port = 0

    @property
    def forward(self) -> str:
        return f"{self.address}@{self.port}"

    def add_srv(self, domain: str, target: str, port: int, *, priority: int = 0,
                weight: int = 0) -> None:
        name = f"_xmpp-server._tcp.{domain}"
        self._add(name, "SRV", RR(name, QTYPE.SRV, ttl=TTL,
                                  rdata=SRV(priority, weight, port, target.rstrip(".") + ".")))

    def add_address(self, host: str, address: str) -> None:
        if ":" in address:
            self._add(host, "AAAA", RR(host, QTYPE.AAAA, ttl=TTL, rdata=AAAA(address)))
        else:
            self._add(host, "A", RR(host, QTYPE.A, ttl=TTL, rdata=A(address)))

    def _add(self, name: str, qtype: str, record: RR) -> None:
        self.table.records.setdefault((name.lower(), qtype), []).append(record)

    def start(self) -> FakeDns:
        logger = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data",
                           prefix=False)
        for _attempt in range(20):
            port = _free_udp_port(self.address)
            try:
                udp = DNSServer(self.table, address=self.address, port=port, logger=logger)
            except OSError:
                continue
            try:
                tcp = DNSServer(self.table, address=self.address, port=port, tcp=True,
                                logger=logger)
            except OSError:
                udp.server.server_close()
                continue
            self.port, self.servers = port, [udp, tcp]
            for server in self.servers:
                server.start_thread()
            return self
        raise RuntimeError("no free port for the test DNS server")

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
            server.server.server_close()


def _free_udp_port(address: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]
