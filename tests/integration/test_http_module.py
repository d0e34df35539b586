"""mod_http named on its own: the HTTP ports open with no HTTP app, as in Prosody."""

from __future__ import annotations

from tests.http_fixtures import connect, http_request
from tests.integration.server_fixture import make_server


def get(server, host):
    with connect(server.ports["http"]) as sock:
        response = http_request(sock, "GET", "/", host)
        return response.status, response.read()


def test_http_alone_serves_404s(tmp_path):
    server = make_server(tmp_path, http=True, modules=("http",),
                         host_extra='Component "web.localhost" "http"\n')
    server.start()  # waits for the http port too
    try:
        status, body = get(server, "localhost")
        assert status == 404
        assert b"Unknown host" not in body
        assert get(server, "web.localhost")[0] == 404
        status, body = get(server, "other.example")
        assert status == 404
        assert b"Unknown host" in body
    finally:
        assert server.stop() == 0
