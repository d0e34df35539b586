"""Invite page, web sign-up and web admin over real HTTP(S), for bad input:
expired and reused invites, forbidden usernames, a flood of sign-ups from one
address, forged or missing CSRF tokens, a non-admin, and an admin cookie
replayed after logout."""

from __future__ import annotations

import html
import re
import subprocess
import sys
import time

import pytest
from slixmpp import JID

from tests.integration.clients import can_login, close, login, run
from tests.integration.server_fixture import ROOT
from tests.web_client import USERS, WebClient, path_of, web_server

MODULES = ("register", "invites", "invites_adhoc", "invites_register", "invites_page",
           "register_web", "admin_web")
FLOOD = 10_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with web_server(tmp_path_factory.mktemp("web"), MODULES,
                    extra="vireo_register_web_attempts = 20\n"
                          "vireo_admin_web_sample_interval = 0.2\n",
                    host_extra='Component "upload.localhost" "http_file_share"\n'
                               '    http_host = "127.0.0.1"\n') as server:
        yield server


def invite_url(server, *args: str) -> str:
    made = server.admin("invite", "generate", "localhost", *args)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


def web(server, https: bool = False) -> WebClient:
    return WebClient(server.ports["https" if https else "http"], https=https)


def sign_up(client: WebClient, token: str, username: str, password: str,
            confirm: str | None = None):
    form = client.get(f"/register?t={token}")
    assert form.status == 200, form.text
    return client.post(f"/register?t={token}", {
        "csrf_token": form.field("csrf_token"), "t": token, "username": username,
        "password": password, "password_confirm": password if confirm is None else confirm})


def test_generated_invite_links_to_the_page_with_qr_code_and_clients(server):
    url = invite_url(server)
    assert re.fullmatch(rf"https?://localhost:{server.ports['https']}/invites_page\?[\w-]+",
                        url), url
    client = web(server)
    page = client.get(path_of(url))
    assert page.status == 200
    assert "What is XMPP?" in page.text
    assert re.search(r'href="xmpp:localhost\?register;preauth=[\w-]+"', page.text)
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in page.text and "<path" in page.text
    assert "Conversations" in page.text and "Android" in page.text
    assert "Link" in page.headers and "frame-ancestors 'none'" in \
        page.headers["Content-Security-Policy"]


def test_sign_up_creates_the_account_once_and_the_invite_is_spent(server):
    token = path_of(invite_url(server)).split("?", 1)[1]
    client = web(server)
    done = sign_up(client, token, "newbie", "newbie-password")
    assert done.status == 200, done.text
    assert "newbie@localhost" in done.text
    assert can_login(server, "newbie", "newbie-password")
    again = web(server).get(f"/register?t={token}")
    assert again.status == 404 and "already been used" in again.text
    assert web(server).get(f"/invites_page?{token}").status == 404


def test_contact_invite_from_adhoc_links_to_the_page_and_signs_up_as_a_mutual_contact(server):
    async def scenario():
        boss = await login(server, "boss", plugins=("xep_0030", "xep_0050", "xep_0004"))
        iq = await boss["xep_0050"].send_command(JID("localhost"), "urn:xmpp:invite#invite")
        values = iq["command"]["form"].get_values()
        url = values["landing-url"]
        assert url.startswith(f"https://localhost:{server.ports['https']}/invites_page?")
        token = url.split("?", 1)[1]
        client = web(server)
        page = client.get(path_of(url))
        assert page.status == 200 and "Invited by <strong>boss</strong>" in page.text
        assert sign_up(client, token, "pal", "pal-password").status == 200
        server.users["pal"] = "pal-password"
        pal = await login(server, "pal")
        roster = await pal.get_roster()
        assert roster["roster"]["items"][JID("boss@localhost")]["subscription"] == "both"
        boss_roster = await boss.get_roster()
        assert boss_roster["roster"]["items"][JID("pal@localhost")]["subscription"] == "both"
        await close(boss, pal)

    run(scenario())


