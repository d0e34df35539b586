"""The BOSH HTTP endpoint (XEP-0124 section 4): POST bodies in, <body/> responses out.

Every answer to a POST is HTTP 200 with `text/xml; charset=utf-8`, errors
included (type='terminate' bodies); a body over the route's size limit is
refused by the HTTP layer (413). GET shows a short page saying what this is.
A held request parks its greenlet until the manager answers it: not inside the
view, but when the WSGI server iterates the response body, after Flask and the
middlewares have returned, so the parked greenlet keeps only a shallow stack.
"""

from __future__ import annotations

from collections.abc import Iterator

import flask

from http_apps.bosh.manager import BoshManager, Parked

CONTENT_TYPE = "text/xml; charset=utf-8"

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>BOSH endpoint</title></head>
<body><p>This is a BOSH (XEP-0124, XEP-0206) endpoint of an XMPP server.
Point your BOSH client at this URL to connect.</p></body></html>
"""


def make_blueprint(manager: BoshManager) -> flask.Blueprint:
    """A fresh blueprint serving BOSH at its mount path (with and without a trailing slash)."""
    blueprint = flask.Blueprint("bosh", __name__)

    @blueprint.get("")
    @blueprint.get("/")
    def page() -> flask.Response:
        return flask.Response(PAGE, content_type="text/html; charset=utf-8")

    @blueprint.post("")
    @blueprint.post("/")
    def post() -> flask.Response:
        request = flask.request._get_current_object()  # one proxy lookup, not three
        result = manager.handle(request.get_data(cache=False), secure=request.is_secure,
                                peer=request.remote_addr or "")
        if isinstance(result, Parked):
            response = flask.Response(HeldBody(manager, result), 200, content_type=CONTENT_TYPE)
            response.direct_passthrough = True
            return response
        return flask.Response(result, 200, content_type=CONTENT_TYPE)

    return blueprint


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
