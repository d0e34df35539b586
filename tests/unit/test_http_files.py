"""http_files without sockets: path sanitizing, MIME types, validators and conditional
GET, the small-file cache, and routes under a mount path (HttpProvider.subpaths)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from werkzeug.wsgi import FileWrapper

from http_apps.files import service
from http_apps.files.mime import MimeMap, extension, parse_database
from http_apps.files.paths import Validators, sanitize_path, wsgi_path
from http_apps.files.service import FilesOptions, provider
from http_apps.provider import HttpProvider
from tests.http_fixtures import http_client, probe, write_config

HOST = "example.com"
MIME_TYPES = """# comment text/x-comment txt
application/x-first   one two
application/x-second  two
text/x-override       txt html
"""


# -- paths ------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "clean"), [
    ("/a/b.txt", "/a/b.txt"),
    ("/a//b/./c", "/a/b/c"),
    ("/a/b/", "/a/b/"),
    ("/a/../b", "/b"),
    ("/", "/"),
    ("", "/"),
    ("//", "/"),
    ("/%2e%2e", "/%2e%2e"),  # decoded once, by the HTTP layer: a name, not ".."
])
def test_sanitized_paths(path, clean):
    assert sanitize_path(path) == clean


@pytest.mark.parametrize("path", ["/..", "/../a", "/a/../..", "/a/../../b/c", "/a\0b"])
def test_paths_leaving_the_root_or_with_nul_are_refused(path):
    assert sanitize_path(path) is None


def test_wsgi_paths_are_utf8_with_other_bytes_kept():
    assert wsgi_path("/caf\xc3\xa9") == "/café"
    assert os.fsencode(wsgi_path("/\xff")) == b"/\xff"
    assert wsgi_path("/\u0100") is None


# -- MIME types -------------------------------------------------------------------------

def test_the_database_maps_extensions_first_line_first_and_the_built_in_table_wins():
    mime = MimeMap(parse_database(MIME_TYPES))
    assert mime.type_for("/x.one") == "application/x-first"
    assert mime.type_for("/x.TWO") == "application/x-first"
    assert mime.type_for("/x.txt") == "text/plain"
    assert mime.type_for("/x.HTML") == "text/html"
    assert mime.type_for("/x.unknown") == "application/octet-stream"
    assert "comment" not in parse_database(MIME_TYPES).values()


def test_without_a_database_unknown_extensions_have_no_type():
    mime = MimeMap(None)
    assert mime.type_for("/a.css") == "text/css"
    assert mime.type_for("/a.unknown") is None


@pytest.mark.parametrize(("name", "ext"), [("/a.tar.gz", "gz"), ("/a", None), ("/a.", None),
                                           ("/d.x/a", None), ("/.profile", "profile")])
def test_the_extension_is_the_last_segment_s(name, ext):
    assert extension(name) == ext


# -- validators -------------------------------------------------------------------------

MODIFIED = 1_700_000_000  # Tue, 14 Nov 2023 22:13:20 GMT
VALIDATORS = Validators(MODIFIED, '"a-6-b"')


def test_the_etag_is_prosodys_change_time_size_and_modification_time_in_hex():
    stat = os.stat_result((0o100644, 0, 0, 1, 0, 0, 6, 0, MODIFIED, MODIFIED + 1))
    assert Validators.of(stat).etag == f'"{MODIFIED + 1:x}-6-{MODIFIED:x}"'
    assert Validators.of(stat).last_modified == "Tue, 14 Nov 2023 22:13:20 GMT"


@pytest.mark.parametrize(("none_match", "since", "not_modified"), [
    (None, "Tue, 14 Nov 2023 22:13:20 GMT", True),
    (None, "Tue, 14 Nov 2023 22:13:21 GMT", True),   # later: RFC 9110, not Prosody's 200
    (None, "Tue, 14 Nov 2023 22:13:19 GMT", False),
    (None, "not a date", False),
    (None, None, False),
    ('"a-6-b"', None, True),
    ('"x", W/"a-6-b"', None, True),
    ("*", None, True),
    ('"x"', "Tue, 14 Nov 2023 22:13:20 GMT", False),  # If-None-Match decides alone
])
def test_conditional_requests(none_match, since, not_modified):
    assert VALIDATORS.not_modified(none_match, since) is not_modified


# -- serving ----------------------------------------------------------------------------

@pytest.fixture
def www(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "a.txt").write_text("aaa\n")
    (root / "b.txt").write_text("bbb\n")
    (root / "c.txt").write_text("ccc\n")
    (root / "big.bin").write_bytes(b"x" * 5000)
    (root / "dir").mkdir()
    (root / "dir" / "start.html").write_text("<p>start</p>")
    (root / "dir" / "index.html").write_text("<p>index</p>")
    (root / "list").mkdir()
    (root / "list" / "<b>.txt").write_text("")
    (root / "list" / "sub").mkdir()
    return root


def files_client(tmp_path: Path, options: str = "", extra_providers=()):
    config = write_config(tmp_path, f'http_files_dir = "www"\n{options}\nVirtualHost "{HOST}"\n')
    files = provider(config.host(HOST), HOST)
    return http_client(tmp_path, config.path.read_text(), [files, *extra_providers])


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    """The files the service opens."""
    names: list[str] = []

    def counting_open(name, *args, **kwargs):
        names.append(os.path.basename(name))
        return open(name, *args, **kwargs)

    monkeypatch.setattr(service, "open", counting_open, raising=False)
    return names


def test_small_files_are_read_once_while_unchanged(tmp_path, www, opened):
    client = files_client(tmp_path)
    assert client.get("/files/a.txt").data == b"aaa\n"
    assert client.get("/files/a.txt").data == b"aaa\n"
    assert opened == ["a.txt"]
    (www / "a.txt").write_text("changed\n")
    os.utime(www / "a.txt", (MODIFIED, MODIFIED))  # a new ETag, whatever the clock
    assert client.get("/files/a.txt").data == b"changed\n"
    assert opened == ["a.txt", "a.txt"]


def test_the_cache_keeps_http_files_cache_size_answers(tmp_path, www, opened):
    client = files_client(tmp_path, "http_files_cache_size = 2")
    for name in ("a.txt", "b.txt", "c.txt", "a.txt"):
        assert client.get(f"/files/{name}").status_code == 200
    assert opened == ["a.txt", "b.txt", "c.txt", "a.txt"]  # a.txt was dropped


def test_larger_files_are_not_cached(tmp_path, www, opened):
    client = files_client(tmp_path, "http_files_cache_max_file_size = 3")  # a.txt: 4 bytes
    for _ in range(2):
        response = client.get("/files/a.txt")
        assert (response.data, response.headers["Content-Length"]) == (b"aaa\n", "4")
    assert opened == ["a.txt", "a.txt"]
    client = files_client(tmp_path)
    for _ in range(2):
        assert client.get("/files/big.bin").data == b"x" * 5000
    assert opened[2:] == ["big.bin", "big.bin"]


def test_larger_files_go_to_the_servers_file_wrapper(tmp_path, www):
    wrapped: list[str] = []

    def file_wrapper(handle, block_size):  # the server's: sendfile(2) on plain TCP
        wrapped.append(os.path.basename(handle.name))
        return FileWrapper(handle, block_size)

    response = files_client(tmp_path).get("/files/big.bin",
                                          environ_overrides={"wsgi.file_wrapper": file_wrapper})
    assert (response.data, response.headers["Content-Length"]) == (b"x" * 5000, "5000")
    assert wrapped == ["big.bin"]


def test_index_files_are_tried_in_order(tmp_path, www):
    client = files_client(tmp_path, 'http_index_files = { "missing.html", "start.html" }')
    assert client.get("/files/dir/").data == b"<p>start</p>"


def test_a_listing_when_enabled(tmp_path, www):
    client = files_client(tmp_path, "http_dir_listing = true")
    response = client.get("/files/list/")
    assert (response.status_code, response.content_type) == (200, "text/html")
    assert b'<a href="%3Cb%3E.txt">&lt;b&gt;.txt</a>' in response.data
    assert b'<a href="sub/">sub/</a>' in response.data
    assert files_client(tmp_path).get("/files/list/").status_code == 403


def test_a_fifo_is_forbidden_rather_than_opened(tmp_path, www):
    os.mkfifo(www / "pipe")
    client = files_client(tmp_path)
    answers: list[int] = []
    asking = threading.Thread(target=lambda: answers.append(
        client.get("/files/pipe").status_code), daemon=True)
    asking.start()
    asking.join(5)
    if asking.is_alive():  # blocked opening it: let it go before failing
        os.close(os.open(www / "pipe", os.O_WRONLY))
    assert answers == [403]


def test_symbolic_links_are_followed_as_in_prosody(tmp_path, www):
    (tmp_path / "outside.txt").write_text("out\n")
    (www / "link.txt").symlink_to(tmp_path / "outside.txt")
    assert files_client(tmp_path).get("/files/link.txt").data == b"out\n"


def test_a_directory_redirect_escapes_the_path(tmp_path, www):
    (www / "a b").mkdir()
    response = files_client(tmp_path).get("/files/a%20b?q=1")
    assert (response.status_code, response.headers["Location"]) == (301, "/files/a%20b/")


# -- routes under a mount path ------------------------------------------------------------

def test_a_blueprint_mounted_deeper_keeps_its_paths(tmp_path, www):
    client = files_client(tmp_path, 'http_paths = { files = "/", probe = "/probe" }',
                          [probe(host=HOST)])
    assert client.get("/a.txt").data == b"aaa\n"
    assert client.get("/probe/hello").data == b"hello\n"
    assert client.get("/").status_code == 403  # the root, no index: not redirected


def test_a_plain_route_at_its_own_path_keeps_it(tmp_path, www):
    def hello(_environ, start_response):
        start_response("200 OK", [("Content-Length", "6")])
        return [b"plain\n"]

    plain = HttpProvider(name="plain", host=HOST, make_blueprint=None, default_path="/a.txt",
                         wsgi_handlers={"GET": hello})
    client = files_client(tmp_path, 'http_paths = { files = "/" }', [plain])
    assert client.get("/a.txt").data == b"plain\n"
    assert client.get("/b.txt").data == b"bbb\n"


def test_the_app_moves_with_http_paths(tmp_path, www):
    client = files_client(tmp_path, 'http_paths = { files = "/static/files" }')
    assert client.get("/static/files/a.txt").data == b"aaa\n"
    assert client.get("/static/files").headers["Location"] == "/static/files/"
    assert client.get("/files/a.txt").status_code == 404


# -- options ----------------------------------------------------------------------------

def test_options_have_prosodys_defaults_and_bounds(tmp_path):
    config = write_config(tmp_path, 'http_path = "old"\nhttp_files_cache_size = 0\n'
                          "http_files_cache_max_file_size = 1e12\n")
    options = FilesOptions.from_config(config)
    assert options.directory == tmp_path / "old"  # Prosody's older option, config-relative
    assert options.index_files == ("index.html", "index.htm")
    assert options.dir_listing is False
    assert options.cache_size == 1
    assert options.cache_max_file_size == service.MAX_CACHE_MAX_FILE_SIZE
    assert any("http_files_cache_size" in warning for warning in config.warnings)


def test_no_directory_means_no_app(tmp_path, caplog):
    config = write_config(tmp_path, f'VirtualHost "{HOST}"\n')
    assert provider(config.host(HOST), HOST) is None
    assert "http_files_dir is not set" in caplog.text
