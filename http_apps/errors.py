"""Plain HTTP error pages (RFC 9110 status codes): small HTML, never a traceback."""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any

from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/html; charset=utf-8"


def status_line(code: int) -> str:
    """"404 Not Found" for 404; "599 Error" for codes without a standard phrase."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return f"{code} Error"


def error_page(code: int, message: str | None = None) -> bytes:
    """The body of an error response: the status as title, an optional escaped message."""
    title = html.escape(status_line(code))
    text = f"<p>{html.escape(message)}</p>" if message else ""
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>'
        f"{title}</title></head>\n<body><h1>{title}</h1>{text}</body></html>\n"
    ).encode()


def wsgi_error(start_response, code: int, message: str | None = None,
               headers: Iterable[tuple[str, str]] = ()) -> list[bytes]:
    """Answer a WSGI request with an error page, for code running outside Flask."""
    body = error_page(code, message)
    start_response(status_line(code), [
        ("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body))), *headers,
    ])
    return [body]


def raw_error(code: int, message: str | None = None) -> bytes:
    """A whole HTTP/1.1 error response closing the connection, for the socket layer."""
    body = error_page(code, message)
    head = (f"HTTP/1.1 {status_line(code)}\r\nContent-Type: {CONTENT_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + body


def unexpected_error(method: str, path: str, host: str | None, error: Exception) -> HTTPException:
    """The 500 answering an exception that is our own bug: the client gets a plain
    page, the log gets the traceback and context."""
    log.error("Error handling %s %s on %s", method, path, host, exc_info=error)
    return InternalServerError(description="Check the server log for details.")


def with_error_pages(app: Any, host: str) -> Any:
    """WSGI middleware answering the exceptions `app` raises before its response starts
    as Flask's handlers (http_apps.flask_host.install_error_handlers) do: an HTTPException
    is its status page (with its headers, such as Allow), anything else a logged 500.
    For plain WSGI routes of `host`.
    """
    def error_pages_app(environ: dict, start_response: Any) -> Any:
        try:
            return app(environ, start_response)
        except Exception as error:  # every error is a page, as in Flask
            status, headers, body = error_answer(error, environ,
                                                 environ.get("REQUEST_METHOD", ""),
                                                 environ.get("PATH_INFO", ""), host)
        start_response(status, headers)
        return body

    return error_pages_app


def error_answer(error: Exception, environ: dict | None, method: str, path: str,
                 host: str) -> tuple[str, list[tuple[str, str]], list[bytes]]:
    """The error page (status, headers, body) answering `error` as Flask's handlers
    (http_apps.flask_host.install_error_handlers) would: an HTTPException's status
    with its headers (such as Allow), anything else a logged 500."""
    if not isinstance(error, HTTPException):
        error = unexpected_error(method, path, host, error)
    code = error.code or 500
    body = error_page(code, error.description)
    return status_line(code), [
        ("Content-Type", CONTENT_TYPE), ("Content-Length", str(len(body))),
        *((k, v) for k, v in error.get_headers(environ) if k.lower() != "content-type"),
    ], [body]
