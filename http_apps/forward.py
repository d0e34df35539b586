"""Passing an HTTP request on to the cluster node that holds what it is for
(xmpp.ownership): the same method, path, Host and body, marked forwarded so
that node answers it whatever it finds."""

from __future__ import annotations

import http.client
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit

from xmpp.ownership import FORWARDED_HEADER

if TYPE_CHECKING:
    from http_apps.plain import PlainRequest

#: The WSGI environ key of the header.
FORWARDED_ENVIRON = "HTTP_" + FORWARDED_HEADER.upper().replace("-", "_")


def was_forwarded(environ: dict) -> bool:
    return FORWARDED_ENVIRON in environ


def pass_on(url: str, request: PlainRequest, body: bytes,
            timeout: float) -> tuple[int, str, bytes]:
    """(status, content type, body) of the answer node `url` gives; OSError or
    http.client.HTTPException when it cannot be had (the node is gone)."""
    target = urlsplit(url)
    path = quote(request.script_name + request.path)
    if request.query:
        path += "?" + request.query
    headers = {FORWARDED_HEADER: "1",
               "Host": request.host if request.host is not None else target.netloc}
    if request.content_type:
        headers["Content-Type"] = request.content_type
    connection = http.client.HTTPConnection(target.hostname or "", target.port,
                                            timeout=timeout)
    try:
        connection.request(request.method or "POST", path, body, headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()
