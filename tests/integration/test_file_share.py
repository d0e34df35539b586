"""XEP-0363 HTTP file sharing end to end: slixmpp's xep_0363 as client, raw HTTP for statuses."""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import io
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import jwt
import pytest
from slixmpp.exceptions import IqError

from tests.http_fixtures import connect, http_request
from tests.integration.clients import close, login
from tests.integration.clients import run as run_scenario
from tests.integration.server_fixture import ServerProcess, free_port, make_server, wait_for_port

UPLOAD = "upload.localhost"
NS = "urn:xmpp:http:upload:0"
PLUGINS = ("xep_0030", "xep_0128", "xep_0363")
TIMEOUT = 30


def run(coro):
    return run_scenario(coro, timeout=120)


def file_share_server(directory: Path, options: str = "", *, extra: str = "",
                      users: dict[str, str] | None = None, component: str = UPLOAD,
                      host_options: str = "", database: str = "") -> ServerProcess:
    """A server with `Component "upload.localhost" "http_file_share"` and an http port.

    The component's http_host is 127.0.0.1, so slot URLs resolve without DNS.
    `host_options` go in the VirtualHost's section, `options` in the component's.
    """
    http_port = free_port()
    server = make_server(directory, database=database, extra=f"""
http_ports = {{ {http_port} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ }}
{extra}
""", host_extra=f"""
{host_options}
Component "{component}" "http_file_share"
    http_host = "127.0.0.1"
{options}
""")
    server.ports["http"] = http_port
    server.create_users(users or {"alice": "alice-pw", "bob": "bob-pw"})
    return server


def start(server: ServerProcess) -> None:
    server.start()
    if "http" in server.ports:  # the HTTP ports open after the XMPP ones
        wait_for_port(server.ports["http"], server.process)


async def request_slot(client, filename="a.txt", size=10, content_type="text/plain"):
    return await client["xep_0363"].request_slot(UPLOAD, filename, size, content_type,
                                                 timeout=TIMEOUT)


async def slot_error(client, **kwargs):
    with pytest.raises(IqError) as caught:
        await request_slot(client, **kwargs)
    error = caught.value.iq["error"]
    return error["type"], error["condition"], error


