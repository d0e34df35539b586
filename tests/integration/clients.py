"""slixmpp clients for integration tests: a real XMPP client library against our server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
from pathlib import Path

from slixmpp import ClientXMPP

TIMEOUT = 10.0
DEFAULT_PLUGINS = ("xep_0030", "xep_0199", "xep_0092", "xep_0203")

logging.getLogger("slixmpp").setLevel(logging.WARNING)


def trusting_context(cert: Path) -> ssl.SSLContext:
    """Verify the server against the test's own self-signed certificate, hostname included."""
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = True
    return context


@functools.lru_cache(maxsize=16)
def _shared_context(cert: Path, _version: tuple[int, int]) -> ssl.SSLContext:
    return trusting_context(cert)


def shared_trusting_context(cert: Path) -> ssl.SSLContext:
    """trusting_context, made once per version of the certificate file: building one
    (and the system store slixmpp would load otherwise) costs ~0.1 s of CPU, per client."""
    stat = cert.stat()
    return _shared_context(cert, (stat.st_mtime_ns, stat.st_size))


class TestClient(ClientXMPP):
    """A ClientXMPP that records what it receives in queues tests can await."""

    __test__ = False

    def __init__(self, jid: str, password: str, *, cert: Path, mech: str | None = None,
                 plugins: tuple[str, ...] = DEFAULT_PLUGINS) -> None:
        super().__init__(jid, password, sasl_mech=mech,
                         ssl_context=shared_trusting_context(cert))
        for plugin in plugins:
            self.register_plugin(plugin)
        self.messages: asyncio.Queue = asyncio.Queue()
        self.presences: asyncio.Queue = asyncio.Queue()
        # XEP-0280 copies, once the xep_0280 plugin has enabled them.
        self.carbons_sent: asyncio.Queue = asyncio.Queue()
        self.carbons_received: asyncio.Queue = asyncio.Queue()
        self.started = asyncio.get_event_loop().create_future()
        self.ended = asyncio.get_event_loop().create_future()
        self.stream_errors: list[str] = []
        self.sasl_failures: list[str] = []
        self.add_event_handler("session_start", self._started)
        self.add_event_handler("failed_all_auth", self._failed)
        self.add_event_handler("failed_auth", self._sasl_failure)
        self.add_event_handler("message", self.messages.put_nowait)
        self.add_event_handler("presence", self.presences.put_nowait)
        self.add_event_handler("carbon_sent", self.carbons_sent.put_nowait)
        self.add_event_handler("carbon_received", self.carbons_received.put_nowait)
        self.add_event_handler("stream_error", self._stream_error)
        self.add_event_handler("disconnected", self._disconnected)

    def _started(self, _event: object) -> None:
        if not self.started.done():
            self.started.set_result(True)

    def _failed(self, _event: object) -> None:
        if not self.started.done():
            self.started.set_result(False)

    def _sasl_failure(self, failure: object) -> None:
        self.sasl_failures.append(failure["condition"])  # type: ignore[index]

    def _stream_error(self, error: object) -> None:
        self.stream_errors.append(error["condition"])  # type: ignore[index]

    def _disconnected(self, _event: object) -> None:
        if not self.started.done():
            self.started.set_result(False)
        if not self.ended.done():
            self.ended.set_result(True)

    async def next_message(self, timeout: float = TIMEOUT):
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def next_presence(self, predicate=lambda p: True, timeout: float = TIMEOUT):
        async with asyncio.timeout(timeout):
            while True:
                presence = await self.presences.get()
                if predicate(presence):
                    return presence


async def login(server, user: str, *, resource: str = "test", mech: str | None = "PLAIN",
                direct_tls: bool = False, presence: bool = True,
                plugins: tuple[str, ...] = DEFAULT_PLUGINS) -> TestClient:
    """Connect, authenticate and bind; fail the test if login does not succeed."""
    client = await try_login(server, user, server.users[user], resource=resource, mech=mech,
                             direct_tls=direct_tls, plugins=plugins)
    assert client is not None, f"login of {user} failed"
    if presence:
        client.send_presence()
    return client


async def try_login(server, user: str, password: str, *, resource: str = "test",
                    mech: str | None = "PLAIN", direct_tls: bool = False,
                    plugins: tuple[str, ...] = ("xep_0030",)) -> TestClient | None:
    """A logged-in client, or None when login fails."""
    client = await attempt_login(server, user, password, resource=resource, mech=mech,
                                 direct_tls=direct_tls, plugins=plugins)
    if not client.started.result():
        client.disconnect()
        return None
    return client


async def attempt_login(server, user: str, password: str, *, resource: str = "test",
                        mech: str | None = "PLAIN", direct_tls: bool = False,
                        plugins: tuple[str, ...] = ("xep_0030",)) -> TestClient:
    """Connect and try to log in; `client.started` tells whether the session started,
    `client.sasl_failures` what the server answered to each failed attempt."""
    client = TestClient(f"{user}@{server.domain}/{resource}", password, cert=server.cert,
                        mech=mech, plugins=plugins)
    if direct_tls:
        client.enable_direct_tls = True
        client.connect(host=server.address, port=server.ports["c2s_direct_tls"])
    else:
        # slixmpp tries direct TLS first unless told the port speaks STARTTLS.
        client.enable_direct_tls = False
        client.enable_starttls = True
        client.connect(host=server.address, port=server.c2s_port)
    await asyncio.wait_for(client.started, TIMEOUT)
    return client


def tls_version(client: TestClient) -> str | None:
    """The TLS version under the client's stream (e.g. "TLSv1.3"), None if it is plain TCP."""
    ssl_object = client.transport.get_extra_info("ssl_object")
    return ssl_object.version() if ssl_object is not None else None


def local_port(client: TestClient) -> int:
    return client.transport.get_extra_info("sockname")[1]


async def close(*clients: TestClient) -> None:
    for client in clients:
        client.disconnect()
    for client in clients:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.ended, TIMEOUT)


async def fetched_roster(client) -> dict:
    """The client's roster after a fetch, by JID. With roster versioning the
    server answers a client whose copy is current with an empty result, so
    what counts is the copy the client keeps (results and pushes applied)."""
    await client.get_roster()
    roster = client.client_roster
    return {jid: roster[jid] for jid in roster}


async def stored_roster(client) -> dict:
    """The roster as the server stores it, by JID: fetched whole (no `ver`), so
    whatever copy the client keeps plays no part."""
    iq = client.Iq()
    iq["type"] = "get"
    iq.enable("roster")
    result = await iq.send(timeout=TIMEOUT)
    return dict(result["roster"]["items"])


async def subscription_with(client, jid: str, expected: str, timeout: float = 10.0) -> str:
    """The subscription `client` keeps for `jid`, once it is `expected` or the time
    is up: the roster push that changes it travels apart from the presence a test
    awaits, so the client may apply it a moment later."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        roster = await fetched_roster(client)
        current = roster[jid]["subscription"] if jid in roster else None
        if current == expected or loop.time() > deadline:
            return current
        await asyncio.sleep(0.05)


SCENARIO_TIMEOUT = 60.0


def run(coro, timeout: float = SCENARIO_TIMEOUT):
    """Run an async test scenario to its end, bounded in time."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def can_login(server, user: str, password: str) -> bool:
    """Whether `user` can log in with `password` right now."""
    async def attempt() -> bool:
        client = await try_login(server, user, password)
        if client is None:
            return False
        await close(client)
        return True

    return run(attempt())
