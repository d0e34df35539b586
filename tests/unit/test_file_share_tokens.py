"""XEP-0363 upload tokens: HS256 JWTs with Prosody's claims, verified against a fake clock."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json

import jwt
import pytest

from http_apps.file_share import tokens

SECRET = "U2VjcmV0VG9rZW4wMzYz"
NOW = 1_612_113_160


def claims(**changes):
    base = tokens.make_claims(uploader="juliet@example.com", slot="RVbKAgWPcrUYAodj",
                              filename="picture.png", filesize=7168, filetype="image/png",
                              now=NOW, expires_after=604800)
    return tokens.UploadClaims(**{**base.__dict__, **changes})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: dict, payload: dict, key: bytes | None = SECRET.encode()) -> str:
    """A JWT put together by hand, to send what pyjwt would refuse to make."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = b""
    if key is not None:
        signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_claims_are_prosodys():
    payload = claims().to_payload()
    assert payload == {
        "sub": "juliet@example.com", "iat": NOW, "exp": NOW + 300, "slot": "RVbKAgWPcrUYAodj",
        "expires": NOW + 604800, "filename": "picture.png", "filesize": 7168,
        "filetype": "image/png",
    }


def test_no_expires_claim_when_expiry_is_off():
    made = tokens.make_claims(uploader="a@b", slot="s", filename="f", filesize=1, filetype="t",
                              now=NOW, expires_after=-1)
    assert "expires" not in made.to_payload()


def test_sign_is_hs256_and_any_jwt_library_verifies_it():
    token = tokens.sign(SECRET, claims())
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    decoded = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_exp": False})
    assert decoded == claims().to_payload()


def test_verify_round_trip():
    assert tokens.verify(SECRET, tokens.sign(SECRET, claims()), NOW) == claims()


def test_expiry_follows_the_given_clock():
    token = tokens.sign(SECRET, claims())
    tokens.verify(SECRET, token, NOW + 300)  # exp itself is still valid, as in Prosody
    with pytest.raises(tokens.TokenExpired):
        tokens.verify(SECRET, token, NOW + 301)
    # A token from the future (iat ahead of our clock) is not refused for that.
    tokens.verify(SECRET, token, NOW - 3600)


def test_wrong_secret_is_invalid():
    with pytest.raises(tokens.TokenInvalid):
        tokens.verify("another secret", tokens.sign(SECRET, claims()), NOW)


def test_tampered_payload_is_invalid():
    head, _payload, signature = tokens.sign(SECRET, claims()).split(".")
    evil = b64(json.dumps({**claims().to_payload(), "filesize": 10**12}).encode())
    with pytest.raises(tokens.TokenInvalid):
        tokens.verify(SECRET, f"{head}.{evil}.{signature}", NOW)


def test_alg_none_is_refused():
    token = forge({"alg": "none", "typ": "JWT"}, claims().to_payload(), key=None)
    with pytest.raises(tokens.TokenInvalid):
        tokens.verify(SECRET, token, NOW)


@pytest.mark.parametrize("alg", ["HS384", "HS512", "RS256", "ES256", "hs256"])
def test_other_algorithms_are_refused(alg):
    token = forge({"alg": alg, "typ": "JWT"}, claims().to_payload())
    with pytest.raises(tokens.TokenInvalid):
        tokens.verify(SECRET, token, NOW)


def test_hs512_signed_with_the_right_secret_is_still_refused():
    token = jwt.encode(claims().to_payload(), SECRET, algorithm="HS512")
    with pytest.raises(tokens.TokenInvalid):
        tokens.verify(SECRET, token, NOW)


@pytest.mark.parametrize("change", [
    {"exp": None}, {"exp": "soon"}, {"exp": True}, {"slot": None}, {"slot": 5},
    {"filesize": "7168"}, {"filesize": -1}, {"filesize": 1.5}, {"sub": None},
    {"exp": float("inf")}, {"iat": float("inf")}, {"iat": "x"}, {"expires": "never"},
])
def test_missing_or_mistyped_claims_are_invalid(change):
    payload = {**claims().to_payload(), **change}
    payload = {k: v for k, v in payload.items() if v is not None}
    with pytest.raises(tokens.TokenInvalid):
        tokens.verify(SECRET, forge({"alg": "HS256", "typ": "JWT"}, payload), NOW)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "a.b", "....", "eyJ.eyJ.x"])
def test_garbage_is_invalid(garbage):
    with pytest.raises(tokens.TokenInvalid):
        tokens.verify(SECRET, garbage, NOW)
