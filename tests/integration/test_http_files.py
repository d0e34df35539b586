"""http_files (Prosody's mod_http_files) over real HTTP: a Vireo started with the module,
and Debian's Prosody serving the same directory for the answers both must give.

Where Vireo follows RFC 9110 instead of Prosody (If-Modified-Since compared as a
date, no Content-Length on 304), the Vireo-only tests below say so, and README.md
lists the difference.
"""

from __future__ import annotations

import os

import pytest

from tests.http_fixtures import connect, http_request
from tests.integration.prosody_fixture import PROSODY, ProsodyFiles
from tests.integration.server_fixture import make_server

DOMAIN = "localhost"
BIG = os.urandom(300 * 1024 + 7)  # beyond the cache's 4096 bytes: sent with sendfile


@pytest.fixture(scope="module")
def www(tmp_path_factory):
    root = tmp_path_factory.mktemp("www")
    (root / "hello.txt").write_text("hello\n")
    (root / "site").mkdir()
    (root / "site" / "index.html").write_text("<p>index</p>\n")
    (root / "empty").mkdir()
    (root / "big.bin").write_bytes(BIG)
    return root


@pytest.fixture(scope="module")
def vireo(tmp_path_factory, www):
    server = make_server(tmp_path_factory.mktemp("vireo"), http=True, modules=("http_files",),
                         extra=f'http_files_dir = "{www}"\n')
    server.start()
    yield server
    assert server.stop() == 0


@pytest.fixture(scope="module")
def prosody(tmp_path_factory, www):
    if PROSODY is None:
        pytest.skip("prosody is not installed (CI installs it: make deps)")
    with ProsodyFiles(tmp_path_factory.mktemp("prosody"), www, DOMAIN) as server:
        yield server


@pytest.fixture(params=["vireo", "prosody"])
def port(request):
    server = request.getfixturevalue(request.param)
    return server.ports["http"] if request.param == "vireo" else server.port


def ask(port: int, path: str, method: str = "GET",
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on its own connection: status, header fields (lower-case names), body."""
    with connect(port) as sock:
        response = http_request(sock, method, path, DOMAIN, headers)
        return (response.status, {k.lower(): v for k, v in response.getheaders()},
                response.read())


# -- the answers Vireo and Prosody share ------------------------------------------------

def test_a_file_comes_with_its_type_length_and_validators(port, www):
    status, headers, body = ask(port, "/files/hello.txt")
    assert (status, body) == (200, b"hello\n")
    assert headers["content-type"] == "text/plain"
    assert headers["content-length"] == "6"
    stat = (www / "hello.txt").stat()
    assert headers["etag"] == (f'"{int(stat.st_ctime):x}-{stat.st_size:x}-'
                               f'{int(stat.st_mtime):x}"')
    assert headers["last-modified"]
    assert headers["access-control-allow-origin"] == "*"


def test_head_has_the_fields_of_get_and_no_body(port):
    status, headers, body = ask(port, "/files/hello.txt", "HEAD")
    assert (status, body, headers["content-length"]) == (200, b"", "6")


def test_a_directory_serves_its_index_file(port):
    status, headers, body = ask(port, "/files/site/")
    assert (status, body, headers["content-type"]) == (200, b"<p>index</p>\n", "text/html")


def test_a_directory_without_index_is_forbidden(port):
    assert ask(port, "/files/empty/")[0] == 403


def test_a_directory_without_its_slash_is_redirected(port):
    status, headers, _ = ask(port, "/files/site")
    assert (status, headers["location"]) == (301, "/files/site/")


def test_the_mount_path_is_redirected_with_its_query(port):
    status, headers, _ = ask(port, "/files?x=1")
    assert (status, headers["location"]) == (301, "/files/?x=1")


def test_a_missing_file_is_not_found(port):
    assert ask(port, "/files/nope.txt")[0] == 404


@pytest.mark.parametrize("path", ["/files/../x", "/files/%2e%2e/x", "/files/../../etc/passwd",
                                  "/files/%2e%2e/%2e%2e/etc/passwd", "/files/a%00b"])
def test_a_path_out_of_the_directory_or_with_a_nul_is_refused(port, path):
    assert ask(port, path)[0] == 400


def test_the_last_modified_time_gives_304_with_the_validators(port):
    _, first, _ = ask(port, "/files/hello.txt")
    status, headers, body = ask(port, "/files/hello.txt",
                                headers={"If-Modified-Since": first["last-modified"]})
    assert (status, body) == (304, b"")
    assert headers["etag"] == first["etag"]


def test_the_etag_gives_304(port):
    _, first, _ = ask(port, "/files/hello.txt")
    assert ask(port, "/files/hello.txt", headers={"If-None-Match": first["etag"]})[0] == 304


def test_a_large_file_is_sent_whole(port):
    status, headers, body = ask(port, "/files/big.bin")
    assert (status, headers["content-length"]) == (200, str(len(BIG)))
    assert headers["content-type"] == "application/octet-stream"
    assert body == BIG


# -- where Vireo follows RFC 9110 ------------------------------------------------------

def test_a_later_if_modified_since_date_gives_304(vireo):
    # RFC 9110 13.1.3 compares dates; Prosody compares the strings (200 here).
    port = vireo.ports["http"]
    status, headers, _ = ask(port, "/files/hello.txt",
                             headers={"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"})
    assert status == 304
    assert "content-length" not in headers  # RFC 9110 8.6; Prosody sends 0


def test_an_if_none_match_list_with_a_weak_tag_gives_304(vireo):
    # RFC 9110 13.1.2: weak comparison over the list; Prosody wants the tag alone.
    port = vireo.ports["http"]
    etag = ask(port, "/files/hello.txt")[1]["etag"]
    assert ask(port, "/files/hello.txt",
               headers={"If-None-Match": f'"other", W/{etag}'})[0] == 304
    assert ask(port, "/files/hello.txt", headers={"If-None-Match": '"other"',
               "If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"})[0] == 200


def test_other_methods_are_not_allowed(vireo):
    # RFC 9110 15.5.6, as every plain route; Prosody answers 404.
    status, headers, _ = ask(vireo.ports["http"], "/files/hello.txt", "POST")
    assert (status, headers["allow"]) == (405, "GET, HEAD, OPTIONS")


def test_without_a_directory_nothing_is_served_and_the_log_says_why(tmp_path):
    server = make_server(tmp_path, http=True, modules=("http_files",))
    server.start()
    try:
        assert ask(server.ports["http"], "/files/hello.txt")[0] == 404
    finally:
        assert server.stop() == 0
    assert "http_files_dir is not set" in server.log_path.read_text()
