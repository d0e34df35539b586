"""Host dispatch, mount paths, redirects and error pages of the HTTP layer (Flask test client)."""

from __future__ import annotations

import flask
import pytest

from http_apps.provider import HttpProvider
from tests.http_fixtures import http_client as client
from tests.http_fixtures import probe
from xmpp.metrics import HTTP_RESPONSES

BASE = """
VirtualHost "example.com"
VirtualHost "jabber.example"
"""


@pytest.fixture
def two_hosts(tmp_path):
    return client(tmp_path, BASE, [probe(host="example.com"), probe(host="jabber.example")])


def test_host_header_with_port_picks_the_host(two_hosts):
    for host in ("example.com", "jabber.example"):
        reply = two_hosts.get("/probe", headers={"Host": f"{host}:5280"})
        assert reply.status_code == 200
        assert reply.get_json()["host"] == host


def test_host_header_is_case_insensitive(two_hosts):
    assert two_hosts.get("/probe", headers={"Host": "Example.COM"}).get_json()["host"] == (
        "example.com")


def test_unknown_host_is_404(two_hosts):
    reply = two_hosts.get("/probe", headers={"Host": "other.example"})
    assert reply.status_code == 404
    assert b"Unknown host: other.example" in reply.data


def test_unknown_host_is_escaped_in_the_page(two_hosts):
    reply = two_hosts.get("/probe", headers={"Host": "<b>x"})
    assert reply.status_code == 404
    assert b"<b>" not in reply.data


def test_missing_host_is_400(two_hosts):
    reply = two_hosts.get("/probe", headers={"Host": ""})
    assert reply.status_code == 400


def test_default_host_serves_unknown_and_missing_hosts(tmp_path):
    c = client(tmp_path, 'http_default_host = "jabber.example"\n' + BASE,
               [probe(host="example.com"), probe(host="jabber.example")])
    assert c.get("/probe", headers={"Host": "other.example"}).get_json()["host"] == (
        "jabber.example")
    assert c.get("/probe", headers={"Host": ""}).get_json()["host"] == "jabber.example"
    assert c.get("/probe", headers={"Host": "example.com"}).get_json()["host"] == "example.com"


def test_default_host_naming_no_served_host_is_ignored(tmp_path):
    c = client(tmp_path, 'http_default_host = "nowhere.example"\n' + BASE,
               [probe(host="example.com")])
    assert c.get("/probe", headers={"Host": "other.example"}).status_code == 404


def test_http_host_maps_a_public_name_onto_a_virtual_host(tmp_path):
    text = 'VirtualHost "example.com"\n  http_host = "www.example.net"\n'
    c = client(tmp_path, text, [probe(host="example.com")])
    reply = c.get("/probe", headers={"Host": "www.example.net"})
    assert reply.get_json()["host"] == "example.com"
    # As in Prosody, the host's own name is no longer an HTTP host of its own.
    assert c.get("/probe", headers={"Host": "example.com"}).status_code == 404


def test_default_host_may_name_a_host_with_http_host(tmp_path):
    text = ('http_default_host = "example.com"\n'
            'VirtualHost "example.com"\n  http_host = "www.example.net"\n')
    c = client(tmp_path, text, [probe(host="example.com")])
    assert c.get("/probe", headers={"Host": "other.example"}).get_json()["host"] == (
        "example.com")


def test_shared_http_host_with_host_paths(tmp_path):
    text = ('http_host = "www.example.net"\nhttp_paths = { probe = "/probe-on-$host" }\n'
            + BASE)
    c = client(tmp_path, text, [probe(host="example.com"), probe(host="jabber.example")])
    for host in ("example.com", "jabber.example"):
        reply = c.get(f"/probe-on-{host}", headers={"Host": "www.example.net"})
        assert reply.get_json()["host"] == host


def test_default_path_is_slash_name_and_root_is_404(two_hosts):
    assert two_hosts.get("/probe").status_code == 200
    reply = two_hosts.get("/")
    assert reply.status_code == 404


def test_provider_default_path_with_host_variable(tmp_path):
    c = client(tmp_path, BASE, [probe(host="example.com", default_path="/p/$host/")])
    assert c.get("/p/example.com").get_json()["path"] == "/p/example.com"


def test_global_http_paths_and_per_host_override(tmp_path):
    text = ('http_paths = { probe = "/global" }\n'
            'VirtualHost "example.com"\n'
            'VirtualHost "jabber.example"\n  http_paths = { probe = "/mine/" }\n')
    c = client(tmp_path, text, [probe(host="example.com"), probe(host="jabber.example")])
    assert c.get("/global").get_json()["host"] == "example.com"
    assert c.get("/probe").status_code == 404
    reply = c.get("/mine", headers={"Host": "jabber.example"})
    assert reply.get_json()["host"] == "jabber.example"
    assert c.get("/global", headers={"Host": "jabber.example"}).status_code == 404