async def fetch(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    async with aiohttp.ClientSession() as session, \
            session.get(url, headers=headers or {}) as response:
        return response.status, dict(response.headers), await response.read()


def put_headers(slot) -> dict[str, str]:
    return {header["name"]: header["value"] for header in slot["put"]["headers"]}


# -- the main service ----------------------------------------------------------------------

MAIN_OPTIONS = """
    http_file_share_size_limit = 1024 * 1024
    http_file_share_allowed_file_types = { "image/*", "text/plain", "text/html",
                                           "application/octet-stream" }
    http_file_share_access = { "alice@localhost", "bob@localhost" }
    http_file_share_secret = "main-secret"
    -- These tests refuse many PUTs from loopback on purpose: no throttle here.
    vireo_auth_failure_limit = 1000
"""
MAIN_SECRET = "main-secret"


@pytest.fixture(scope="module")
def server(tmp_path_factory, databases):
    server = file_share_server(tmp_path_factory.mktemp("file_share"), MAIN_OPTIONS,
                               users={"alice": "alice-pw", "bob": "bob-pw", "eve": "eve-pw"},
                               database=databases.config())
    start(server)
    yield server
    assert server.stop() == 0


def test_disco_finds_the_service_with_its_size_limit(server):
    async def scenario():
        client = await login(server, "alice", plugins=PLUGINS)
        info = await client["xep_0363"].find_upload_service(timeout=TIMEOUT)
        assert info is not None and info["from"] == UPLOAD
        assert ("store", "file", None, "HTTP File Upload") in info["disco_info"]["identities"]
        assert NS in info["disco_info"]["features"]
        forms = [dict(form["values"]) for form in info["disco_info"].iterables]
        assert forms == [{"FORM_TYPE": [NS], "max-file-size": str(1024 * 1024)}]
        await close(client)

    run(scenario())


def test_upload_then_download_byte_for_byte(server):
    body = bytes(range(256)) * 1000  # 256000 bytes, every byte value

    async def scenario():
        client = await login(server, "alice", plugins=PLUGINS)
        url = await client["xep_0363"].upload_file(
            "bytes é.bin", size=len(body), content_type="application/octet-stream",
            input_file=io.BytesIO(body), timeout=TIMEOUT)
        assert url.startswith(f"http://127.0.0.1:{server.ports['http']}/file_share/")
        assert url.endswith("/bytes%20%C3%A9.bin")
        status, headers, data = await fetch(url)
        assert status == 200
        assert hashlib.sha256(data).digest() == hashlib.sha256(body).digest()
        assert headers["Content-Type"] == "application/octet-stream"
        assert headers["Content-Disposition"] == "attachment; filename*=UTF-8''bytes%20%C3%A9.bin"
        await close(client)

    run(scenario())
    assert f"Serving uploads at http://127.0.0.1:{server.ports['http']}/file_share" \
        in server.log_path.read_text()


def test_slot_errors(server):
    async def scenario():
        alice = await login(server, "alice", plugins=PLUGINS)
        eve = await login(server, "eve", plugins=PLUGINS)
        assert (await slot_error(eve))[:2] == ("auth", "forbidden")
        # (A tab would reach us as a space: XML normalises attribute values.)
        for name in ("", ".", "..", "dir/file.txt", "nel\x85name"):
            assert (await slot_error(alice, filename=name))[:2] == ("modify", "bad-request")
        for size in ("0", "-1", "1.5", "lots"):
            assert (await slot_error(alice, size=size))[:2] == ("modify", "bad-request")
        for size in (1024 * 1024 + 1, "1" * 5000):  # (too long for Python's int())
            kind, condition, error = await slot_error(alice, size=size)
            assert (kind, condition) == ("modify", "not-acceptable")
            too_large = error.xml.find(f"{{{NS}}}file-too-large/{{{NS}}}max-file-size")
            assert too_large is not None and too_large.text == str(1024 * 1024)
        assert (await slot_error(alice, content_type="video/mp4"))[:2] == \
            ("modify", "not-acceptable")
        await close(alice, eve)

    run(scenario())


def test_slot_shape_and_token(server):
    async def scenario():
        client = await login(server, "alice", plugins=PLUGINS)
        iq = await request_slot(client, filename="photo.png", size=1234,
                                content_type="image/png")
        slot = iq["http_upload_slot"]
        assert slot["put"]["url"] == slot["get"]["url"]
        token = put_headers(slot)["Authorization"].removeprefix("Bearer ")
        claims = jwt.decode(token, options={"verify_signature": False})
        assert jwt.get_unverified_header(token)["alg"] == "HS256"
        assert set(claims) == {"sub", "iat", "exp", "slot", "expires", "filename", "filesize",
                               "filetype"}
        assert (claims["sub"], claims["filename"], claims["filesize"], claims["filetype"]) == \
            ("alice@localhost", "photo.png", 1234, "image/png")
        assert claims["exp"] == claims["iat"] + 300
        assert claims["expires"] == claims["iat"] + 7 * 86400
        assert slot["put"]["url"].endswith(f"/file_share/{claims['slot']}/photo.png")
        await close(client)

    run(scenario())


# -- PUT statuses with raw HTTP ------------------------------------------------------------

def new_slot(server, filename="f.txt", size=10, content_type="text/plain"):
    async def scenario():
        client = await login(server, "bob", plugins=PLUGINS)
        iq = await request_slot(client, filename, size, content_type)
        await close(client)
        return iq["http_upload_slot"]

    slot = run(scenario())
    return urlsplit(slot["put"]["url"]).path, put_headers(slot)["Authorization"]


def raw(server, method, path, headers=None, body=b""):
    with connect(server.ports["http"]) as sock:
        response = http_request(sock, method, path, "127.0.0.1", headers=headers, body=body)
        return response.status, dict(response.getheaders()), response.read()


def test_put_statuses(server):
    path, auth = new_slot(server)
    # No or malformed Authorization: 401 with a Bearer challenge.
    for headers in ({}, {"Authorization": "Basic Zm9vOmJhcg=="}, {"Authorization": "Bearer"}):
        status, response_headers, _ = raw(server, "PUT", path, headers, b"0123456789")
        assert status == 401
        assert response_headers["WWW-Authenticate"] == "Bearer"
    # A token signed with another secret, or without exp: 401.
    claims = jwt.decode(auth.split()[1], options={"verify_signature": False})
    forged = jwt.encode(claims, "guessed secret", algorithm="HS256")
    assert raw(server, "PUT", path, {"Authorization": f"Bearer {forged}"}, b"0" * 10)[0] == 401
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert raw(server, "PUT", path, {"Authorization": f"Bearer {unsigned}"}, b"0" * 10)[0] == 401
    # The token of another slot: 400.
    other_path, other_auth = new_slot(server)
    assert raw(server, "PUT", path, {"Authorization": other_auth}, b"0" * 10)[0] == 400
    # Content-Length other than the slot's size: 413.
    assert raw(server, "PUT", path, {"Authorization": auth}, b"0" * 9)[0] == 413
    # Success, then a second upload: 201, 409.
    assert raw(server, "PUT", path, {"Authorization": auth}, b"0123456789")[0] == 201
    assert raw(server, "PUT", path, {"Authorization": auth}, b"9876543210")[0] == 409
    assert raw(server, "GET", path)[2] == b"0123456789"
    # Unknown slot (a slot deleted from the database): 404.
    slot_id = other_path.split("/")[2]
    server.query("DELETE FROM uploads WHERE slot = :slot", slot=slot_id)
    assert raw(server, "PUT", other_path, {"Authorization": other_auth}, b"0" * 10)[0] == 404


def test_expired_or_exp_less_tokens(server):
    path, auth = new_slot(server)
    claims = jwt.decode(auth.split()[1], MAIN_SECRET, algorithms=["HS256"])
    expired = jwt.encode({**claims, "exp": int(time.time()) - 10}, MAIN_SECRET, "HS256")
    assert raw(server, "PUT", path, {"Authorization": f"Bearer {expired}"}, b"0" * 10)[0] == 410
    del claims["exp"]
    no_exp = jwt.encode(claims, MAIN_SECRET, "HS256")
    assert raw(server, "PUT", path, {"Authorization": f"Bearer {no_exp}"}, b"0" * 10)[0] == 401
    hs512 = jwt.encode({**claims, "exp": int(time.time()) + 60}, MAIN_SECRET, "HS512")
    assert raw(server, "PUT", path, {"Authorization": f"Bearer {hs512}"}, b"0" * 10)[0] == 401


def test_chunked_upload_checks_the_final_size(server):
    path, auth = new_slot(server)

    def chunked(parts):
        return b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in parts) + b"0\r\n\r\n"

    headers = {"Authorization": auth, "Transfer-Encoding": "chunked"}
    assert raw(server, "PUT", path, headers, chunked([b"01234", b"567"]))[0] == 413
    assert raw(server, "PUT", path, headers, chunked([b"01234", b"56789", b"X"]))[0] == 413
    assert raw(server, "PUT", path, headers, chunked([b"01234", b"56789"]))[0] == 201
    assert raw(server, "GET", path)[2] == b"0123456789"


