"""The web sign-up (Prosody's mod_register_web with mod_invites_register_web):
`<mount>?t=TOKEN` shows a form for an invite that allows registration; a POST
creates the account through mod_register's own path (the same events, the
invite spent, the inviter's contact added), so it is exactly in-band
registration.

Answers: an address past its attempt limit 429 with Retry-After (every POST
counts); a form without a valid CSRF token 403; an unknown, used or expired invite 404/410; a
name nodeprep refuses, a taken name, or a password against the policy 400
with the form again and the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import flask

from http_apps.web import client_address, page_blueprint
from http_apps.web.csrf import CsrfTokens, keep_nonce, nonce_token_valid, request_nonce
from xmpp.auth_throttle import FailureThrottle, wait_text, whole_seconds
from xmpp.errors import StanzaError
from xmpp.jid import InvalidJID, nodeprep

#: Prosody's mod_password_policy default minimum length.
DEFAULT_MIN_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


@dataclass(frozen=True)
class SignupService:
    """What the sign-up form needs of the host, as plain callables."""

    host: str
    site_name: str
    invites: Any  # xmpp.modules.invites.InviteService
    create: Callable[..., None]  # Registration.create(username, password, address, invite=...)
    throttle: FailureThrottle
    clock: Callable[[], float]
    min_password_length: int = DEFAULT_MIN_LENGTH


def password_problem(password: str, confirm: str, min_length: int) -> str | None:
    """Why a password is refused (None: acceptable)."""
    if password != confirm:
        return "The two passwords differ."
    if len(password) < min_length:
        return f"The password must have at least {min_length} characters."
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"The password must have at most {MAX_PASSWORD_LENGTH} characters."
    return None


def make_blueprint(service: SignupService, tokens: CsrfTokens) -> flask.Blueprint:
    blueprint = page_blueprint("register_web")

    def page(invite: Any, token: str, *, error: str | None = None, username: str = "",
             status: int = 200) -> flask.Response:
        nonce = request_nonce()
        body = flask.render_template(
            "register.html", site_name=service.site_name, host=service.host, token=token,
            reserved=invite.username if invite.type == "register" else None,
            username=username, error=error, csrf=tokens.issue(nonce),
            min_length=service.min_password_length)
        return keep_nonce(flask.make_response(body, status), nonce)

    def invalid(why: str) -> tuple[str, int]:
        expired = why == "token-expired"
        return flask.render_template("invite_invalid.html", site_name=service.site_name,
                                     expired=expired), 410 if expired else 404

    @blueprint.get("")
    @blueprint.get("/")
    def form() -> Any:
        token = flask.request.args.get("t", "")
        invite, why = service.invites.get(token)
        return invalid(why) if invite is None else page(invite, token)

    @blueprint.post("")
    @blueprint.post("/")
    def submit() -> Any:
        # Every POST let through counts (sign-ups are paced, not checked), before
        # its body is even read: a flood costs little.
        address, now = client_address(), service.clock()
        wait = service.throttle.delay_for(address, now)
        if wait > 0:
            body = flask.render_template("refused.html", site_name=service.site_name,
                                         reason=wait_text("Too many sign-up attempts", wait))
            return body, 429, {"Retry-After": str(whole_seconds(wait))}
        service.throttle.record_failure(address, now)
        fields = flask.request.form
        if not nonce_token_valid(tokens):
            return flask.render_template("refused.html", site_name=service.site_name,
                                         reason="The form has expired or did not come from "
                                                "this site. Reload the page and try again."), 403
        token = fields.get("t", "")
        invite, why = service.invites.get(token)
        if invite is None:
            return invalid(why)
        typed = fields.get("username", "").strip()
        try:
            username = nodeprep(typed)
        except InvalidJID:
            return page(invite, token, username=typed, status=400, error=(
                "That username contains characters that are not allowed "
                "(spaces, @, /, quotes and the like)."))
        password = fields.get("password", "")
        problem = password_problem(password, fields.get("password_confirm", ""),
                                   service.min_password_length)
        if problem:
            return page(invite, token, username=typed, status=400, error=problem)
        try:
            service.create(username, password, address, invite=invite,
                           source="mod_register_web")
        except StanzaError as error:
            taken = error.condition == "conflict"
            return page(invite, token, username=typed, status=409 if taken else 400,
                        error=f"The username {username} is already taken." if taken
                        else error.text or "Registration refused.")
        return flask.render_template("registered.html", site_name=service.site_name,
                                     jid=f"{username}@{service.host}")

    return blueprint
