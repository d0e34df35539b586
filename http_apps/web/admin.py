"""The web admin (after Prosody's community mod_admin_web, ejabberd's /admin):
pages for the JIDs in `admins`, after a login with their XMPP password.

Every page but the login needs the session cookie (http_apps.web.admin_sessions);
every form carries a CSRF token bound to that session, the login form one bound
to a cookie nonce (so another site cannot log a browser in as its own admin,
login CSRF); every destructive
action (reset a password, delete a user, disconnect a session, delete an
upload, revoke an invite) first answers a confirmation page whose form posts
again with `confirmed=yes`, and is logged with the admin's JID.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from typing import Any

import flask

from http_apps.web import client_address, page_blueprint
from http_apps.web.admin_sessions import AdminSessions
from http_apps.web.csrf import CsrfTokens, keep_nonce, nonce_token_valid, request_nonce
from http_apps.web.invite_page import expiry_text
from http_apps.web.sparklines import MetricHistory, sparkline
from xmpp.auth_throttle import FailureThrottle, wait_text, whole_seconds
from xmpp.errors import StreamError
from xmpp.jid import JID, InvalidJID, nodeprep, parse_jid

COOKIE = "vireo_admin"
DAY = 86400
#: Users listed per page of the users page.
PAGE_SIZE = 500


@dataclass(frozen=True)
class Paged:
    """One page of a sorted list: its items, its number (from 1) and how many pages there are."""

    items: list[str]
    number: int
    pages: int
    first: int  # the 1-based position of items[0] in the whole list


def page_of(names: list[str], requested: str | None, size: int = PAGE_SIZE) -> Paged:
    """The page `requested` (a query parameter: missing, bad or out of range
    gives the nearest page) of `names`."""
    pages = max(1, -(-len(names) // size))
    try:
        number = int(requested or 1)
    except ValueError:
        number = 1
    number = min(max(number, 1), pages)
    start = (number - 1) * size
    return Paged(names[start:start + size], number, pages, start + 1)


@dataclass
class AdminService:
    """What the admin pages reach of the server, filled by xmpp.modules.admin_web."""

    host: str
    site_name: str
    is_admin: Callable[[JID], bool]
    check_password: Callable[[JID, str], bool]
    users: Any  # xmpp.moduleapi.Users of the host
    roster_size: Callable[[str], int]
    sessions: Callable[[], list[Any]]  # session objects (describe(), close())
    invites: Any  # xmpp.modules.invites.InviteService
    upload_services: Callable[[], list[Any]]  # http_apps.file_share.service.FileShare
    history: MetricHistory
    logins: AdminSessions
    throttle: FailureThrottle
    clock: Callable[[], float]
    log: logging.Logger


def session_key(session: Any) -> str:
    """A session's handle in the pages' forms (valid while it lives)."""
    return format(id(session), "x")


def describe(session: Any) -> dict[str, Any]:
    from xmpp.admin import describe as admin_describe
    row = dict(admin_describe(session))
    row["key"] = session_key(session)
    return row


def live(service: AdminService) -> list[Any]:
    """The sessions not closed yet (a closed one may linger until its connection ends)."""
    return [session for session in service.sessions() if not getattr(session, "closed", False)]


def make_blueprint(service: AdminService, tokens: CsrfTokens) -> flask.Blueprint:
    blueprint = page_blueprint("admin_web")

    def render(template: str, status: int = 200, **context: Any) -> tuple[str, int]:
        context.setdefault("notice", flask.request.args.get("done"))
        csrf = tokens.issue(flask.g.admin_session) if "admin_session" in flask.g else ""
        return flask.render_template(template, site_name=service.site_name, csrf=csrf,
                                     admin=flask.g.get("admin"), **context), status

    def refuse(reason: str, status: int, headers: dict[str, str] | None = None) -> Any:
        body, _ = render("refused.html", reason=reason)
        return body, status, headers or {}

    def requires_admin(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            found = service.logins.resume(flask.request.cookies.get(COOKIE), service.clock())
            if found is None:
                if flask.request.method != "GET":
                    return refuse("Your admin session has ended. Log in again.", 401)
                return flask.redirect(flask.url_for(".login"))
            flask.g.admin_session, flask.g.admin = found
            if flask.request.method == "POST" and not tokens.valid(
                    flask.request.form.get("csrf_token"), flask.g.admin_session):
                return refuse("The form has expired or did not come from this site. "
                              "Reload the page and try again.", 403)
            return view(*args, **kwargs)
        return guarded

    def confirm_then(question: str, act: Callable[[], object], log: tuple[Any, ...],
                     endpoint: str, message: str, **args: Any) -> Any:
        """A destructive POST: the confirmation page until it comes back with
        `confirmed=yes`; then `act()`, logged (`log`: format and arguments) with
        the admin's JID, and back to `endpoint` saying `message`."""
        if flask.request.form.get("confirmed") != "yes":
            fields = {key: value for key, value in flask.request.form.items()
                      if key not in ("csrf_token", "confirmed")}
            return render("admin/confirm.html", question=question, fields=fields,
                          action=flask.request.path, back=flask.request.referrer or "")
        act()
        audit(*log)
        return done(endpoint, message, **args)

    def done(endpoint: str, message: str, **args: Any) -> flask.Response:
        return flask.redirect(flask.url_for(endpoint, done=message, **args), 303)

    def audit(action: str, *args: Any) -> None:
        service.log.info("Web admin %s: " + action, flask.g.admin, *args)

    # -- login ----------------------------------------------------------------------

    @blueprint.get("")
    @blueprint.get("/")
    def index() -> flask.Response:
        return flask.redirect(flask.url_for(".users"))

    def login_page(status: int = 200, **context: Any) -> flask.Response:
        nonce = request_nonce()
        body, _ = render("admin/login.html", login_csrf=tokens.issue(nonce), **context)
        return keep_nonce(flask.make_response(body, status), nonce)

    @blueprint.get("/login")
    def login() -> Any:
        return login_page()

    @blueprint.post("/login")
    def login_submit() -> Any:
        address = client_address()
        # A login that ends without success counts as failed (an expired form too).
        with service.throttle.attempt(address, service.clock) as attempt:
            if attempt.refused:
                return refuse(wait_text("Too many failed logins", attempt.wait), 429,
                              {"Retry-After": str(whole_seconds(attempt.wait))})
            if not nonce_token_valid(tokens):
                return refuse("The login form has expired or did not come from this site. "
                              "Reload the page and try again.", 403)
            text = flask.request.form.get("jid", "").strip()
            password = flask.request.form.get("password", "")
            try:
                jid = parse_jid(text if "@" in text else f"{text}@{service.host}").bare
            except InvalidJID:
                jid = None
            if jid is None or not jid.local or not service.check_password(jid, password):
                return login_page(401, error="Wrong address or password.", jid=text)
            attempt.succeeded()
        if not service.is_admin(jid):
            service.log.warning("Web admin login refused for %s: not an admin", jid)
            return refuse(f"{jid} is not an administrator of this server.", 403)
        _session_id, cookie = service.logins.open(str(jid), service.clock())
        service.log.info("Web admin login of %s from %s", jid, address)
        response = flask.redirect(flask.url_for(".users"), 303)
        response.set_cookie(COOKIE, cookie, secure=True, httponly=True, samesite="Strict",
                            path=flask.url_for(".index"))
        return response

    @blueprint.post("/logout")
    @requires_admin
    def logout() -> flask.Response:
        service.logins.close(flask.g.admin_session)
        audit("logged out")
        response = flask.redirect(flask.url_for(".login"), 303)
        response.delete_cookie(COOKIE, path=flask.url_for(".index"), secure=True,
                               httponly=True, samesite="Strict")
        return response

    # -- users ------------------------------------------------------------------------

    def storage_used() -> dict[str, int]:
        used: dict[str, int] = {}
        since = datetime.fromtimestamp(service.clock() - DAY, UTC)
        for share in service.upload_services():
            for row in share.store.usage(since):
                if row.uploader and row.uploader.endswith("@" + service.host):
                    local = row.uploader.rsplit("@", 1)[0]
                    used[local] = used.get(local, 0) + row.bytes
        return used

    @blueprint.get("/users")
    @requires_admin
    def users() -> Any:
        query = flask.request.args.get("q", "").strip().lower()
        names = sorted(name for name in service.users.list() if query in name.lower())
        shown = page_of(names, flask.request.args.get("page"))
        used = storage_used()
        rows = [{"name": name, "jid": f"{name}@{service.host}",
                 "roster": service.roster_size(name), "bytes": used.get(name, 0)}
                for name in shown.items]
        return render("admin/users.html", rows=rows, query=query, total=len(names),
                      host=service.host, paged=shown)

    def username_field() -> str | None:
        try:
            return nodeprep(flask.request.form.get("username", "").strip()) or None
        except InvalidJID:
            return None

    @blueprint.post("/users/create")
    @requires_admin
    def user_create() -> Any:
        username = username_field()
        password = flask.request.form.get("password", "")
        if username is None or not password:
            return refuse("A valid username and a password are needed.", 400)
        if service.users.exists(username):
            return refuse(f"The username {username} is already taken.", 409)
        service.users.create(username, password)
        audit("created user %s@%s", username, service.host)
        return done(".users", f"Created {username}@{service.host}", q=username)

    @blueprint.post("/users/password")
    @requires_admin
    def user_password() -> Any:
        username = username_field()
        password = flask.request.form.get("password", "")
        if username is None or not password or not service.users.exists(username):
            return refuse("No such user, or no new password given.", 400)
        jid = f"{username}@{service.host}"
        return confirm_then(f"Set a new password for {jid}?",
                            lambda: service.users.set_password(username, password),
                            ("reset the password of %s", jid), ".users",
                            f"New password set for {jid}", q=username)

    @blueprint.post("/users/delete")
    @requires_admin
    def user_delete() -> Any:
        username = username_field()
        if username is None or not service.users.exists(username):
            return refuse("No such user.", 404)
        jid = f"{username}@{service.host}"

        def delete() -> None:
            for session in live(service):
                if str(getattr(session, "jid", "") or "").startswith(f"{jid}/"):
                    session.close(StreamError("not-authorized", "Account deleted"))
            service.users.delete(username)

        return confirm_then(f"Delete the account {jid} and its data?", delete,
                            ("deleted user %s", jid), ".users", f"Deleted {jid}")

    # -- sessions ------------------------------------------------------------------------

    @blueprint.get("/sessions")
    @requires_admin
    def sessions() -> Any:
        rows = sorted((describe(session) for session in live(service)),
                      key=lambda row: (row.get("kind") or "", str(row.get("id"))))
        groups = {"Clients (c2s)": [r for r in rows if str(r.get("kind")).startswith("c2s")],
                  "Server links (s2s)": [r for r in rows if str(r.get("kind")).startswith("s2s")],
                  "Components": [r for r in rows if str(r.get("kind")).startswith("component")]}
        return render("admin/sessions.html", groups=groups)

    @blueprint.post("/sessions/disconnect")
    @requires_admin
    def session_disconnect() -> Any:
        key = flask.request.form.get("key", "")
        session = next((s for s in live(service) if session_key(s) == key), None)
        if session is None:
            return refuse("That session has already ended.", 404)
        row = describe(session)
        kind, name, address = row.get("kind"), row.get("id"), row.get("address")
        return confirm_then(
            f"Disconnect {kind} session {name or '-'} from {address}?",
            lambda: session.close(StreamError("policy-violation",
                                              "Disconnected by an administrator")),
            ("disconnected %s session %s from %s", kind, name, address), ".sessions",
            f"Disconnected {name or kind}")

    # -- uploads ---------------------------------------------------------------------------

    def find_share(host: str) -> Any | None:
        return next((s for s in service.upload_services() if s.host == host), None)

    @blueprint.get("/uploads")
    @requires_admin
    def uploads() -> Any:
        now = service.clock()
        since = datetime.fromtimestamp(now - DAY, UTC)
        until = datetime.fromtimestamp(now, UTC)
        services = []
        for share in service.upload_services():
            usage = share.store.usage(since)
            services.append({
                "host": share.host, "policy": share.policy,
                "total": next((r for r in usage if r.host == share.host and r.uploader is None),
                              None),
                "users": [r for r in usage if r.host == share.host and r.uploader],
                "files": share.store.created_until(share.host, until, 200)})
        return render("admin/uploads.html", services=services)

    @blueprint.post("/uploads/delete")
    @requires_admin
    def upload_delete() -> Any:
        host = flask.request.form.get("host", "")
        slot = flask.request.form.get("slot", "")
        share = find_share(host)
        record = share.store.get(host, slot) if share else None
        if record is None:
            return refuse("No such upload.", 404)
        return confirm_then(
            f"Delete the upload {record.filename} ({record.size} bytes) of {record.uploader}?",
            lambda: share.delete(slot),
            ("deleted upload %s (%s) of %s on %s", slot, record.filename, record.uploader, host),
            ".uploads", f"Deleted {record.filename}")

    # -- invites -----------------------------------------------------------------------------

    @blueprint.get("/invites")
    @requires_admin
    def invites() -> Any:
        pending = sorted(service.invites.pending_account_invites().items(),
                         key=lambda item: item[1].get("created_at", 0))
        rows = [{"token": token, "type": invite.get("type"), "jid": invite.get("jid"),
                 "url": invite.get("landing_page") or invite.get("uri"),
                 "expires": expiry_text(invite.get("expires"))} for token, invite in pending]
        return render("admin/invites.html", rows=rows)

    @blueprint.post("/invites/create")
    @requires_admin
    def invite_create() -> Any:
        username = None
        if flask.request.form.get("username", "").strip():
            username = username_field()
            if username is None:
                return refuse("That username contains characters that are not allowed.", 400)
        invite = service.invites.create_account(username, {"source": flask.g.admin})
        audit("created invite %s", invite["token"])
        return done(".invites", f"Invite created: {invite.get('landing_page') or invite['uri']}")

    @blueprint.post("/invites/revoke")
    @requires_admin
    def invite_revoke() -> Any:
        token = flask.request.form.get("token", "")
        if token not in service.invites.pending_account_invites():
            return refuse("No such invite.", 404)
        return confirm_then("Revoke this invite? Its link will stop working.",
                            lambda: service.invites.revoke(token), ("revoked invite %s", token),
                            ".invites", "Invite revoked")

    # -- metrics ---------------------------------------------------------------------------------

    @blueprint.get("/metrics")
    @requires_admin
    def metrics() -> Any:
        charts = [{"name": series.name, "last": series.last,
                   "svg": sparkline(series.points, series.name)}
                  for series in service.history.series()]
        return render("admin/metrics.html", charts=charts)

    return blueprint