def test_expect_100_continue(server):
    path, auth = new_slot(server)
    with connect(server.ports["http"]) as sock:
        sock.sendall((f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n"
                      "Content-Length: 10\r\nExpect: 100-continue\r\n\r\n").encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"0123456789")
        assert sock.recv(1024).startswith(b"HTTP/1.1 201 ")
    # A refused request gets its final status instead of 100 Continue, and no wait.
    with connect(server.ports["http"]) as sock:
        sock.sendall((f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n"
                      "Content-Length: 10\r\nExpect: 100-continue\r\n\r\n").encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 409 ")


def test_aborted_upload_leaves_nothing(server):
    path, auth = new_slot(server, size=1000)
    with connect(server.ports["http"]) as sock:
        sock.sendall((f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n"
                      "Content-Length: 1000\r\n\r\n").encode() + b"x" * 500)
    slot_id = path.split("/")[2]
    store = server.directory / "data" / "upload%2elocalhost" / "http_file_share"
    deadline = time.monotonic() + 10
    while list(store.glob(f"{slot_id}*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not list(store.glob(f"{slot_id}*"))
    assert server.query("SELECT completed FROM uploads WHERE slot = :slot", slot=slot_id) == \
        [(None,)]
    assert raw(server, "GET", path)[0] == 410
    # The slot can still be used.
    assert raw(server, "PUT", path, {"Authorization": auth}, b"y" * 1000)[0] == 201


# -- GET headers and ranges ---------------------------------------------------------------

def uploaded(server, body: bytes, filename: str, content_type: str) -> str:
    path, auth = new_slot(server, filename, len(body), content_type)
    assert raw(server, "PUT", path, {"Authorization": auth, "Content-Type": content_type},
               body)[0] == 201
    return path


SECURITY_HEADERS = {
    "Cache-Control": "max-age=31556952, immutable",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none';",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}


@pytest.mark.parametrize(("content_type", "disposition"), [
    ("image/png", "inline"), ("text/plain", "inline"), ("text/html", "attachment"),
    ("application/octet-stream", "attachment"),
])
def test_download_headers(server, content_type, disposition):
    path = uploaded(server, b"<b>hello</b>", "file name.x", content_type)
    for method in ("GET", "HEAD"):
        status, headers, body = raw(server, method, path)
        assert status == 200
        assert body == (b"<b>hello</b>" if method == "GET" else b"")
        assert headers["Content-Type"] == content_type
        assert headers["Content-Length"] == "12"
        assert headers["Content-Disposition"] == \
            f"{disposition}; filename*=UTF-8''file%20name.x"
        for name, value in SECURITY_HEADERS.items():
            assert headers[name] == value
        modified = headers["Last-Modified"]
    assert raw(server, "GET", path, {"If-Modified-Since": modified})[0] == 304


def test_ranges(server):
    body = bytes(range(100))
    path = uploaded(server, body, "video.mp4", "image/png")
    cases = [("bytes=0-1", 206, body[:2], "bytes 0-1/100"),
             ("bytes=50-", 206, body[50:], "bytes 50-99/100"),
             ("bytes=-10", 206, body[90:], "bytes 90-99/100"),
             ("bytes=95-200", 206, body[95:], "bytes 95-99/100")]
    for header, status, expected, content_range in cases:
        got_status, headers, data = raw(server, "GET", path, {"Range": header})
        assert (got_status, data, headers["Content-Range"]) == (status, expected, content_range)
        assert headers["Content-Length"] == str(len(expected))
    status, headers, _ = raw(server, "GET", path, {"Range": "bytes=100-"})
    assert (status, headers["Content-Range"]) == (416, "bytes */100")


def test_unknown_slot_is_404(server):
    assert raw(server, "GET", "/file_share/NoSuchSlot0000000/x.txt")[0] == 404


def test_report_uploads(server):
    new_slot(server, size=10)
    result = server.admin("report", "uploads")
    assert result.returncode == 0, result.stderr
    assert f"{UPLOAD}: http://127.0.0.1:{server.ports['http']}/file_share" in result.stdout
    lines = result.stdout.splitlines()
    assert any(line.split()[:2] == [UPLOAD, "bob@localhost"] for line in lines)
    assert any(line.split()[:2] == [UPLOAD, "*"] for line in lines)


def test_bad_tokens_past_the_limit_get_429_with_retry_after(tmp_path):
    """vireo_auth_failure_limit (5) bad tokens from one address; then even the
    right token gets 429 at once, unchecked, with Retry-After (0.5 s doubled:
    1 s); once that has passed the upload goes through."""
    server = file_share_server(tmp_path, "    vireo_auth_failure_delay = 0.5\n")
    start(server)
    try:
        path, auth = new_slot(server)
        for _ in range(5):
            assert raw(server, "PUT", path, {"Authorization": "Bearer x"}, b"0" * 10)[0] == 401
        status, headers, body = raw(server, "PUT", path, {"Authorization": auth}, b"0" * 10)
        assert (status, headers["Retry-After"]) == (429, "1") and b"wait 1 s" in body
        time.sleep(1.0)  # the wait the server told
        assert raw(server, "PUT", path, {"Authorization": auth}, b"0" * 10)[0] == 201
    finally:
        assert server.stop() == 0


# -- expiry -------------------------------------------------------------------------------

def test_expiry_job_deletes_files_and_rows(tmp_path, databases):
    server = file_share_server(tmp_path, """
    http_file_share_expires_after = 2
    vireo_http_file_share_prune_interval = 0.2
""", database=databases.config())
    start(server)
    try:
        path, auth = new_slot(server)
        assert raw(server, "PUT", path, {"Authorization": auth}, b"0123456789")[0] == 201
        assert raw(server, "GET", path)[0] == 200
        slot_id = path.split("/")[2]
        stored = server.directory / "data" / "upload%2elocalhost" / "http_file_share" / \
            f"{slot_id}.bin"
        assert stored.exists()
        deadline = time.monotonic() + 15
        while (stored.exists() or server.query("SELECT slot FROM uploads")) \
                and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not stored.exists()
        assert server.query("SELECT slot FROM uploads") == []
        assert raw(server, "GET", path)[0] == 404
    finally:
        assert server.stop() == 0


def test_expired_file_is_never_served(tmp_path, databases):
    # No job in sight (an hour away): the GET itself refuses an expired file.
    server = file_share_server(tmp_path, """
    http_file_share_expires_after = 1
    vireo_http_file_share_prune_interval = 3600
""", database=databases.config())
    start(server)
    try:
        path, auth = new_slot(server)
        assert raw(server, "PUT", path, {"Authorization": auth}, b"0123456789")[0] == 201
        deadline = time.monotonic() + 10
        while raw(server, "GET", path)[0] == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert raw(server, "GET", path)[0] == 410
    finally:
        assert server.stop() == 0


# -- quotas ---------------------------------------------------------------------------------

QUOTA_OPTIONS = """
    http_file_share_size_limit = 1000
    http_file_share_daily_quota = 2500
    http_file_share_global_quota = 4000
"""


def test_quotas_hold_across_a_restart(tmp_path, databases):
    server = file_share_server(tmp_path, QUOTA_OPTIONS, database=databases.config())
    start(server)

    async def first_run():
        alice = await login(server, "alice", plugins=PLUGINS)
        bob = await login(server, "bob", plugins=PLUGINS)
        await request_slot(alice, size=1000)
        await request_slot(alice, size=1000)
        assert (await slot_error(alice, size=1000))[:2] == ("wait", "resource-constraint")
        await request_slot(alice, size=500)  # 2500: exactly the daily quota
        await request_slot(bob, size=1000)  # global: 3500
        _, condition, error = await slot_error(bob, size=1000)  # 4500 > 4000
        assert condition == "resource-constraint"
        assert error["text"] == "Server global storage quota reached"
        await request_slot(bob, size=500)  # 4000: exactly the global quota
        await close(alice, bob)

    async def after_restart():
        alice = await login(server, "alice", plugins=PLUGINS)
        bob = await login(server, "bob", plugins=PLUGINS)
        assert (await slot_error(alice, size=1))[2]["text"] == \
            "Server global storage quota reached"
        assert (await slot_error(bob, size=1))[:2] == ("wait", "resource-constraint")
        await close(alice, bob)

    try:
        run(first_run())
        assert server.stop() == 0
        start(server)
        run(after_restart())
    finally:
        assert server.stop() == 0


def test_concurrent_slot_requests_cannot_pass_the_daily_quota(tmp_path, databases):
    server = file_share_server(tmp_path, """
    http_file_share_size_limit = 1000
    http_file_share_daily_quota = 3000
""", database=databases.config())
    start(server)

    async def scenario():
        clients = [await login(server, "alice", plugins=PLUGINS, resource=f"r{i}")
                   for i in range(4)]
        results = await asyncio.gather(
            *(request_slot(c, size=1000) for c in clients for _ in range(3)),
            return_exceptions=True)
        granted = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, IqError)]
        assert len(granted) == 3 and len(refused) == 9
        assert {r.iq["error"]["condition"] for r in refused} == {"resource-constraint"}
        await close(*clients)

    try:
        run(scenario())
    finally:
        assert server.stop() == 0


# -- external upload service -----------------------------------------------------------------

SECRET = "U2VjcmV0VG9rZW4wMzYz"


class Receiver(http.server.BaseHTTPRequestHandler):
    """An external upload service as the spec describes it: checks the JWT and the body."""

    received: list[dict] = []

    def do_PUT(self) -> None:
        try:
            token = self.headers["Authorization"].removeprefix("Bearer ")
            claims = jwt.decode(token, SECRET, algorithms=["HS256"])
        except (AttributeError, jwt.PyJWTError):
            self.send_response(401)
            self.end_headers()
            return
        slot = self.path.split("/")[2]
        body = self.rfile.read(int(self.headers["Content-Length"]))
        ok = (claims["slot"] == slot and len(body) == claims["filesize"]
              and self.headers["Content-Type"] == claims["filetype"])
        self.received.append({"claims": claims, "path": self.path, "body": body, "ok": ok})
        self.send_response(201 if ok else 400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


EXTERNAL_PRUNE_INTERVAL = 0.1


def test_external_upload_service(tmp_path, databases):
    Receiver.received.clear()  # (a class attribute: this test runs once per database)
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{receiver.server_address[1]}/upload"
    server = file_share_server(tmp_path, f"""
    http_file_share_secret = "{SECRET}"
    http_file_share_base_url = "{base}"
    http_file_share_expires_after = 1
    vireo_http_file_share_prune_interval = {EXTERNAL_PRUNE_INTERVAL}
""", database=databases.config())
    http_port = server.ports.pop("http")  # nothing will listen there
    start(server)

    async def scenario():
        client = await login(server, "alice", plugins=PLUGINS)
        url = await client["xep_0363"].upload_file(
            "report.pdf", size=5, content_type="application/pdf",
            input_file=io.BytesIO(b"%PDF-"), timeout=TIMEOUT)
        await close(client)
        return url

    try:
        url = run(scenario())
        assert url.startswith(base + "/") and url.endswith("/report.pdf")
        (entry,) = Receiver.received
        assert entry["ok"] and entry["body"] == b"%PDF-"
        claims = entry["claims"]
        assert (claims["sub"], claims["filename"], claims["filesize"], claims["filetype"]) == \
            ("alice@localhost", "report.pdf", 5, "application/pdf")
        assert claims["exp"] == claims["iat"] + 300 and claims["expires"] == claims["iat"] + 1
        assert entry["path"] == f"/upload/{claims['slot']}/report.pdf"
        # No local HTTP routes (no HTTP port at all), and no local expiry of the records.
        with pytest.raises(OSError):
            connect(http_port).close()
        # The row outlives its expiry by several prune intervals: watched until then
        # (`expires` is whole seconds, rounded down: the slot expires within 1 s after).
        kept_until = claims["expires"] + 1 + 5 * EXTERNAL_PRUNE_INTERVAL
        while time.time() < kept_until:
            assert server.query("SELECT slot FROM uploads") == [(claims["slot"],)]
            time.sleep(EXTERNAL_PRUNE_INTERVAL)
        assert server.query("SELECT slot FROM uploads") == [(claims["slot"],)]
    finally:
        assert server.stop() == 0
        receiver.shutdown()
        receiver.server_close()


def test_disco_items_of_the_parent_host_list_the_component(server):
    async def scenario():
        client = await login(server, "alice", plugins=PLUGINS)
        items = await client["xep_0030"].get_items(jid="localhost", timeout=TIMEOUT)
        assert UPLOAD in {item[0] for item in items["disco_items"]["items"]}
        await close(client)

    run(scenario())


# Configuration and routing from here on: each starts a server of its own, on SQLite only.

def test_slot_urls_follow_the_components_http_external_url(tmp_path):
    server = file_share_server(tmp_path, """
    http_external_url = "https://files.example.org/up/"
""")
    start(server)

    async def scenario():
        client = await login(server, "alice", plugins=PLUGINS)
        iq = await request_slot(client, filename="a b.txt", size=5)
        await close(client)
        return iq["http_upload_slot"]

    try:
        slot = run(scenario())
        url = slot["put"]["url"]
        slot_id = urlsplit(url).path.split("/")[3]
        assert url == f"https://files.example.org/up/file_share/{slot_id}/a%20b.txt"
        assert "Serving uploads at https://files.example.org/up/file_share" \
            in server.log_path.read_text()
        # A reverse proxy strips its prefix and passes the request on.
        path = urlsplit(url).path.removeprefix("/up")
        assert raw(server, "PUT", path, {"Authorization": put_headers(slot)["Authorization"]},
                   b"hello")[0] == 201
        assert raw(server, "GET", path)[2] == b"hello"
    finally:
        assert server.stop() == 0


def test_a_service_off_the_parent_domain_is_found_through_disco_items(tmp_path):
    # Not a subdomain of localhost: only disco_items leads clients to it.
    elsewhere = "files.example.net"
    server = file_share_server(tmp_path, component=elsewhere, host_options=f"""
disco_items = {{ {{ "{elsewhere}", "file sharing" }} }}
""")
    start(server)

    async def scenario():
        client = await login(server, "alice", plugins=PLUGINS)
        info = await client["xep_0363"].find_upload_service(timeout=TIMEOUT)
        assert info is not None and info["from"] == elsewhere
        url = await client["xep_0363"].upload_file(
            "note.txt", size=5, content_type="text/plain", input_file=io.BytesIO(b"hello"),
            timeout=TIMEOUT)
        assert (await fetch(url))[2] == b"hello"
        await close(client)

    try:
        run(scenario())
    finally:
        assert server.stop() == 0


def test_loaded_on_a_virtual_host(tmp_path):
    http_port = free_port()
    server = make_server(tmp_path, modules=("http_file_share",), extra=f"""
http_ports = {{ {http_port} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ }}
""", host_extra='http_host = "127.0.0.1"')
    server.ports["http"] = http_port
    server.create_users({"alice": "alice-pw"})
    start(server)

    async def scenario():
        client = await login(server, "alice", plugins=PLUGINS)
        info = await client["xep_0030"].get_info(jid="localhost", timeout=TIMEOUT)
        identities = {(i[0], i[1]) for i in info["disco_info"]["identities"]}
        assert ("store", "file") in identities
        url = await client["xep_0363"].upload_file(
            "note.txt", size=5, content_type="text/plain", input_file=io.BytesIO(b"hello"),
            domain="localhost", timeout=TIMEOUT)
        assert url.startswith(f"http://127.0.0.1:{http_port}/file_share/")
        assert (await fetch(url))[2] == b"hello"
        await close(client)
        return identities

    try:
        identities = run(scenario())
    finally:
        assert server.stop() == 0
    assert ("server", "im") in identities
