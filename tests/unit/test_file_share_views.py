"""XEP-0363 HTTP routes through the whole WSGI app (Flask's test client), with a fake clock."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from http_apps.file_share import tokens, views
from http_apps.file_share.policy import Policy, Refusal, SlotRequest
from http_apps.file_share.service import (
    FileShare,
    hold_while_writing,
    store_directory,
    to_datetime,
)
from http_apps.provider import HttpProvider
from storage.db import Database
from storage.uploads import UploadStore
from tests.http_fixtures import http_client
from xmpp.auth_throttle import FailureThrottle

HOST = "upload.example.com"
SECRET = "test-secret"
T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def share(tmp_path: Path, clock: Clock):
    database = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    database.migrate()
    service = FileShare(
        host=HOST, policy=Policy(size_limit=1000, expires_after=3600, local_hosts={"example.com"}),
        secret=SECRET, store=UploadStore(database),
        directory=store_directory(tmp_path / "data", HOST),
        base_url=lambda: f"http://{HOST}/file_share", external=False, clock=clock,
        throttle=FailureThrottle())  # 5 failures, then 2 s doubling
    yield service
    database.close()


@pytest.fixture
def client(tmp_path: Path, share: FileShare):
    provider = HttpProvider(name="file_share", host=HOST, default_path="/file_share",
                            make_blueprint=lambda: views.make_blueprint(share),
                            methods=("GET", "HEAD", "PUT", "OPTIONS"), max_body_size=1000,
                            cors={"enabled": True, "credentials": True,
                                  "headers": {"Authorization": True}})
    return http_client(tmp_path, f'Component "{HOST}" "http_file_share"\n', [provider])


def slot(share: FileShare, name: str = "photo.png", size: int = 10,
         content_type: str | None = "image/png"):
    return share.issue_slot(SlotRequest("juliet@example.com", name, str(size), content_type))


def path_of(url: str) -> str:
    return url.split(HOST, 1)[1]


def put(client, issued, body: bytes, headers: dict | None = None, **kwargs):
    all_headers = {**issued.headers, **(headers or {})}
    return client.put(path_of(issued.put_url), data=body, headers=all_headers,
                      base_url=f"http://{HOST}/", **kwargs)


def get(client, url: str, **kwargs):
    return client.get(path_of(url), base_url=f"http://{HOST}/", **kwargs)


def token_for(share: FileShare, issued, **changes) -> str:
    claims = tokens.verify(SECRET, issued.headers["Authorization"].split()[1], share.now())
    return tokens.sign(SECRET, tokens.UploadClaims(**{**claims.__dict__, **changes}))


# -- PUT ------------------------------------------------------------------------------

def test_upload_then_download(client, share):
    issued = slot(share)
    assert issued.put_url == issued.get_url
    assert issued.put_url.startswith(f"http://{HOST}/file_share/{issued.slot}/photo.png")
    assert put(client, issued, b"0123456789").status_code == 201
    response = get(client, issued.get_url)
    assert response.status_code == 200
    assert response.data == b"0123456789"
    assert not list(share.directory.glob("*~*"))  # no temporary file left


def test_missing_or_malformed_authorization_is_401_with_challenge(client, share):
    issued = slot(share)
    for headers in ({"Authorization": ""}, {"Authorization": "Basic abc"},
                    {"Authorization": "Bearer"}, {"Authorization": "bearer x"}):
        response = put(client, issued, b"0123456789", headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_bad_signature_is_401(client, share):
    issued = slot(share)
    forged = tokens.sign("not the secret", tokens.verify(
        SECRET, issued.headers["Authorization"].split()[1], T0))
    response = put(client, issued, b"0123456789", {"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


def test_bad_tokens_from_one_address_past_the_limit_get_429_unchecked(client, share, clock):
    issued = slot(share)
    for _ in range(5):
        assert put(client, issued, b"0123456789", {"Authorization": "Bearer x"}).status_code == 401
    # Even the right token is refused at once, unchecked: 2 s from the last failure.
    response = put(client, issued, b"0123456789")
    assert (response.status_code, response.headers["Retry-After"]) == (429, "2")
    assert b"wait 2 s" in response.data and response.headers["Connection"] == "close"
    other = put(client, issued, b"0123456789", environ_base={"REMOTE_ADDR": "192.0.2.1"})
    assert other.status_code == 201  # another address is not throttled
    second = slot(share)
    clock.now += 2  # as soon as the wait has passed the token is checked again
    assert put(client, second, b"0123456789").status_code == 201


def test_expired_token_is_410(client, share, clock):
    issued = slot(share)
    clock.now = T0 + 301
    assert put(client, issued, b"0123456789").status_code == 410


def test_token_for_another_slot_is_400(client, share):
    first, second = slot(share), slot(share)
    response = put(client, first, b"0123456789", {"Authorization": second.headers["Authorization"]})
    assert response.status_code == 400


def test_content_length_other_than_the_slot_is_413(client, share):
    issued = slot(share)
    assert put(client, issued, b"012345678").status_code == 413
    assert put(client, issued, b"0123456789X").status_code == 413
    assert put(client, issued, b"0123456789").status_code == 201


def test_body_over_the_size_limit_is_413_before_anything_else(client, share):
    issued = slot(share)
    assert put(client, issued, b"x" * 1001).status_code == 413


def test_put_to_unknown_slot_is_404(client, share):
    issued = slot(share)
    share.store.delete(HOST, [issued.slot])
    assert put(client, issued, b"0123456789").status_code == 404


def test_second_upload_is_409(client, share):
    issued = slot(share)
    assert put(client, issued, b"0123456789").status_code == 201
    assert put(client, issued, b"abcdefghij").status_code == 409
    assert get(client, issued.get_url).data == b"0123456789"


def put_raw(client, issued, stream, content_length: int | None = None) -> int:
    """A PUT reading `stream` as its body; without content_length the body ends with
    the stream (as a chunked one does). Returns the status."""
    environ = EnvironBuilder(path=path_of(issued.put_url), method="PUT",
                             base_url=f"http://{HOST}/", headers=issued.headers).get_environ()
    environ["wsgi.input"] = stream
    if content_length is None:
        environ.pop("CONTENT_LENGTH", None)
        environ["wsgi.input_terminated"] = True
    else:
        environ["CONTENT_LENGTH"] = str(content_length)
    app_iter, status, _headers = run_wsgi_app(client.application, environ)
    b"".join(app_iter)
    return int(status.split()[0])


def test_final_size_is_checked_without_content_length(client, share):
    issued = slot(share)
    for body in (b"short", b"much too long!"):
        assert put_raw(client, issued, io.BytesIO(body)) == 413
    assert not list(share.directory.iterdir())
    assert share.store.get(HOST, issued.slot).completed is None
    assert put_raw(client, issued, io.BytesIO(b"0123456789")) == 201


def test_aborted_upload_leaves_no_file_and_no_record(client, share):
    issued = slot(share)

    class Broken(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            raise ConnectionResetError("peer went away")

    assert put_raw(client, issued, Broken(), content_length=10) == 400
    assert put_raw(client, issued, io.BytesIO(b"01234"), content_length=10) == 400
    assert not list(share.directory.iterdir())
    assert share.store.get(HOST, issued.slot).completed is None


def test_recover_removes_what_a_killed_process_left_half_done(client, share):
    done, moved, partial = slot(share), slot(share), slot(share)
    assert put(client, done, b"0123456789").status_code == 201
    share.directory.mkdir(parents=True, exist_ok=True)
    # Killed after moving the file into place, before marking the slot complete.
    share.path_for(moved.slot).write_bytes(b"0123456789")
    # Killed while receiving the body.
    (share.directory / f"{partial.slot}.bin~x1y2").write_bytes(b"01234")
    assert share.recover() == 2
    assert sorted(share.directory.iterdir()) == [share.path_for(done.slot)]
    # The slot whose PUT got no 201 can be uploaded again.
    assert put(client, moved, b"0123456789").status_code == 201
    assert share.recover() == 0


def test_recover_leaves_the_uploads_another_node_is_writing(client, share):
    """A shared `http_file_share_path`: a node starting while another receives
    a body (or is recording it) keeps that node's files."""
    receiving, recording = slot(share), slot(share)
    share.directory.mkdir(parents=True, exist_ok=True)
    partial = share.directory / f"{receiving.slot}.bin~a1b2"
    whole = share.path_for(recording.slot)
    with partial.open("wb") as writing, whole.open("wb") as moved:
        for file in (writing, moved):
            hold_while_writing(file)  # another open file: as another process's
            file.write(b"01234")
        assert share.recover() == 0
        assert partial.exists() and whole.exists()
    # Their writer gone (killed): what it left goes.
    assert share.recover() == 2


