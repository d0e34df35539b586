"""Plain WSGI routes (http_apps.plain) answer exactly as the same route in Flask would."""

from __future__ import annotations

import io

import flask
import pytest
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from http_apps.limits import limit_body, read_body
from http_apps.provider import HttpProvider
from tests.http_fixtures import http_client

BASE = 'VirtualHost "example.com"\n'
LISTS = ("Allow", "Access-Control-Allow-Methods")


def echo(environ, start_response):
    body = b"%s %s %s %s" % (environ["REQUEST_METHOD"].encode(), read_body(environ),
                             environ["REMOTE_ADDR"].encode(), environ["wsgi.url_scheme"].encode())
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body))),
                              ("Access-Control-Allow-Origin", "https://own.example")])
    return [body]


def boom(_environ, _start_response):
    raise RuntimeError("secret internal detail")


HANDLERS = {"GET": echo, "POST": echo, "DELETE": boom}


def reference_blueprint() -> flask.Blueprint:
    """The same route in Flask: what the plain route must be indistinguishable from."""
    blueprint = flask.Blueprint("app", __name__)

    @blueprint.route("", methods=list(HANDLERS))
    @blueprint.route("/", methods=list(HANDLERS))
    def view() -> flask.Response:
        method = "GET" if flask.request.method == "HEAD" else flask.request.method
        return flask.Response.from_app(HANDLERS[method], flask.request.environ)

    return blueprint


def plain(**options) -> HttpProvider:
    return HttpProvider("app", "example.com", None, wsgi_handlers=HANDLERS, **options)


def flask_twin(**options) -> HttpProvider:
    return HttpProvider("app", "example.com", reference_blueprint, **options)


def normalized(reply) -> tuple:
    # Method lists may come from a set in Flask: their order means nothing.
    headers = sorted((k, ", ".join(sorted(v.split(", "))) if k in LISTS else v)
                     for k, v in reply.headers.items())
    return reply.status, headers, reply.data


CONFIGS = [
    BASE,
    "http_max_content_size = 20\n" + BASE,
    'access_control_allow_origins = { "https://web.example" }\n'
    "access_control_allow_credentials = true\n" + BASE,
    "http_cors_override = { app = { enabled = false } }\n" + BASE,
    'http_paths = { app = "/" }\n' + BASE,
]
REQUESTS = [
    (method, path, origin, body)
    for method in ("GET", "HEAD", "OPTIONS", "POST", "PUT", "DELETE")
    for path in ("/app", "/app/", "/app/more", "/app?q=1")
    for origin in ({}, {"Origin": "https://web.example"}, {"Origin": "https://evil.example"})
    for body in (b"", b"x" * 12, b"x" * 30)
]


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("global_", [False, True])
def test_every_answer_is_the_flask_routes(tmp_path, config, global_):
    options = {"max_body_size": 16, "methods": ("PATCH",), "global_": global_}
    fast = http_client(tmp_path, config, [plain(**options)])
    reference = http_client(tmp_path, config, [flask_twin(**options)])
    for method, path, headers, body in REQUESTS:
        for extra in ({}, {"X-Forwarded-For": "192.0.2.7", "X-Forwarded-Proto": "https"}):
            request = {"method": method, "headers": {**headers, **extra}, "data": body}
            assert normalized(fast.open(path, **request)) == normalized(
                reference.open(path, **request)), (method, path, headers, extra, len(body))


def test_errors_are_logged_with_their_context(tmp_path, caplog):
    reply = http_client(tmp_path, BASE, [plain()]).delete("/app")
    assert reply.status_code == 500
    assert b"secret internal detail" not in reply.data
    assert "Error handling DELETE /app on example.com" in caplog.text
    assert "secret internal detail" in caplog.text


def test_plain_routes_of_a_global_app_answer_before_host_selection(tmp_path):
    c = http_client(tmp_path, BASE, [plain(global_=True)])
    assert c.get("/app", headers={"Host": "unknown.example"}).data.startswith(b"GET ")
    assert c.get("/other", headers={"Host": "unknown.example"}).status_code == 404


# -- the body limits themselves ------------------------------------------------------

def environ(body: bytes, **fields) -> dict:
    return {"wsgi.input": io.BytesIO(body), **fields}


def test_declared_length_over_the_limit_is_refused_unread():
    request = environ(b"x" * 11, CONTENT_LENGTH="11")
    with pytest.raises(RequestEntityTooLarge):
        limit_body(request, 10)
    assert request["wsgi.input"].tell() == 0


def test_unframed_body_is_cut_off_past_the_limit():
    request = environ(b"x" * 11, HTTP_TRANSFER_ENCODING="chunked")
    request["wsgi.input_terminated"] = True
    assert limit_body(request, 10) is True
    with pytest.raises(RequestEntityTooLarge):
        read_body(request)
    request = environ(b"x" * 10, HTTP_TRANSFER_ENCODING="chunked")
    request["wsgi.input_terminated"] = True
    limit_body(request, 10)
    assert read_body(request) == b"x" * 10


def test_read_body_as_werkzeug_reads_it():
    assert read_body(environ(b"abcdef", CONTENT_LENGTH="3")) == b"abc"
    assert read_body(environ(b"abc")) == b""  # no length, input not terminated
    with pytest.raises(ClientDisconnected):
        read_body(environ(b"ab", CONTENT_LENGTH="3"))


def test_an_app_has_a_blueprint_or_plain_routes_not_both() -> None:
    # The plain routes' CORS headers are settled before the blueprint exists.
    with pytest.raises(ValueError, match="both a blueprint and wsgi_handlers"):
        HttpProvider("app", "example.com", reference_blueprint, wsgi_handlers=HANDLERS)
