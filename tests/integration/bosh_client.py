"""A minimal BOSH (XEP-0124/XEP-0206) client over real HTTP, for integration tests.

Blocking on purpose (http.client, one connection per request, as a browser may
use); async tests run its calls in threads with `asyncio.to_thread`.
"""

from __future__ import annotations

import base64
import http.client
import ssl
from dataclasses import dataclass, field
from xml.etree import ElementTree

HTTPBIND = "http://jabber.org/protocol/httpbind"
XBOSH = "urn:xmpp:xbosh"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
STREAMS = "http://etherx.jabber.org/streams"
BODY = f"{{{HTTPBIND}}}body"
TIMEOUT = 30.0


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    data: bytes

    @property
    def body(self) -> ElementTree.Element:
        """The <body/>, checked to be one."""
        element = ElementTree.fromstring(self.data)
        assert element.tag == BODY, self.data
        return element


def request(port: int, method: str = "POST", path: str = "/http-bind", data: bytes = b"",
            headers: dict[str, str] | None = None, *, https: bool = False,
            source: str = "127.0.0.1", host: str = "localhost") -> Response:
    """One HTTP request to the server on 127.0.0.1:`port`, from address `source`."""
    if https:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=TIMEOUT, context=context, source_address=(source, 0))
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT,
                                                source_address=(source, 0))
    try:
        all_headers = {"Host": host, **(headers or {})}
        if method == "POST":
            all_headers.setdefault("Content-Type", "text/xml; charset=utf-8")
        connection.request(method, path, body=data if method == "POST" else None,
                           headers=all_headers)
        response = connection.getresponse()
        return Response(response.status, {k.lower(): v for k, v in response.getheaders()},
                        response.read())
    finally:
        connection.close()


def local(element: ElementTree.Element) -> str:
    return element.tag.rpartition("}")[2]


@dataclass
class BoshClient:
    """One BOSH session: rids, sid, and the usual XMPP steps."""

    port: int
    domain: str
    https: bool = False
    path: str = "/http-bind"
    headers: dict[str, str] = field(default_factory=dict)
    source: str = "127.0.0.1"
    rid: int = 4000
    sid: str | None = None
    created: ElementTree.Element | None = None
    #: Every element received so far, for `collect`.
    received: list[ElementTree.Element] = field(default_factory=list)

    def post(self, payload: str = "", rid: int | None = None, **attrs: str) -> Response:
        """Post a body with the next rid (or `rid`), the sid once known, and `attrs`."""
        if rid is None:
            self.rid += 1
            rid = self.rid
        fields = {"rid": str(rid), **({"sid": self.sid} if self.sid else {}), **attrs}
        text = "".join(f" {key}='{value}'" for key, value in fields.items())
        data = f"<body xmlns='{HTTPBIND}' xmlns:xmpp='{XBOSH}'{text}>{payload}</body>"
        response = request(self.port, data=data.encode(), headers=self.headers,
                           https=self.https, source=self.source, path=self.path)
        assert response.status == 200, response
        assert response.headers["content-type"] == "text/xml; charset=utf-8"
        self.received.extend(response.body)
        return response

    def send(self, payload: str = "", **attrs: str) -> ElementTree.Element:
        return self.post(payload, **attrs).body

    def create(self, wait: int = 60, **attrs: str) -> ElementTree.Element:
        body = self.send(to=self.domain, wait=str(wait), hold="1", ver="1.6",
                         **{"xmpp:version": "1.0", **attrs})
        self.sid = body.get("sid")
        self.created = body
        return body

    def mechanisms(self) -> list[str]:
        assert self.created is not None
        features = self.created.find(f"{{{STREAMS}}}features")
        return [m.text or "" for m in features.iter(f"{{{SASL}}}mechanism")]

    def login(self, user: str, password: str, resource: str, wait: int = 60) -> None:
        """Create, authenticate with PLAIN, restart, bind."""
        self.create(wait=wait)
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        success = self.send(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{token}</auth>")
        assert [local(child) for child in success] == ["success"], ElementTree.tostring(success)
        features = self.send(**{"xmpp:restart": "true"})
        assert [local(child) for child in features[0]][:1] == ["bind"]
        bound = self.send(f"<iq xmlns='jabber:client' type='set' id='bind'>"
                          f"<bind xmlns='{BIND}'><resource>{resource}</resource></bind></iq>")
        assert bound[0].get("type") == "result", ElementTree.tostring(bound)

    def collect(self, predicate, attempts: int = 10) -> ElementTree.Element:
        """The first element received matching `predicate`, polling (held requests) for it."""
        for _ in range(attempts):
            for child in self.received:
                if predicate(child):
                    self.received.remove(child)
                    return child
            self.post()
        raise AssertionError("expected stanza did not arrive")
