"""XEP-0363 slot policy: every check, its error, and the order they run in."""

from __future__ import annotations

import pytest

from http_apps.file_share.policy import (
    DEFAULT_SIZE_LIMIT,
    MAX_SIZE,
    Policy,
    Refusal,
    SlotRequest,
    Usage,
    parse_size,
    served_content_type,
    valid_filename,
)

LOCAL = frozenset({"example.com", "upload.example.com"})
NONE_USED = Usage(global_bytes=0, daily_bytes=0)


def request(uploader="juliet@example.com", filename="photo.jpg", size="1000",
            content_type="image/jpeg") -> SlotRequest:
    return SlotRequest(uploader, filename, size, content_type)


def refusal(policy: Policy, req: SlotRequest, usage: Usage = NONE_USED) -> Refusal:
    with pytest.raises(Refusal) as caught:
        policy.check(req, usage)
    return caught.value


def test_defaults_are_prosodys():
    policy = Policy(local_hosts=LOCAL)
    assert policy.size_limit == 10 * 1024 * 1024 == DEFAULT_SIZE_LIMIT
    assert policy.daily_quota == 10 * policy.size_limit
    assert policy.global_quota is None
    assert policy.expires_after == 7 * 86400
    assert policy.safe_types == {"image/*", "video/*", "audio/*", "text/plain"}
    assert Policy(size_limit=1000).daily_quota == 10000


def test_a_good_request_gives_the_file_spec():
    spec = Policy(local_hosts=LOCAL).check(request(), NONE_USED)
    assert (spec.uploader, spec.filename, spec.size, spec.content_type) == \
        ("juliet@example.com", "photo.jpg", 1000, "image/jpeg")


def test_content_type_defaults_to_octet_stream():
    spec = Policy(local_hosts=LOCAL).check(request(content_type=None), NONE_USED)
    assert spec.content_type == "application/octet-stream"


# -- each check and its error --------------------------------------------------------

def test_access_any_local_user_by_default():
    policy = Policy(local_hosts=LOCAL)
    error = refusal(policy, request(uploader="romeo@elsewhere.example"))
    assert (error.reason, error.error_type, error.condition) == ("access", "auth", "forbidden")
    policy.check(request(uploader="romeo@example.com"), NONE_USED)


def test_access_list_of_jids_and_hosts_replaces_the_local_default():
    policy = Policy(local_hosts=LOCAL,
                    access=frozenset({"romeo@elsewhere.example", "friends.example"}))
    policy.check(request(uploader="romeo@elsewhere.example"), NONE_USED)
    policy.check(request(uploader="anyone@friends.example"), NONE_USED)
    assert refusal(policy, request(uploader="juliet@example.com")).reason == "access"
    assert refusal(policy, request(uploader="tybalt@elsewhere.example")).reason == "access"


@pytest.mark.parametrize("name", [None, "", ".", "..", "a/b", "/etc", "a\x00b", "a\nb",
                                  "tab\there", "del\x7f", "c1\x85"])
def test_bad_filenames(name):
    error = refusal(Policy(local_hosts=LOCAL), request(filename=name))
    assert (error.reason, error.error_type, error.condition, error.text) == \
        ("filename", "modify", "bad-request", "Invalid filename")
    assert not valid_filename(name)


@pytest.mark.parametrize("name", ["a.txt", "...", ".hidden", "..x", "名前 with spaces.png",
                                  "back\\slash", "x" * 300])
def test_good_filenames(name):
    assert valid_filename(name)


@pytest.mark.parametrize("size", [None, "", "0", "000", " 0 ", "-0", "-1", "1.5", "abc", "1e3",
                                  "0x10", "+5", "½"])
def test_bad_sizes(size):
    error = refusal(Policy(local_hosts=LOCAL), request(size=size))
    assert (error.reason, error.error_type, error.condition, error.text) == \
        ("filesizefmt", "modify", "bad-request", "File size must be positive integer")


def test_sizes_parse_as_prosody_reads_them():
    assert parse_size("0") is None  # positive, as the issue says (Prosody lets 0 through)
    assert parse_size("1") == 1
    assert parse_size(" 12 ") == 12
    assert parse_size("007") == 7


def test_sizes_too_long_to_convert_are_too_large():
    policy = Policy(size_limit=MAX_SIZE, local_hosts=LOCAL)
    for size in ("1" * 5000, "9" * 20, str(MAX_SIZE + 1)):
        error = refusal(policy, request(size=size))
        assert (error.reason, error.max_file_size) == ("filesize", MAX_SIZE)
    assert parse_size("0" * 5000 + "42") == 42
    assert policy.check(request(size=str(MAX_SIZE)), NONE_USED).size == MAX_SIZE


def test_size_limit():
    policy = Policy(size_limit=1000, local_hosts=LOCAL)
    policy.check(request(size="1000"), NONE_USED)
    error = refusal(policy, request(size="1001"))
    assert (error.reason, error.error_type, error.condition, error.text, error.max_file_size) \
        == ("filesize", "modify", "not-acceptable", "File too large", 1000)


