"""Passing an HTTP request on to the cluster node that holds what it is for
(xmpp.ownership): the same method, path, Host and body, marked forwarded so
that node answers it whatever it finds."""

from __future__ import annotations

import http.client
from urllib.parse import quote, urlsplit

from xmpp.ownership import FORWARDED_HEADER

#: The WSGI environ key of the header.
FORWARDED_ENVIRON = "HTTP_" + FORWARDED_HEADER.upper().replace("-", "_")


def was_forwarded(environ: dict) -> bool:
    return FORWARDED_ENVIRON in environ


def pass_on(url: str, environ: dict, body: bytes, timeout: float) -> tuple[int, str, bytes]:
    """(status, content type, body) of the answer node `url` gives; OSError or
    http.client.HTTPException when it cannot be had (the node is gone)."""
    target = urlsplit(url)
    path = quote(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""))
    if environ.get("QUERY_STRING"):
        path += "?" + environ["QUERY_STRING"]
    headers = {FORWARDED_HEADER: "1", "Host": environ.get("HTTP_HOST", target.netloc)}
    if environ.get("CONTENT_TYPE"):
        headers["Content-Type"] = environ["CONTENT_TYPE"]
    connection = http.client.HTTPConnection(target.hostname or "", target.port,
                                            timeout=timeout)
    try:
        connection.request(environ.get("REQUEST_METHOD", "POST"), path, body, headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()
