"""Pages people use (issue 19): the invite page (mod_invites_page), the sign-up
form (mod_register_web) and the web admin (mod_admin_web), as Flask blueprints
with the Jinja templates of `templates/`, no front-end build step.

Every page works without JavaScript and carries the same headers: no framing,
no sniffing, no referrer (an invite token is in the URL).
"""

from __future__ import annotations

from pathlib import Path

import flask

TEMPLATES = str(Path(__file__).resolve().parent / "templates")

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def page_blueprint(name: str) -> flask.Blueprint:
    """A blueprint rendering this package's templates, with the page headers."""
    blueprint = flask.Blueprint(name, __name__, template_folder=TEMPLATES)

    @blueprint.after_request
    def headers(response: flask.Response) -> flask.Response:
        response.headers.update(PAGE_HEADERS)
        return response

    return blueprint


def client_address() -> str:
    """The client's address as trusted_proxies leaves it."""
    return flask.request.remote_addr or "unknown"