def test_global_quota():
    policy = Policy(global_quota=5000, local_hosts=LOCAL)
    policy.check(request(size="1000"), Usage(global_bytes=4000, daily_bytes=0))
    error = refusal(policy, request(size="1000"), Usage(global_bytes=4001, daily_bytes=0))
    assert (error.reason, error.error_type, error.condition) == \
        ("outofdisk", "wait", "resource-constraint")


def test_daily_quota():
    policy = Policy(size_limit=1000, local_hosts=LOCAL)  # daily quota 10000
    policy.check(request(size="1000"), Usage(global_bytes=0, daily_bytes=9000))
    error = refusal(policy, request(size="1000"), Usage(global_bytes=0, daily_bytes=9001))
    assert (error.reason, error.error_type, error.condition, error.text) == \
        ("quota", "wait", "resource-constraint", "Daily quota reached")


def test_explicit_daily_quota():
    policy = Policy(size_limit=1000, daily_quota=1500, local_hosts=LOCAL)
    assert refusal(policy, request(size="1000"), Usage(0, 501)).reason == "quota"


@pytest.mark.parametrize(("allowed", "content_type", "ok"), [
    ({"image/*"}, "image/png", True),
    ({"image/*"}, "IMAGE/PNG", True),
    ({"image/*"}, "image/svg+xml; charset=utf-8", True),
    ({"image/*"}, "video/mp4", False),
    ({"text/plain"}, "text/plain", True),
    ({"text/plain"}, "text/html", False),
    ({"image/*"}, None, False),  # application/octet-stream
    (set(), "anything/at-all", True),
])
def test_allowed_file_types(allowed, content_type, ok):
    policy = Policy(allowed_types=frozenset(allowed), local_hosts=LOCAL)
    if ok:
        policy.check(request(content_type=content_type), NONE_USED)
    else:
        error = refusal(policy, request(content_type=content_type))
        assert (error.reason, error.error_type, error.condition, error.text) == \
            ("filetype", "modify", "not-acceptable", "File type not allowed")


# -- order ---------------------------------------------------------------------------

ORDER = ["access", "filename", "filesizefmt", "filesize", "outofdisk", "quota", "filetype"]


def failing(upto: str) -> tuple[SlotRequest, Usage]:
    """A request (and usage) failing every check from `upto` on."""
    checks = ORDER[ORDER.index(upto):]
    size = "x" if "filesizefmt" in checks else ("2000" if "filesize" in checks else "500")
    return (request(uploader="x@remote.example" if "access" in checks else "a@example.com",
                    filename="a/b" if "filename" in checks else "ok.bin",
                    size=size,
                    content_type="video/mp4" if "filetype" in checks else "image/png"),
            Usage(global_bytes=99999 if "outofdisk" in checks else 0,
                  daily_bytes=99999 if "quota" in checks else 0))


@pytest.mark.parametrize("first", ORDER)
def test_checks_run_in_prosodys_order(first):
    policy = Policy(size_limit=1000, global_quota=50000, allowed_types=frozenset({"image/*"}),
                    local_hosts=LOCAL)
    req, usage = failing(first)
    assert refusal(policy, req, usage).reason == first


def test_check_request_needs_no_figures_and_check_usage_does_the_rest():
    policy = Policy(size_limit=1000, global_quota=100, allowed_types=frozenset({"image/*"}),
                    local_hosts=LOCAL)
    spec = policy.check_request(request(size="500", content_type="video/mp4"))
    with pytest.raises(Refusal) as caught:
        policy.check_usage(spec, NONE_USED)
    assert caught.value.reason == "outofdisk"


# -- expiry and serving ---------------------------------------------------------------

def test_expiry_with_a_clock():
    policy = Policy(expires_after=60)
    assert policy.daily_window_start(100000.0) == 100000.0 - 86400
    assert not policy.is_expired(created=1000.0, now=1059.9)
    assert policy.is_expired(created=1000.0, now=1060.0)
    assert policy.expires_at(1000.0) == 1060.0


def test_negative_expiry_disables_it():
    policy = Policy(expires_after=-1)
    assert policy.expires_at(0.0) is None
    assert not policy.is_expired(created=0.0, now=1e12)


@pytest.mark.parametrize(("content_type", "disposition"), [
    ("image/png", "inline"), ("video/mp4", "inline"), ("audio/ogg", "inline"),
    ("text/plain", "inline"), ("text/plain; charset=utf-8", "inline"),
    ("text/html", "attachment"), ("application/pdf", "attachment"),
    ("image/svg+xml", "inline"),
])
def test_content_disposition_by_safe_types(content_type, disposition):
    value = Policy().content_disposition("a b/é.png", content_type)
    assert value == f"{disposition}; filename*=UTF-8''a%20b%2F%C3%A9.png"


def test_custom_safe_types():
    policy = Policy(safe_types=frozenset({"application/pdf"}))
    assert policy.content_disposition("x", "application/pdf").startswith("inline;")
    assert policy.content_disposition("x", "image/png").startswith("attachment;")


@pytest.mark.parametrize(("stored", "served"), [
    ("image/png", "image/png"),
    ("text/plain; charset=utf-8", "text/plain; charset=utf-8"),
    ("bad\r\nX-Injected: 1", "application/octet-stream"),
    ("no-slash", "application/octet-stream"),
    ("", "application/octet-stream"),
])
def test_served_content_type(stored, served):
    assert served_content_type(stored) == served
