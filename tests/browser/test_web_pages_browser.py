"""The invite, sign-up and admin pages in a real browser (Debian's headless
Chromium through playwright-core, one launch for the module): follow an invite
link, sign up, log in with slixmpp as the new user; an admin logs in, finds
that user, resets the password, sees the new session appear and disconnects
it; a non-admin is refused; forged and missing CSRF tokens are refused. Each
page is shot at desktop and phone width under the test's temp dir and checked
non-blank. Everything is done by clicking and typing, without page scripts."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from tests.browser.page_driver import PageDriver, distinct_pixels
from tests.integration.clients import close, login
from tests.web_client import USERS, web_server

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
MODULES = ("register", "invites", "invites_register", "invites_page", "register_web",
           "admin_web")
WIDTHS = {"desktop": (1280, 800), "phone": (390, 844)}

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists() or shutil.which("node") is None
    or not (HERE / "node_modules" / "playwright-core").exists(),
    reason="needs Debian's chromium, node and `npm ci` in tests/browser (make test does it)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with web_server(tmp_path_factory.mktemp("webpages"), MODULES,
                    extra='site_name = "Vireo test"\n') as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    driver = PageDriver()
    yield driver
    driver.close()


#: Every visible form control has a label (or names itself), so screen readers say what it is.
UNLABELLED = ("[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]"
              ".filter(e => e.labels.length === 0 && !e.getAttribute('aria-label'))"
              ".map(e => e.name)")
#: Nothing wider than a phone's screen (tables stack, long links wrap).
OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"


def shoot(browser, shots: Path, name: str, context: str = "main") -> None:
    """The current page at each width, each checked for a non-blank render, labelled
    controls and no sideways scrolling."""
    assert browser("evaluate", context=context, script=UNLABELLED) == [], name
    for label, (width, height) in WIDTHS.items():
        browser("viewport", context=context, width=width, height=height)
        path = shots / f"{name}-{label}.png"
        browser("screenshot", context=context, path=str(path))
        assert distinct_pixels(path) > 20, path
        assert browser("evaluate", context=context, script=OVERFLOW) <= 0, (name, label)
    browser("viewport", context=context, **dict(zip(("width", "height"), WIDTHS["desktop"],
                                                    strict=True)))


def test_invite_sign_up_then_admin_resets_and_disconnects(server, browser, tmp_path):
    shots = tmp_path / "screenshots"
    shots.mkdir()
    made = server.admin("invite", "generate", "localhost")
    assert made.returncode == 0, made.stderr
    invite_url = made.stdout.strip()
    origin = f"https://localhost:{server.ports['https']}"
    assert invite_url.startswith(f"{origin}/invites_page?")

    # The invitee: the invite page, then the sign-up form, without JavaScript.
    browser("open", context="main", javaScript=False)
    assert browser("goto", url=invite_url) == 200
    assert "What is XMPP?" in browser("text", selector="main")
    assert browser("evaluate", script="document.querySelector('svg.qr') !== null")
    shoot(browser, shots, "invite")
    assert browser("click", selector="text=Create your account on the web") == 200
    shoot(browser, shots, "register")
    browser("fill", selector="#username", value="newbie")
    browser("fill", selector="#password", value="newbie-password")
    browser("fill", selector="#password_confirm", value="newbie-password")
    assert browser("click", selector="button[type=submit]") == 200
    assert browser("text", selector="#new-jid") == "newbie@localhost"
    shoot(browser, shots, "registered")
    server.users["newbie"] = "newbie-password"

    async def scenario() -> None:
        def call(op: str, **args):
            return asyncio.to_thread(browser, op, **args)

        first = await login(server, "newbie", resource="first")  # the account works
        await close(first)

        # The admin logs in, finds the user and resets the password (with confirmation).
        await call("open", context="admin")
        await call("goto", context="admin", url=f"{origin}/admin/")
        await asyncio.to_thread(shoot, browser, shots, "admin-login", "admin")
        await call("fill", context="admin", selector="#jid", value="boss@localhost")
        await call("fill", context="admin", selector="#password", value=USERS["boss"])
        assert await call("click", context="admin", selector="button[type=submit]") == 200
        await call("fill", context="admin", selector="#q", value="newb")
        assert await call("press", context="admin", selector="#q", key="Enter") == 200
        await asyncio.to_thread(shoot, browser, shots, "admin-users", "admin")
        assert "newbie@localhost" in await call("text", context="admin", selector="tbody")
        await call("fill", context="admin", selector="#pw-1", value="reset-password")
        await call("click", context="admin", selector="text=Reset password")
        assert "newbie@localhost" in await call("text", context="admin", selector="#question")
        await asyncio.to_thread(shoot, browser, shots, "admin-confirm", "admin")
        assert await call("click", context="admin", selector="#confirm") == 200
        assert "New password set" in await call("text", context="admin", selector="[role=status]")

        # The user logs in with the new password; the admin sees the session and ends it.
        server.users["newbie"] = "reset-password"
        client = await login(server, "newbie", resource="phone")
        await call("goto", context="admin", url=f"{origin}/admin/sessions")
        await asyncio.to_thread(shoot, browser, shots, "admin-sessions", "admin")
        assert "newbie@localhost/phone" in await call("text", context="admin", selector="main")
        await call("click", context="admin",
                   selector="button[aria-label='Disconnect newbie@localhost/phone']")
        assert await call("click", context="admin", selector="#confirm") == 200
        await asyncio.wait_for(client.ended, 15)
        assert "Disconnected newbie@localhost/phone" in await call(
            "text", context="admin", selector="[role=status]")
        await call("goto", context="admin", url=f"{origin}/admin/sessions")
        assert await call("evaluate", context="admin", script=(
            "document.querySelector(\"button[aria-label='Disconnect newbie@localhost/phone']\")"
            " === null"))
        for page in ("invites", "uploads", "metrics"):
            assert await call("goto", context="admin", url=f"{origin}/admin/{page}") == 200
            await asyncio.to_thread(shoot, browser, shots, f"admin-{page}", "admin")

        # A forged, then a missing CSRF token: refused, nothing created.
        token_input = ("document.querySelector('form[action$=\"/users/create\"] "
                       "input[name=csrf_token]')")
        for tamper in (f"{token_input}.value = 'forged'", f"{token_input}.remove()"):
            await call("goto", context="admin", url=f"{origin}/admin/users")
            await call("evaluate", context="admin", script=tamper)
            await call("fill", context="admin", selector="#new-username", value="forged")
            await call("fill", context="admin", selector="#new-password", value="forged-pw")
            assert await call("click", context="admin", selector="text=Create user") == 403
        await call("goto", context="admin", url=f"{origin}/admin/users?q=forged")
        assert "forged@localhost" not in await call("text", context="admin", selector="main")

        # A non-admin with the right password is refused.
        await call("open", context="stranger")
        await call("goto", context="stranger", url=f"{origin}/admin/login")
        await call("fill", context="stranger", selector="#jid", value="ann@localhost")
        await call("fill", context="stranger", selector="#password", value=USERS["ann"])
        assert await call("click", context="stranger", selector="button[type=submit]") == 403
        assert "not an administrator" in await call("text", context="stranger",
                                                    selector="main")
        assert await call("goto", context="stranger", url=f"{origin}/admin/users") == 200
        assert "/admin/login" in await call("url", context="stranger")

    asyncio.run(asyncio.wait_for(scenario(), 180))
    assert len(list(shots.glob("*.png"))) == 2 * 10
