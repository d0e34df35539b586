"""CSRF tokens for the pages' forms (itsdangerous): a token signs a value the
request must also carry elsewhere (the admin's session id, or a random nonce
kept in a cookie), so a form posted from another site cannot present one."""

from __future__ import annotations

import secrets

import flask
from itsdangerous import BadSignature, URLSafeTimedSerializer

#: A form older than this must be reloaded.
MAX_AGE = 3600
NONCE_COOKIE = "vireo_csrf"


class CsrfTokens:
    """Issues and checks the tokens of one app (`secret`: see storage.kept_secret)."""

    def __init__(self, secret: str, salt: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=salt)

    def issue(self, binding: str) -> str:
        return self._serializer.dumps(binding)

    def valid(self, token: str | None, binding: str | None) -> bool:
        if not token or not binding:
            return False
        try:
            value = self._serializer.loads(token, max_age=MAX_AGE)
        except BadSignature:  # SignatureExpired included
            return False
        return isinstance(value, str) and secrets.compare_digest(value, binding)


def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def request_nonce() -> str:
    """The nonce a form of this request binds its token to: the cookie's, or a new one."""
    return flask.request.cookies.get(NONCE_COOKIE) or new_nonce()


def keep_nonce(response: flask.Response, nonce: str) -> flask.Response:
    """Set the nonce cookie, for the posts back to this page's URL only."""
    response.set_cookie(NONCE_COOKIE, nonce, httponly=True, samesite="Strict",
                        secure=flask.request.is_secure,
                        path=flask.request.script_root + flask.request.path)
    return response


def nonce_token_valid(tokens: CsrfTokens) -> bool:
    """Whether a posted form's token matches the nonce cookie sent with it."""
    return tokens.valid(flask.request.form.get("csrf_token"),
                        flask.request.cookies.get(NONCE_COOKIE))
