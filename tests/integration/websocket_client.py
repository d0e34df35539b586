"""An RFC 7395 client for integration tests, on aiohttp's WebSocket client (a real one).

It speaks the XMPP framing by hand (open, SASL PLAIN or SCRAM, restart, bind),
so tests see every message the server sends, byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import ssl
from xml.etree import ElementTree

import aiohttp

from xmpp import namespaces as ns

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
TIMEOUT = 10.0


def local(element: ElementTree.Element) -> str:
    return element.tag.rpartition("}")[2]


class WsClient:
    """One WebSocket connection to the server's endpoint, speaking `xmpp`."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse,
                 domain: str) -> None:
        self.session = session
        self.ws = ws
        self.domain = domain
        #: The text of every message received, in order.
        self.raw: list[str] = []

    @classmethod
    async def connect(cls, server, *, https: bool = False, path: str = "/xmpp-websocket",
                      protocols: tuple[str, ...] = ("xmpp",), **kwargs) -> WsClient:
        scheme, port = ("wss", server.ports["https"]) if https else ("ws", server.ports["http"])
        context = ssl.create_default_context(cafile=str(server.cert)) if https else True
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(f"{scheme}://localhost:{port}{path}",
                                          protocols=protocols, ssl=context, autoping=False,
                                          timeout=aiohttp.ClientWSTimeout(ws_close=TIMEOUT),
                                          **kwargs)
        except BaseException:
            await session.close()
            raise
        return cls(session, ws, server.domain)

    async def send(self, text: str) -> None:
        await self.ws.send_str(text)

    async def receive(self) -> aiohttp.WSMessage:
        return await self.ws.receive(TIMEOUT)

    async def recv(self) -> ElementTree.Element:
        """The next text message, parsed (it must be a document of its own); keepalive
        pings met on the way (a slow machine may hit the server's read timeout) are skipped."""
        message = await self.receive()
        for _ in range(10):
            if message.type != aiohttp.WSMsgType.PING:
                break
            message = await self.receive()
        assert message.type == aiohttp.WSMsgType.TEXT, message
        self.raw.append(message.data)
        return ElementTree.fromstring(message.data)

    async def until(self, predicate) -> ElementTree.Element:
        for _ in range(50):
            element = await self.recv()
            if predicate(element):
                return element
        raise AssertionError("expected element did not arrive")

    async def open(self) -> ElementTree.Element:
        """Send <open/>; the server's <open/> and its features."""
        await self.send(f"<open xmlns='{FRAMING}' to='{self.domain}' version='1.0'/>")
        opened = await self.recv()
        assert opened.tag == f"{{{FRAMING}}}open", opened
        features = await self.recv()
        assert features.tag == f"{{{ns.STREAMS}}}features", features
        return features

    async def login(self, user: str, password: str, *, mech: str = "PLAIN",
                    resource: str = "ws") -> str:
        """Open, authenticate, restart and bind; the bound JID."""
        await self.authenticate(user, password, mech=mech)
        await self.send(f"<iq xmlns='jabber:client' type='set' id='bind'><bind xmlns='{ns.BIND}'>"
                        f"<resource>{resource}</resource></bind></iq>")
        bound = await self.recv()
        assert bound.get("type") == "result", ElementTree.tostring(bound)
        return bound.findtext(f".//{{{ns.BIND}}}jid") or ""

    async def authenticate(self, user: str, password: str, *,
                           mech: str = "PLAIN") -> ElementTree.Element:
        """Open, authenticate and restart; the features of the restarted stream."""
        features = await self.open()
        offered = [m.text for m in features.iter(f"{{{ns.SASL}}}mechanism")]
        assert mech in offered, offered
        if mech == "PLAIN":
            await self._auth(mech, f"\0{user}\0{password}".encode())
            success = await self.recv()
        else:
            success = await self._scram(mech, user, password)
        assert local(success) == "success", ElementTree.tostring(success)
        features = await self.open()
        assert features.find(f"{{{ns.BIND}}}bind") is not None
        return features

    async def _auth(self, mech: str, payload: bytes) -> None:
        await self.send(f"<auth xmlns='{ns.SASL}' mechanism='{mech}'>"
                        f"{base64.b64encode(payload).decode()}</auth>")

    async def _scram(self, mech: str, user: str, password: str) -> ElementTree.Element:
        """RFC 5802 from the client's side."""
        hash_name = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256"}[mech]
        nonce = secrets.token_hex(12)
        first_bare = f"n={user},r={nonce}"
        await self._auth(mech, f"n,,{first_bare}".encode())
        challenge = await self.recv()
        server_first = base64.b64decode(challenge.text or "").decode()
        fields = dict(item.split("=", 1) for item in server_first.split(","))
        salted = hashlib.pbkdf2_hmac(hash_name, password.encode(),
                                     base64.b64decode(fields["s"]), int(fields["i"]))
        client_key = hmac.digest(salted, b"Client Key", hash_name)
        final_bare = f"c=biws,r={fields['r']}"
        auth_message = f"{first_bare},{server_first},{final_bare}".encode()
        signature = hmac.digest(hashlib.new(hash_name, client_key).digest(), auth_message,
                                hash_name)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        final = f"{final_bare},p={base64.b64encode(proof).decode()}"
        await self.send(f"<response xmlns='{ns.SASL}'>"
                        f"{base64.b64encode(final.encode()).decode()}</response>")
        return await self.recv()

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()