def test_no_slot_for_an_empty_file(share):
    with pytest.raises(Refusal) as caught:
        slot(share, size=0)
    assert (caught.value.error_type, caught.value.condition) == ("modify", "bad-request")
    assert share.store.usage(to_datetime(T0)) == []  # nothing recorded, nothing charged


def test_cors_preflight_allows_put_with_authorization(client, share):
    issued = slot(share)
    response = client.options(path_of(issued.put_url), base_url=f"http://{HOST}/",
                              headers={"Origin": "https://web.example",
                                       "Access-Control-Request-Method": "PUT"})
    assert response.status_code == 200
    assert "PUT" in response.headers["Access-Control-Allow-Methods"]
    assert "Authorization" in response.headers["Access-Control-Allow-Headers"]
    assert response.headers["Access-Control-Allow-Credentials"] == "true"


# -- GET and HEAD ---------------------------------------------------------------------

def uploaded(client, share, body=b"0123456789", **kwargs):
    issued = slot(share, size=len(body), **kwargs)
    assert put(client, issued, body).status_code == 201
    return issued


def test_download_headers_for_a_safe_type(client, share):
    issued = uploaded(client, share, name="café photo.png")
    response = get(client, issued.get_url)
    assert response.headers["Content-Type"] == "image/png"
    assert response.headers["Content-Length"] == "10"
    assert response.headers["Content-Disposition"] == \
        "inline; filename*=UTF-8''caf%C3%A9%20photo.png"
    assert response.headers["Cache-Control"] == "max-age=31556952, immutable"
    assert response.headers["Content-Security-Policy"] == \
        "default-src 'none'; frame-ancestors 'none';"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Last-Modified"] == "Tue, 14 Nov 2023 22:13:20 GMT"


