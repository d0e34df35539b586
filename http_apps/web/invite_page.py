"""The invite page (Prosody's mod_invites_page): `<mount>?TOKEN` explains what
XMPP is, who invited and until when, offers the invite's `xmpp:` URI as a
button and a QR code, lists clients per platform, and links to the web
sign-up (`invites_registration_page`, relative to the page) for clients that
cannot take the URI. An unknown, used or expired token gets a page saying so
(404, or 410 when expired)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import flask

from http_apps.web import page_blueprint
from http_apps.web.clients import by_platform, load_clients
from http_apps.web.qr import qr_svg

#: Prosody's default, relative to the invite page.
DEFAULT_REGISTRATION_PAGE = "register?t={invite.token}&c={app.id}"


def expiry_text(expires: float | None) -> str | None:
    if not expires:
        return None
    return datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%d %H:%M UTC")


def make_blueprint(invites: Any, site_name: str, registration_page: str) -> flask.Blueprint:
    """`invites`: the host's xmpp.modules.invites.InviteService."""
    blueprint = page_blueprint("invites_page")
    platforms = by_platform(load_clients())

    def register_url(token: str, client_id: str) -> str:
        return registration_page.replace("{invite.token}", token).replace("{app.id}", client_id)

    @blueprint.get("")
    @blueprint.get("/")
    def invite() -> tuple[str, int] | flask.Response:
        token = flask.request.query_string.decode("ascii", "replace")
        found, why = invites.get(token)
        if found is None:
            return flask.render_template("invite_invalid.html", site_name=site_name,
                                         expired=why == "token-expired"), \
                410 if why == "token-expired" else 404
        stored = invites.store.get(None, token) or {}
        body = flask.render_template(
            "invite.html", site_name=site_name, invite=found, host=invites.host,
            inviter=found.inviter or (found.additional_data or {}).get("source"),
            expires=expiry_text(stored.get("expires")),
            qr=qr_svg(found.uri, "QR code of the invite link"), platforms=platforms,
            register_url=lambda client_id: register_url(token, client_id))
        response = flask.make_response(body)
        response.headers["Link"] = f'<{found.uri}>; rel="alternate"'
        return response

    return blueprint
