"""The pure parts of the web pages: CSRF tokens, admin logins, metric history and
sparklines, the client list, the password policy, invite landing URLs, QR codes,
paging; and the pages' secret kept in the database."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from http_apps.web.admin import page_of
from http_apps.web.admin_sessions import MAX_SESSIONS, AdminSessions
from http_apps.web.clients import by_platform, load_clients
from http_apps.web.csrf import CsrfTokens
from http_apps.web.qr import qr_svg
from http_apps.web.signup import password_problem
from http_apps.web.sparklines import MAX_SERIES, MetricHistory, sparkline, totals
from storage.kept_secret import kept_secret
from storage.stores import StoreFactory
from tests.unit import storage_fixtures
from xmpp.config import load_config
from xmpp.modules.invites import InviteService, landing_page_template

db_url = storage_fixtures.db_url
db = storage_fixtures.db


class MapStore:
    """The map store's get/set/get_all, in a dict."""

    def __init__(self) -> None:
        self.data: dict = {}

    def get(self, user, key):
        return self.data.get((user, key))

    def set(self, user, key, value):
        if value is None:
            self.data.pop((user, key), None)
        else:
            self.data[user, key] = value

    def get_all(self, user):
        return {key: value for (owner, key), value in self.data.items() if owner == user}


def test_csrf_token_is_valid_only_for_its_binding_and_unforged():
    tokens = CsrfTokens("secret", salt="form")
    token = tokens.issue("session-1")
    assert tokens.valid(token, "session-1")
    assert not tokens.valid(token, "session-2")
    assert not tokens.valid(token + "x", "session-1")
    assert not tokens.valid(None, "session-1")
    assert not tokens.valid(token, None)
    assert not CsrfTokens("other", salt="form").valid(token, "session-1")
    assert not CsrfTokens("secret", salt="other").valid(token, "session-1")


def test_admin_login_is_refused_after_logout_idle_time_or_forgery():
    logins = AdminSessions("secret", idle=60, store=MapStore())
    session_id, cookie = logins.open("boss@example.com", now=0)
    assert logins.resume(cookie, now=30) == (session_id, "boss@example.com")
    assert logins.resume(cookie, now=85) is not None  # used at 30: still fresh
    assert logins.resume(cookie, now=200) is None  # idle too long, and forgotten
    assert logins.resume(cookie, now=201) is None
    session_id, cookie = logins.open("boss@example.com", now=300)
    logins.close(session_id)
    assert logins.resume(cookie, now=301) is None  # the replayed cookie after logout
    assert logins.resume(session_id, now=301) is None  # unsigned
    assert logins.resume(cookie[:-1] + "A", now=301) is None
    assert logins.resume(None, now=301) is None


def test_admin_logins_kept_are_bounded():
    logins = AdminSessions("secret", idle=60, store=MapStore())
    _, first = logins.open("boss@example.com", now=0)
    for _ in range(MAX_SESSIONS):
        logins.open("boss@example.com", now=0)
    assert logins.resume(first, now=1) is None