def test_download_headers_for_an_unsafe_type(client, share):
    issued = uploaded(client, share, name="page.html", content_type="text/html")
    response = get(client, issued.get_url)
    assert response.headers["Content-Type"] == "text/html"  # no charset added
    assert response.headers["Content-Disposition"] == "attachment; filename*=UTF-8''page.html"


def test_head_has_the_headers_and_no_body(client, share):
    issued = uploaded(client, share)
    response = client.head(path_of(issued.get_url), base_url=f"http://{HOST}/")
    assert response.status_code == 200
    assert response.headers["Content-Length"] == "10"
    assert response.data == b""


def test_if_modified_since(client, share):
    issued = uploaded(client, share)
    modified = get(client, issued.get_url).headers["Last-Modified"]
    assert get(client, issued.get_url, headers={"If-Modified-Since": modified}).status_code == 304
    later = "Wed, 15 Nov 2023 00:00:00 GMT"
    assert get(client, issued.get_url, headers={"If-Modified-Since": later}).status_code == 304
    earlier = "Mon, 13 Nov 2023 00:00:00 GMT"
    assert get(client, issued.get_url, headers={"If-Modified-Since": earlier}).status_code == 200


@pytest.mark.parametrize(("header", "status", "body", "content_range"), [
    ("bytes=0-1", 206, b"01", "bytes 0-1/10"),
    ("bytes=5-", 206, b"56789", "bytes 5-9/10"),
    ("bytes=-3", 206, b"789", "bytes 7-9/10"),
    ("bytes=8-100", 206, b"89", "bytes 8-9/10"),
    ("bytes=10-", 416, b"", "bytes */10"),
    ("bytes=0-1,4-5", 200, b"0123456789", None),
])
def test_ranges(client, share, header, status, body, content_range):
    issued = uploaded(client, share)
    response = get(client, issued.get_url, headers={"Range": header})
    assert response.status_code == status
    if status != 416:
        assert response.data == body
        assert response.headers["Content-Length"] == str(len(body))
    assert response.headers.get("Content-Range") == content_range


def test_get_of_unknown_slot_is_404(client, share):
    assert get(client, f"http://{HOST}/file_share/nosuchslot/x.png").status_code == 404


def test_slot_never_uploaded_is_410(client, share):
    issued = slot(share)
    assert get(client, issued.get_url).status_code == 410


def test_missing_file_is_410(client, share):
    issued = uploaded(client, share)
    share.path_for(issued.slot).unlink()
    assert get(client, issued.get_url).status_code == 410


def test_expired_file_is_never_served_and_pruned(client, share, clock):
    issued = uploaded(client, share)
    kept = slot(share)
    clock.now = T0 + 3599
    assert get(client, issued.get_url).status_code == 200
    clock.now = T0 + 3600
    assert get(client, issued.get_url).status_code == 410
    # A stale partial upload of the expired slot goes too.
    (share.directory / f"{kept.slot}.bin~partial").write_bytes(b"x")
    assert share.prune() == 2
    assert not list(share.directory.iterdir())
    assert get(client, issued.get_url).status_code == 404


def test_prune_keeps_rows_whose_file_cannot_be_deleted(share, clock, monkeypatch):
    issued = slot(share)
    clock.now = T0 + 7200
    monkeypatch.setattr(FileShare, "remove_files", lambda self, s: False)
    assert share.prune() == 0
    assert share.store.get(HOST, issued.slot) is not None


def test_no_expiry_when_negative(tmp_path, share, clock):
    share.policy = Policy(expires_after=-1, local_hosts={"example.com"})
    slot(share)
    clock.now = T0 + 10**9
    assert share.prune() == 0