def test_host_http_paths_without_the_app_falls_back_to_global(tmp_path):
    text = ('http_paths = { probe = "/global" }\n'
            'VirtualHost "example.com"\n  http_paths = { other = "/x" }\n')
    c = client(tmp_path, text, [probe(host="example.com")])
    assert c.get("/global").status_code == 200


def test_root_path_mount(tmp_path):
    c = client(tmp_path, 'http_paths = { probe = "/" }\n' + BASE, [probe(host="example.com")])
    assert c.get("/").get_json()["rest"] == ""
    assert c.get("/a/b").get_json()["rest"] == "a/b"


def test_base_redirects_to_slash_keeping_the_query(tmp_path):
    text = 'http_paths = { probe = "/files" }\n' + BASE

    def make():
        bp = flask.Blueprint("files", __name__)

        @bp.get("/")
        @bp.get("/<path:name>")
        def serve(name=""):
            return name or "index"

        return bp

    c = client(tmp_path, text, [HttpProvider("probe", "example.com", make)])
    reply = c.get("/files?a=1&b=2")
    assert reply.status_code == 301
    assert reply.headers["Location"] == "/files/?a=1&b=2"
    assert c.get("/files").headers["Location"] == "/files/"
    assert c.get("/files/x/y").data == b"x/y"


def test_head_falls_back_to_get(two_hosts):
    reply = two_hosts.head("/probe")
    assert reply.status_code == 200
    assert reply.data == b""


def test_unhandled_error_is_a_plain_500_without_traceback(two_hosts, caplog):
    reply = two_hosts.get("/probe/boom")
    assert reply.status_code == 500
    assert reply.headers["Content-Type"].startswith("text/html")
    assert b"Traceback" not in reply.data
    assert b"secret internal detail" not in reply.data
    assert "secret internal detail" in caplog.text


def test_not_found_page_is_small_html(two_hosts):
    reply = two_hosts.get("/nothing-here")
    assert reply.status_code == 404
    assert reply.headers["Content-Type"] == "text/html; charset=utf-8"
    assert b"<title>404 Not Found</title>" in reply.data
    assert len(reply.data) < 1024


def test_method_not_allowed_keeps_allow(two_hosts):
    reply = two_hosts.delete("/probe/upload")
    assert reply.status_code == 405
    assert "POST" in reply.headers["Allow"]


def test_body_limit_global_and_per_route(tmp_path):
    c = client(tmp_path, "http_max_content_size = 100\n" + BASE,
               [probe(host="example.com"), probe("small", "example.com", max_body_size=10)])
    assert c.post("/probe/upload", data=b"x" * 100).get_json() == {"size": 100}
    assert c.post("/probe/upload", data=b"x" * 101).status_code == 413
    assert c.post("/small/upload", data=b"x" * 10).get_json() == {"size": 10}
    reply = c.post("/small/upload", data=b"x" * 11)
    assert reply.status_code == 413
    assert b"413 Request Entity Too Large" in reply.data


def test_component_http_host_without_providers_is_known(tmp_path):
    c = client(tmp_path, BASE + 'Component "web.example" "http"\n', [probe(host="example.com")])
    assert c.get("/probe", headers={"Host": "web.example"}).status_code == 404
    assert b"Unknown host" not in c.get("/x", headers={"Host": "web.example"}).data


def test_global_provider_answers_on_every_host(tmp_path):
    c = client(tmp_path, BASE, [probe(host="example.com"), probe("everywhere", "*", global_=True)])
    for host in ("example.com", "unknown.example", ""):
        reply = c.get("/everywhere", headers={"Host": host})
        assert reply.status_code == 200
        assert reply.get_json()["host"] == "*"
    assert c.get("/probe", headers={"Host": "example.com"}).status_code == 200


def test_requests_are_counted_by_status(two_hosts):
    before = dict(HTTP_RESPONSES)
    two_hosts.get("/nothing")
    two_hosts.get("/probe", headers={"Host": "other.example"})
    two_hosts.get("/probe")
    added = {status: HTTP_RESPONSES[status] - before.get(status, 0) for status in HTTP_RESPONSES}
    assert {status: n for status, n in added.items() if n} == {"404": 2, "200": 1}


def test_host_names_read_from_host_fields_are_kept_within_bounds(two_hosts, monkeypatch):
    import http_apps

    monkeypatch.setattr(http_apps, "_HOST_NAMES_KEPT", 3)
    monkeypatch.setattr(http_apps, "_HOST_NAMES", {})
    for port in range(5):
        reply = two_hosts.get("/probe", headers={"Host": f"Example.COM:{5280 + port}"})
        assert reply.get_json()["host"] == "example.com"
        assert len(http_apps._HOST_NAMES) <= 3
    # A field seen before gives its name from the cache.
    http_apps._HOST_NAMES["cached.example:1"] = "jabber.example"
    assert two_hosts.get("/probe", headers={"Host": "cached.example:1"}).get_json()["host"] == (
        "jabber.example")