def test_sign_up_refuses_bad_names_taken_names_and_weak_passwords(server):
    token = path_of(invite_url(server)).split("?", 1)[1]
    client = web(server)
    bad = sign_up(client, token, "no@pe", "long-enough-pw")
    assert bad.status == 400 and "not allowed" in bad.text
    spaced = sign_up(client, token, "two words", "long-enough-pw")
    assert spaced.status == 400 and "not allowed" in spaced.text
    taken = sign_up(client, token, "ann", "long-enough-pw")
    assert taken.status == 409 and "already taken" in taken.text
    short = sign_up(client, token, "shorty", "short")
    assert short.status == 400 and "at least 8 characters" in short.text
    differ = sign_up(client, token, "shorty", "long-enough-pw", "other-long-pw")
    assert differ.status == 400 and "differ" in differ.text
    assert not can_login(server, "shorty", "long-enough-pw")


def test_expired_invite_is_refused(server, tmp_path):
    # invite_expiry applies when an invite is made: this one, from a copy of the
    # config with 1 second, expires while the server runs.
    short = tmp_path / "short.cfg.lua"
    short.write_text(server.config_path.read_text().replace(
        'VirtualHost "localhost"', 'invite_expiry = 1\nVirtualHost "localhost"'))
    made = subprocess.run([sys.executable, str(ROOT / "app.py"), "-c", str(short), "invite",
                           "generate", "localhost"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().split("?", 1)[1]
    deadline = time.monotonic() + 10
    page = web(server).get(f"/invites_page?{token}")
    while page.status == 200 and time.monotonic() < deadline:
        time.sleep(0.2)  # no event says a second has passed on the server's clock
        page = web(server).get(f"/invites_page?{token}")
    assert page.status == 410 and "expired" in page.text
    assert web(server).get(f"/register?t={token}").status == 410


def test_forged_and_missing_csrf_tokens_are_refused(server):
    token = path_of(invite_url(server)).split("?", 1)[1]
    client = web(server)
    form = client.get(f"/register?t={token}")
    fields = {"t": token, "username": "forger", "password": "forger-password",
              "password_confirm": "forger-password"}
    missing = client.post("/register", fields)
    assert missing.status == 403 and "did not come from this site" in missing.text
    forged = client.post("/register", {**fields, "csrf_token": form.field("csrf_token") + "x"})
    assert forged.status == 403
    stolen = web(server).post("/register", {**fields, "csrf_token": form.field("csrf_token")})
    assert stolen.status == 403  # a token without the browser's cookie is worth nothing
    assert not can_login(server, "forger", "forger-password")


def test_ten_thousand_sign_ups_from_one_address_are_refused_with_retry_after(server):
    token = path_of(invite_url(server)).split("?", 1)[1]
    # An address of its own, so the other tests' sign-ups do not count.
    client = WebClient(server.ports["http"], source="127.0.0.7")
    form = client.get(f"/register?t={token}")
    fields = {"csrf_token": form.field("csrf_token"), "t": token, "username": "x y",
              "password": "flood-password", "password_confirm": "flood-password"}
    started = time.monotonic()
    pages = client.post_many("/register", fields, FLOOD)
    elapsed = time.monotonic() - started
    statuses: dict[int, int] = {}
    for page in pages:
        statuses[page.status] = statuses.get(page.status, 0) + 1
    last = pages[-1]
    assert statuses.get(400) == 20, statuses  # the allowed attempts, then only 429
    assert statuses.get(429) == FLOOD - 20, statuses
    assert int(last.headers["Retry-After"]) >= 1
    assert "Too many sign-up attempts" in last.text
    assert elapsed < 90, elapsed  # about 30 s on a loaded 2-core machine
    # The server still answers others.
    assert web(server).get(f"/invites_page?{token}").status == 200


def admin_login(client: WebClient, jid: str, password: str):
    form = client.get("/admin/login")
    return client.post("/admin/login", {"csrf_token": form.field("csrf_token"), "jid": jid,
                                        "password": password})


def test_admin_login_form_refuses_forged_and_missing_csrf_tokens(server):
    client = web(server, https=True)
    form = client.get("/admin/login")
    fields = {"jid": "boss@localhost", "password": USERS["boss"]}
    missing = client.post("/admin/login", fields)
    assert missing.status == 403 and "did not come from this site" in missing.text
    forged = client.post("/admin/login", {**fields, "csrf_token": form.field("csrf_token") + "x"})
    assert forged.status == 403
    # Another site's page posting its own token lacks this browser's nonce cookie.
    stolen = web(server, https=True).post("/admin/login", {
        **fields, "csrf_token": form.field("csrf_token")})
    assert stolen.status == 403
    assert "vireo_admin" not in client.cookies
    assert admin_login(client, "boss@localhost", USERS["boss"]).status == 303


def test_admin_pages_need_an_admin_login(server):
    client = web(server, https=True)
    assert client.get("/admin/users").status == 302
    wrong = admin_login(client, "boss@localhost", "not-the-password")
    assert wrong.status == 401 and "Wrong address or password" in wrong.text
    refused = admin_login(client, "ann@localhost", server.users["ann"])
    assert refused.status == 403 and "not an administrator" in refused.text
    assert "vireo_admin" not in client.cookies


def test_admin_cookie_replayed_after_logout_is_refused(server):
    client = web(server, https=True)
    login = admin_login(client, "boss@localhost", USERS["boss"])
    assert login.status == 303
    cookie_header = login.headers["Set-Cookie"]
    for flag in ("Secure", "HttpOnly", "SameSite=Strict"):
        assert flag in cookie_header, cookie_header
    saved = dict(client.cookies)
    users = client.get("/admin/users")
    assert users.status == 200 and "ann@localhost" in users.text
    out = client.post("/admin/logout", {"csrf_token": users.field("csrf_token")})
    assert out.status == 303
    replay = web(server, https=True)
    assert replay.request("GET", "/admin/users", cookies=saved).status == 302
    posted = replay.request("POST", "/admin/users/create", {
        "csrf_token": users.field("csrf_token"), "username": "sneaky", "password": "pw"},
        cookies=saved)
    assert posted.status == 401 and "session has ended" in posted.text


def test_admin_actions_ask_for_confirmation_and_refuse_forged_csrf(server):
    client = web(server, https=True)
    assert admin_login(client, "boss@localhost", USERS["boss"]).status == 303
    users = client.get("/admin/users?q=ann")
    csrf = users.field("csrf_token")
    forged = client.post("/admin/users/delete", {"csrf_token": csrf[:-2] + "zz",
                                                 "username": "ann"})
    assert forged.status == 403
    missing = client.post("/admin/users/delete", {"username": "ann"})
    assert missing.status == 403
    asked = client.post("/admin/users/password", {"csrf_token": csrf, "username": "ann",
                                                  "password": "ann-new-password"})
    assert asked.status == 200 and "Please confirm" in asked.text
    assert can_login(server, "ann", server.users["ann"])  # nothing done yet
    done = client.post("/admin/users/password", {
        "csrf_token": asked.field("csrf_token"), "username": "ann",
        "password": "ann-new-password", "confirmed": "yes"})
    assert done.status == 303
    assert can_login(server, "ann", "ann-new-password")
    server.users["ann"] = "ann-new-password"
    assert "reset the password of ann@localhost" in server.log_path.read_text()
    assert "boss@localhost" in server.log_path.read_text()
    metrics = client.get("/admin/metrics")
    assert metrics.status == 200 and "<polyline" in metrics.text
    for page in ("/admin/sessions", "/admin/uploads", "/admin/invites"):
        assert client.get(page).status == 200, page


def test_admin_sees_uploads_with_quota_use_and_deletes_one(server):
    async def upload() -> str:
        ann = await login(server, "ann", plugins=("xep_0030", "xep_0363"))
        iq = await ann["xep_0363"].request_slot(JID("upload.localhost"), "notes.txt", 11,
                                                "text/plain", timeout=10)
        slot = iq["http_upload_slot"]
        await close(ann)
        headers = {h["name"]: h["value"] for h in slot["put"]["headers"]}
        put = WebClient(server.ports["https"], https=True, host="127.0.0.1").request(
            "PUT", path_of(slot["put"]["url"]), body=b"hello world",
            headers={**headers, "Content-Type": "text/plain"})
        assert put.status == 201, put.text
        return slot["get"]["url"]

    url = run(upload())
    client = web(server, https=True)
    assert admin_login(client, "boss@localhost", USERS["boss"]).status == 303
    page = client.get("/admin/uploads")
    assert page.status == 200
    assert "upload.localhost" in page.text and "notes.txt" in page.text
    assert "ann@localhost" in page.text and "11 B" in page.text
    users = client.get("/admin/users?q=ann")
    assert re.search(r'data-label="Storage">11 B', users.text), users.text
    slot = re.search(r'name="slot" value="([^"]+)"', page.text).group(1)
    asked = client.post("/admin/uploads/delete", {
        "csrf_token": page.field("csrf_token"), "host": "upload.localhost", "slot": slot})
    assert asked.status == 200 and "notes.txt" in asked.text and "Please confirm" in asked.text
    done = client.post("/admin/uploads/delete", {
        "csrf_token": asked.field("csrf_token"), "host": "upload.localhost", "slot": slot,
        "confirmed": "yes"})
    assert done.status == 303
    assert "notes.txt" not in client.get("/admin/uploads").text
    fetched = WebClient(server.ports["https"], https=True, host="127.0.0.1").get(path_of(url))
    assert fetched.status in (404, 410)
    assert "deleted upload" in server.log_path.read_text()


def reconnected(old: WebClient, new: WebClient) -> WebClient:
    """`new` (a connection to the restarted server) with `old`'s cookies."""
    new.cookies.update(old.cookies)
    return new


def test_admin_login_and_sign_up_form_outlive_a_restart(tmp_path):
    """The secrets and the admin logins are in the database, not in the
    process: a cookie and a form served before a restart still work after it,
    and a logout is still honoured."""
    with web_server(tmp_path, MODULES) as server:
        admin = web(server, https=True)
        assert admin_login(admin, "boss@localhost", USERS["boss"]).status == 303
        token = path_of(invite_url(server)).split("?", 1)[1]
        signer = web(server)
        form = signer.get(f"/register?t={token}")
        admin.close()
        signer.close()
        assert server.stop() == 0
        server.start()
        admin = reconnected(admin, web(server, https=True))
        users = admin.get("/admin/users")
        assert users.status == 200 and "ann@localhost" in users.text
        signer = reconnected(signer, web(server))
        done = signer.post(f"/register?t={token}", {
            "csrf_token": form.field("csrf_token"), "t": token, "username": "later",
            "password": "later-password", "password_confirm": "later-password"})
        assert done.status == 200, done.text
        saved = dict(admin.cookies)
        assert admin.post("/admin/logout", {"csrf_token": users.field("csrf_token")}).status \
            == 303
        admin.close()
        signer.close()
        assert server.stop() == 0
        server.start()
        assert web(server, https=True).request("GET", "/admin/users", cookies=saved).status \
            == 302


def test_admin_users_page_pages_beyond_500_users(tmp_path):
    with web_server(tmp_path, MODULES) as server:
        server.create_users({f"user{number:03}": "user-password" for number in range(530)})
        client = web(server, https=True)
        assert admin_login(client, "boss@localhost", USERS["boss"]).status == 303
        first = client.get("/admin/users")
        assert "500 of 532 shown" in first.text and "user499@localhost" not in first.text
        following = re.search(r'<a rel="next" href="([^"]+)"', first.text)
        assert following, first.text
        second = client.get(html.unescape(following.group(1)))
        assert second.status == 200 and "32 of 532 shown" in second.text
        assert "user529@localhost" in second.text and "user000@localhost" not in second.text
        assert '<a rel="prev"' in second.text and '<a rel="next"' not in second.text


def test_two_processes_on_one_database_share_admin_logins_and_form_tokens(tmp_path):
    """As `run --workers 2` does: whichever process answers, a login made in
    one is good in the other, a logout in one holds in the other, and a sign-up
    form served by one is accepted by the other."""
    shared = f'storage = "sql"\nsql = {{ driver = "SQLite3", database = "{tmp_path / "db"}" }}\n'
    with web_server(tmp_path / "one", MODULES, database=shared) as one, \
            web_server(tmp_path / "two", MODULES, database=shared) as two:
        admin = web(one, https=True)
        assert admin_login(admin, "boss@localhost", USERS["boss"]).status == 303
        saved = dict(admin.cookies)
        elsewhere = web(two, https=True)
        elsewhere.cookies.update(saved)
        users = elsewhere.get("/admin/users")
        assert users.status == 200 and "ann@localhost" in users.text
        assert elsewhere.post("/admin/logout", {"csrf_token": users.field("csrf_token")}) \
            .status == 303
        assert web(one, https=True).request("GET", "/admin/users", cookies=saved).status == 302
        token = path_of(invite_url(one)).split("?", 1)[1]
        signer = web(one)
        form = signer.get(f"/register?t={token}")
        other = web(two)
        other.cookies.update(signer.cookies)
        done = other.post(f"/register?t={token}", {
            "csrf_token": form.field("csrf_token"), "t": token, "username": "across",
            "password": "across-password", "password_confirm": "across-password"})
        assert done.status == 200, done.text
        for client in (admin, elsewhere, signer, other):
            client.close()  # a server waits for open keep-alive connections when stopping
