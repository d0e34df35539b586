"""Invite tokens (mod_invites) on a map store, with a clock the test moves."""

from __future__ import annotations

from typing import Any

from xmpp.modules.invites import InviteService


class MemoryMap:
    """storage.stores.MapStore's interface, in a dict."""

    def __init__(self) -> None:
        self.data: dict[tuple[str | None, str], Any] = {}

    def get(self, user: str | None, key: str) -> Any:
        return self.data.get((user, key))

    def set(self, user: str | None, key: str, value: Any) -> None:
        if value is None:
            self.data.pop((user, key), None)
        else:
            self.data[(user, key)] = value

    def get_all(self, user: str | None) -> dict[str, Any]:
        return {key: value for (owner, key), value in self.data.items() if owner == user}


def service(now: list[float]) -> InviteService:
    return InviteService("example.com", MemoryMap(), lambda: now[0], expiry=3600,
                         landing_page="https://example.com/invite/{token}")


def test_account_invite_expires_and_is_spent_once() -> None:
    now = [1000.0]
    invites = service(now)
    made = invites.create_account()
    assert made["uri"] == f"xmpp:example.com?register;preauth={made['token']}"
    assert made["landing_page"] == f"https://example.com/invite/{made['token']}"
    invite, why = invites.get(made["token"])
    assert (invite.type, invite.username, why) == ("register", None, "")
    assert list(invites.pending_account_invites()) == [made["token"]]
    now[0] += 3601
    assert invites.get(made["token"]) == (None, "token-expired")
    assert invites.pending_account_invites() == {}
    now[0] = 1000.0
    invites.use(invite)
    assert invites.get(made["token"]) == (None, "token-invalid")
    assert invites.get(None) == (None, "no-token")


def test_contact_invites() -> None:
    invites = service([0.0])
    plain = invites.create_contact("ann", allow_registration=False)
    assert plain["uri"] == f"xmpp:ann@example.com?roster;preauth={plain['token']}"
    assert invites.get(plain["token"]) == (None, "token-invalid")  # no registration with it
    invite, _ = invites.get(plain["token"], "ann")
    assert invite.type == "roster"
    with_ibr = invites.create_contact("ann", allow_registration=True)
    assert with_ibr["uri"].endswith(";ibr=y")
    invite, _ = invites.get(with_ibr["token"])
    assert (invite.inviter, invite.username) == ("ann", "ann")
    invites.use(invite)
    assert invites.get(with_ibr["token"], "ann") == (None, "token-invalid")


def test_reset_invite_reserves_the_name() -> None:
    invites = service([0.0])
    made = invites.create_account_reset("bob")
    invite, _ = invites.get(made["token"])
    assert invite.username == "bob"
    assert invite.additional_data == {"allow_reset": "bob"}
