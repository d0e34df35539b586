"""The BOSH HTTP endpoint (XEP-0124 section 4): POST bodies in, <body/> responses out.

Every answer to a POST is HTTP 200 with `text/xml; charset=utf-8`, errors
included (type='terminate' bodies); a body over the route's size limit is
refused by the HTTP layer (413). GET shows a short page saying what this is.
A held request parks its greenlet until the manager answers it.
"""

from __future__ import annotations

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
    def request() -> flask.Response:
        data = flask.request.get_data(cache=False)
        result = manager.handle(data, secure=flask.request.is_secure,
                                peer=flask.request.remote_addr or "")
        if isinstance(result, Parked):
            result = manager.wait(result)
        return flask.Response(result, 200, content_type=CONTENT_TYPE)

    return blueprint
