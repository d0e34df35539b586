"""Invites by ad-hoc command (Prosody's mod_invites_adhoc, XEP-0401):
"Create new contact invite" for local users (`allow_contact_invites`, else
admins only), registration allowed with it when `allow_user_invites` or the
user is an admin; "Create new account invite" for admins."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from xmpp.dataforms import Field, build_form
from xmpp.moduleapi import ModuleContext
from xmpp.modules.adhoc import (
    AdhocCommand,
    AdhocRequest,
    AdhocResult,
    add_command,
    is_admin,
)
from xmpp.modules.invites import invites_for

CONTACT_NODE = "urn:xmpp:invite#invite"
ACCOUNT_NODE = "urn:xmpp:invite#create-account"


def result_form(invite: dict[str, Any]) -> AdhocResult:
    fields = [Field("uri", label="Invite URI", values=[invite["uri"]]),
              Field("expire", label="Invite valid until", values=[
                  datetime.fromtimestamp(invite["expires"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")])]
    if invite.get("landing_page"):
        fields.insert(0, Field("landing-url", label="Invite web page",
                               values=[invite["landing_page"]]))
    return AdhocResult(form=build_form("result", fields, title="Your invite has been created"))


def setup(m: ModuleContext) -> None:
    invites = invites_for(m)
    allow_user_invites = m.config.get_bool("allow_user_invites", False)
    allow_contact_invites = m.config.get_bool("allow_contact_invites", True)

    def contact_invite(request: AdhocRequest) -> AdhocResult:
        if request.sender.domain != m.host.name:
            return AdhocResult(note=f"This command is only available to users of "
                                    f"{m.host.name}", note_type="error")
        may_register = allow_user_invites or is_admin(m, request.sender)
        return result_form(invites.create_contact(request.sender.local, may_register,
                                                  {"source": str(request.sender)}))

    def account_invite(request: AdhocRequest) -> AdhocResult:
        return result_form(invites.create_account(None, {"source": str(request.sender)}))

    add_command(m, AdhocCommand(CONTACT_NODE, "Create new contact invite", contact_invite,
                                "local_user" if allow_contact_invites else "admin"))
    add_command(m, AdhocCommand(ACCOUNT_NODE, "Create new account invite", account_invite,
                                "admin"))
