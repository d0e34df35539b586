"""The BOSH HTTP endpoint (XEP-0124 section 4): POST bodies in, <body/> responses out.

Every answer to a POST is HTTP 200 with `text/xml; charset=utf-8`, errors
included (type='terminate' bodies); a body over the route's size limit is
refused by the HTTP layer (413). GET shows a short page saying what this is.
The handlers are plain WSGI (http_apps.plain): a BOSH request is small and
frequent, and Flask's request machinery cost more than the rest of it. The POST
handler takes the whole body (a BodyHandler), so the HTTP server serves it
straight from the request head, without building a WSGI environ.
A held request parks its greenlet until the manager answers it: not inside the
handler, but when the WSGI server iterates the response body, after the
middlewares have returned, so the parked greenlet keeps only a shallow stack.
A request for a session another cluster node holds is passed on to that node
(http_apps.forward, over connections kept to it) and its answer given back.
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from http_apps.bosh.body import BoshError, bosh_error_body
from http_apps.bosh.manager import BoshManager, Elsewhere, Parked
from http_apps.forward import ForwardPool
from http_apps.plain import Answer, BodyHandler, PlainRequest, WsgiApp

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/xml; charset=utf-8"
PASS_ON_MARGIN = 30  # seconds a passed-on request may take beyond the longest wait

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>BOSH endpoint</title></head>
<body><p>This is a BOSH (XEP-0124, XEP-0206) endpoint of an XMPP server.
Point your BOSH client at this URL to connect.</p></body></html>
"""


def wsgi_handlers(manager: BoshManager) -> dict[str, WsgiApp]:
    """Plain WSGI handlers (http_apps.plain) serving BOSH at the mount path: GET and POST."""
    page = PAGE.encode()
    page_headers = [("Content-Type", "text/html; charset=utf-8"),
                    ("Content-Length", str(len(page)))]
    forwarding = ForwardPool()

    def get(_environ: dict, start_response: Any) -> Iterable[bytes]:
        start_response("200 OK", list(page_headers))
        return [page]

    def post(request: PlainRequest, data: bytes) -> Answer:
        result = manager.handle(data, secure=request.secure, peer=request.remote_addr,
                                forwarded=request.forwarded)
        if isinstance(result, Elsewhere):
            result = held_elsewhere(result, request, data)
        if isinstance(result, Parked):
            return "200 OK", [("Content-Type", CONTENT_TYPE)], HeldBody(manager, result)
        return "200 OK", [("Content-Type", CONTENT_TYPE),
                          ("Content-Length", str(len(result)))], [result]

    def held_elsewhere(elsewhere: Elsewhere, request: PlainRequest, data: bytes) -> bytes:
        """The answer of the node holding the session; if that node cannot be
        reached, the session is over for the client."""
        try:
            status, _type, answer = forwarding.pass_on(elsewhere.url, request, data,
                                                        manager.options.max_wait + PASS_ON_MARGIN)
        except (OSError, http.client.HTTPException) as error:
            log.warning("BOSH request not passed on to %s: %s", elsewhere.url, error)
            return bosh_error_body(BoshError("remote-connection-failed", "node gone"))
        if status != 200:
            log.warning("BOSH request passed on to %s answered %d", elsewhere.url, status)
            return bosh_error_body(BoshError("remote-connection-failed", f"HTTP {status}"))
        return answer

    return {"GET": get, "POST": BodyHandler(post)}


class HeldBody:
    """The body of a held request: iterating it waits for the answer.

    One chunk, and a length (1) so the WSGI server knows it may sum the chunk
    sizes into a Content-Length instead of using chunked encoding.
    """

    __slots__ = ("body", "manager", "parked")

    def __init__(self, manager: BoshManager, parked: Parked) -> None:
        self.manager = manager
        self.parked = parked
        self.body: bytes | None = None

    def __len__(self) -> int:
        return 1

    def __iter__(self) -> Iterator[bytes]:
        if self.body is None:
            self.body = self.manager.wait(self.parked)
        yield self.body
