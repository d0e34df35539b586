"""Public URLs: http_external_url, http_host, first https service else http, default ports."""

from __future__ import annotations

import pytest

from http_apps import urls
from tests.http_fixtures import http_client, probe, write_config


@pytest.fixture(autouse=True)
def nothing_listening(monkeypatch):
    monkeypatch.setattr(urls, "_listening", {"http": [], "https": []})


def url(tmp_path, text, host="example.com", name="bosh", default=None):
    config = write_config(tmp_path, text + 'VirtualHost "example.com"\n')
    return urls.http_url(config, host, name, default)


def test_default_is_the_https_port(tmp_path):
    assert url(tmp_path, "") == "https://example.com:5281/bosh"


def test_without_https_the_http_port(tmp_path):
    assert url(tmp_path, "https_ports = {}\n") == "http://example.com:5280/bosh"


def test_no_ports_at_all(tmp_path):
    assert url(tmp_path, "https_ports = {}\nhttp_ports = {}\n") == urls.DISABLED_URL


def test_default_port_is_left_out(tmp_path):
    assert url(tmp_path, "https_ports = { 443 }\n") == "https://example.com/bosh"


def test_http_host_and_paths(tmp_path):
    text = 'http_host = "www.example.net"\nhttp_paths = { bosh = "/http-bind/" }\n'
    assert url(tmp_path, text) == "https://www.example.net:5281/http-bind"


def test_external_url(tmp_path):
    text = 'http_external_url = "https://chat.example.org/xmpp"\n'
    assert url(tmp_path, text, default="/http-bind") == "https://chat.example.org/xmpp/http-bind"
    text = 'http_external_url = "http://chat.example.org:8080/"\n'
    assert url(tmp_path, text) == "http://chat.example.org:8080/bosh"


def test_external_url_of_a_host(tmp_path):
    # Prosody reads it per host: a Component often has its own (a file-share domain).
    config = write_config(tmp_path, 'http_external_url = "https://global.example/"\n'
                          'VirtualHost "example.com"\n'
                          'Component "upload.example.com" "http_file_share"\n'
                          '    http_external_url = "https://files.example.org/up/"\n')
    assert urls.http_url(config, "upload.example.com", "file_share", "/file_share") == (
        "https://files.example.org/up/file_share")
    assert urls.http_url(config, "example.com", "bosh") == "https://global.example/bosh"


def test_listening_services_win_over_config(tmp_path):
    urls.mark_listening("http", 8080)
    assert url(tmp_path, "") == "http://example.com:8080/bosh"
    urls.mark_listening("https", 443)
    assert url(tmp_path, "") == "https://example.com/bosh"
    urls.mark_listening("https", 443, listening=False)
    assert url(tmp_path, "") == "http://example.com:8080/bosh"


def test_global_apps_use_http_default_host(tmp_path):
    text = 'http_default_host = "example.com"\n'
    assert url(tmp_path, text, host="*", name="openmetrics", default="/metrics") == (
        "https://example.com:5281/metrics")


def test_route_code_builds_its_url(tmp_path):
    c = http_client(tmp_path, 'VirtualHost "example.com"\n', [probe()])
    assert c.get("/probe/a/").get_json()["url"] == "https://example.com:5281/probe/a/"


def test_normalize_path():
    assert urls.normalize_path("") == "/"
    assert urls.normalize_path("/") == "/"
    assert urls.normalize_path("a/b/") == "/a/b"
    assert urls.normalize_path("/a", is_dir=True) == "/a/"