class CountingMapStore(MapStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def set(self, user, key, value):
        self.writes += 1
        super().set(user, key, value)


def test_admin_logins_are_shared_by_workers_and_outlive_a_restart():
    store = CountingMapStore()
    worker_a, worker_b = (AdminSessions("secret", idle=60, store=store) for _ in range(2))
    session_id, cookie = worker_a.open("boss@example.com", now=0)
    assert worker_b.resume(cookie, now=10) == (session_id, "boss@example.com")
    restarted = AdminSessions("secret", idle=60, store=store)
    assert restarted.resume(cookie, now=20) == (session_id, "boss@example.com")
    worker_a.close(session_id)
    assert worker_b.resume(cookie, now=21) is None


def test_admin_login_in_use_is_written_at_most_every_quarter_of_the_idle_time():
    store = CountingMapStore()
    logins = AdminSessions("secret", idle=60, store=store)
    _, cookie = logins.open("boss@example.com", now=0)
    writes = store.writes
    for second in range(14):
        assert logins.resume(cookie, now=second) is not None
    assert store.writes == writes
    assert logins.resume(cookie, now=15) is not None
    assert store.writes == writes + 1
    assert logins.resume(cookie, now=74) is not None  # touched at 15: still fresh


def test_expired_admin_logins_are_purged():
    store = MapStore()
    logins = AdminSessions("secret", idle=60, store=store)
    logins.open("old@example.com", now=0)
    logins.open("new@example.com", now=50)
    logins.purge(now=100)
    assert [entry["jid"] for entry in store.get_all(None).values()] == ["new@example.com"]


def test_users_are_paged():
    names = [f"u{i:04}" for i in range(1201)]
    first = page_of(names, None)
    assert (first.items[0], len(first.items), first.number, first.pages, first.first) == \
        ("u0000", 500, 1, 3, 1)
    last = page_of(names, "3")
    assert last.items == ["u1000", *names[1001:]] and last.first == 1001
    assert page_of(names, "99").number == 3
    assert page_of(names, "-4").number == 1
    assert page_of(names, "x").number == 1
    assert page_of([], "2").items == [] and page_of([], "2").pages == 1


def test_page_secret_is_made_once_and_kept_in_the_database(db):
    store = StoreFactory(db).open("example.com", "admin_web")
    secret = kept_secret(None, store)
    assert len(secret) >= 32
    assert kept_secret(None, StoreFactory(db).open("example.com", "admin_web")) == secret
    assert kept_secret("configured", store) == "configured"
    assert kept_secret(None, StoreFactory(db).open("example.com", "register_web")) != secret
    assert not store.add(None, "", {"secret": "another"})
    assert kept_secret(None, store) == secret


def test_metric_history_keeps_the_last_hour_per_series():
    history = MetricHistory(span=3600)
    for minute in range(120):
        history.record(minute * 60.0, {"a": float(minute)})
    (series,) = history.series()
    assert series.name == "a"
    assert series.points[0] == (3540.0, 59.0)
    assert series.last == 119.0


def test_metric_history_bounds_the_number_of_series():
    history = MetricHistory()
    history.record(0, {f"s{i}": 1.0 for i in range(MAX_SERIES + 50)})
    assert len(history.series()) == MAX_SERIES


def test_totals_sum_labels_and_skip_created_timestamps():
    registry = CollectorRegistry()
    counter = Counter("hits", "Hits", ["kind"], registry=registry)
    counter.labels("a").inc(2)
    counter.labels("b").inc(3)
    Gauge("level", "Level", registry=registry).set(7)
    assert totals(registry) == {"hits_total": 5.0, "level": 7.0}


def test_sparkline_scales_points_and_escapes_its_label():
    svg = sparkline([(0, 1.0), (30, 3.0), (60, 2.0)], "<x>")
    assert svg.startswith("<svg") and "<polyline" in svg
    assert 'points="0.0,38.0 100.0,2.0 200.0,20.0"' in svg
    assert "&lt;x&gt;: from 1 to 3" in svg and "<x>" not in svg
    assert "no data" in sparkline([], "empty")
    assert "<polyline" in sparkline([(5, 4.0)], "one")


def test_client_list_groups_clients_per_platform():
    clients = load_clients()
    assert clients and all(client.url.startswith("https://") for client in clients)
    platforms = by_platform(clients)
    assert {"Android", "iOS", "Linux", "Windows", "macOS", "Web"} <= set(platforms)
    assert any(client.preauth for client in platforms["Android"])


def test_password_policy():
    assert password_problem("long-enough", "long-enough", 8) is None
    assert "differ" in password_problem("long-enough", "long-enougH", 8)
    assert "at least 8" in password_problem("short", "short", 8)
    assert "at most" in password_problem("x" * 2000, "x" * 2000, 8)


def test_landing_page_uses_prosodys_template_and_only_for_registration_invites():
    store = MapStore()
    invites = InviteService("example.com", store, lambda: 1000.0,
                            landing_page="https://example.com/invites_page?{invite.token}")
    account = invites.create_account()
    assert account["landing_page"] == f"https://example.com/invites_page?{account['token']}"
    contact_only = invites.create_contact("alice", allow_registration=False)
    assert "landing_page" not in contact_only
    contact = invites.create_contact("alice", allow_registration=True)
    assert contact["landing_page"].endswith(contact["token"])
    assert invites.revoke(contact["token"])
    assert invites.get(contact["token"])[0] is None
    assert invites.get(contact["token"], "alice")[0] is None
    assert not invites.revoke(contact["token"])


def test_qr_code_is_inline_svg():
    svg = qr_svg("xmpp:example.com?register;preauth=abc", "QR code")
    assert svg.startswith("<svg") and "<?xml" not in svg
    assert "<title>QR code</title>" in svg and "<path" in svg


def test_landing_page_template_follows_the_invites_page_module(tmp_path):
    def template(text: str, modules: list[str]) -> str | None:
        path = tmp_path / "vireo.cfg.lua"
        path.write_text('https_ports = { 5281 }\nhttp_ports = { }\n' + text
                        + '\nVirtualHost "example.com"\n')
        return landing_page_template(load_config(path).host("example.com"), "example.com",
                                     modules)

    assert template("", []) is None
    assert template("", ["invites_page"]) == \
        "https://example.com:5281/invites_page?{invite.token}"
    assert template('http_paths = { invites_page = "/join" }', ["invites_page"]) == \
        "https://example.com:5281/join?{invite.token}"
    assert template("invites_page_external = true", ["invites_page"]) is None
    assert template('invites_page = "https://x.example/{invite.token}"', []) == \
        "https://x.example/{invite.token}"
