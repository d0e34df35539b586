"""Invitations (Prosody's mod_invites): tokens that let someone register an
account (XEP-0401) or become a user's contact (XEP-0379), valid for
`invite_expiry` seconds (a week).

Stored as Prosody does, in the map store "invite_token": the host's own
entries (user None) are invites that allow registration, token -> invite;
a user's entries are their contact invites, token -> expiry time.

Other modules reach the service with `invites_for(m)`; `app.py invite
generate` builds one on the store directly (prosodyctl mod_invites).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from http_apps.urls import http_url
from xmpp.moduleapi import ModuleContext

STORE = "invite_token"
DEFAULT_EXPIRY = 86400 * 7  # Prosody's invite_expiry
RESET_EXPIRY = 86400


@dataclass
class Invite:
    """A valid invite, as `InviteService.get` found it."""

    token: str
    type: str  # "register" or "roster"
    username: str | None  # the inviter for a contact invite, else the reserved name
    inviter: str | None
    uri: str
    additional_data: dict[str, Any] | None
    reusable: bool = False


class InviteService:
    """Invite tokens of one host, on a map store."""

    def __init__(self, host: str, store: Any, clock: Callable[[], float],
                 expiry: float = DEFAULT_EXPIRY, landing_page: str | None = None) -> None:
        self.host = host
        self.store = store
        self.clock = clock
        self.expiry = expiry
        self.landing_page = landing_page  # `invites_page`: "https://.../{token}"

    def _uri(self, action: str, jid: str, token: str, params: str | None = None) -> str:
        query = f"{action};preauth={token}" + (f";{params}" if params else "")
        return f"xmpp:{quote(jid, safe='@')}?{query}"

    def _create(self, action: str, jid: str, allow_registration: bool,
                additional_data: dict[str, Any] | None, ttl: float | None,
                reusable: bool = False) -> dict[str, Any]:
        token = secrets.token_urlsafe(12)
        created = int(self.clock())
        expires = int(created + (ttl or self.expiry))
        params = "ibr=y" if action == "roster" and allow_registration else None
        invite = {"type": action, "jid": jid, "token": token,
                  "allow_registration": allow_registration,
                  "additional_data": additional_data, "uri": self._uri(action, jid, token, params),
                  "created_at": created, "expires": expires, "reusable": reusable}
        if self.landing_page and allow_registration:
            # Prosody's template variables ({token} kept from earlier Vireo configs);
            # a contact-only invite has no page, as in Prosody.
            invite["landing_page"] = (self.landing_page.replace("{invite.token}", token)
                                      .replace("{token}", token).replace("{host}", self.host))
        if allow_registration:
            self.store.set(None, token, invite)
        if action == "roster":
            self.store.set(jid.split("@", 1)[0], token, expires)
        return invite

    def create_account(self, username: str | None = None,
                       additional_data: dict[str, Any] | None = None,
                       ttl: float | None = None) -> dict[str, Any]:
        """An invite to register an account (the name reserved when given)."""
        jid = f"{username}@{self.host}" if username else self.host
        return self._create("register", jid, True, additional_data, ttl)

    def create_account_reset(self, username: str, ttl: float | None = None) -> dict[str, Any]:
        """An invite to set a new password for an existing account."""
        return self.create_account(username, {"allow_reset": username}, ttl or RESET_EXPIRY)

    def create_contact(self, username: str, allow_registration: bool,
                       additional_data: dict[str, Any] | None = None,
                       ttl: float | None = None) -> dict[str, Any]:
        """An invite to become `username`'s contact (and to register, if allowed)."""
        return self._create("roster", f"{username}@{self.host}", allow_registration,
                            additional_data, ttl)

    def get(self, token: str | None, username: str | None = None) -> tuple[Invite | None, str]:
        """(the invite, "") or (None, why): "no-token", "token-invalid", "token-expired".
        With `username`, the token must be that user's contact invite."""
        if not token:
            return None, "no-token"
        info = self.store.get(None, token)
        inviter = None
        if username:
            valid_until = self.store.get(username, token)
        else:
            valid_until = info and info.get("expires")
            if info and info.get("type") == "roster":
                username = inviter = info["jid"].split("@", 1)[0]
        if not valid_until:
            return None, "token-invalid"
        if self.clock() > valid_until:
            return None, "token-expired"
        reserved = None
        if info and info.get("type") == "register" and "@" in info.get("jid", ""):
            reserved = info["jid"].split("@", 1)[0]
        return Invite(token=token, type=(info or {}).get("type", "roster"),
                      username=username or reserved, inviter=inviter,
                      uri=(info or {}).get("uri") or self._uri("roster",
                                                                 f"{username}@{self.host}",
                                                                 token),
                      additional_data=(info or {}).get("additional_data"),
                      reusable=bool((info or {}).get("reusable"))), ""

    def use(self, invite: Invite) -> None:
        """Spend a one-time invite."""
        if invite.reusable:
            return
        if invite.username and invite.type == "roster":
            self.store.set(invite.username, invite.token, None)
        self.store.set(None, invite.token, None)

    def revoke(self, token: str) -> bool:
        """Delete an invite (the web admin); False when there was none."""
        info = self.store.get(None, token)
        if not isinstance(info, dict):
            return False
        if info.get("type") == "roster":
            self.store.set(info["jid"].split("@", 1)[0], token, None)
        self.store.set(None, token, None)
        return True

    def pending_account_invites(self) -> dict[str, dict[str, Any]]:
        now = self.clock()
        return {token: invite for token, invite in self.store.get_all(None).items()
                if isinstance(invite, dict) and invite.get("expires", 0) > now}


def landing_page_template(config: Any, host: str, modules: list[str]) -> str | None:
    """`invites_page`, else the page mod_invites_page serves when the host loads it
    (Prosody's default: its URL followed by "?{invite.token}"; none when
    `invites_page_external` says the page is elsewhere)."""
    template = config.get_str("invites_page", None)
    if template is None and "invites_page" in modules \
            and not config.get_bool("invites_page_external", False):
        template = http_url(config.config, host, "invites_page") + "?{invite.token}"
    return template


def service_for_store(host: str, store: Any, config: Any, clock: Callable[[], float],
                      modules: list[str] = ()) -> InviteService:
    return InviteService(host, store, clock,
                         expiry=config.get_number("invite_expiry", DEFAULT_EXPIRY, min=1),
                         landing_page=landing_page_template(config, host, list(modules)))


def invites_for(m: ModuleContext) -> InviteService:
    """The invite service of the module's host (loads mod_invites there)."""
    m.depends("invites")
    return m.shared(f"invites:{m.host.name}", lambda: service_for_store(
        m.host.name, m.open_store(STORE, "map"), m.config, m.now, m.host.modules))


def setup(m: ModuleContext) -> None:
    invites_for(m)
