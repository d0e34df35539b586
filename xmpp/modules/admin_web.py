"""The web admin at `/admin` (after Prosody's community mod_admin_web and
ejabberd's web admin): users, live sessions, uploads, invites and the
`/metrics` figures over the last hour, for the JIDs in `admins` after a login
with their XMPP password (http_apps.web.admin).

Options: `site_name`; `vireo_admin_web_secret` (signs the session cookie and the
CSRF tokens; default: one made on first use and kept in the module's store, so
it is the same after a restart and in every worker); `vireo_admin_web_idle_timeout`
(seconds a login stays valid unused, 1800; logins are kept in the database,
store "admin_web_sessions", and the expired ones purged every few minutes);
`vireo_admin_web_sample_interval` (seconds between metric samples, 60). Failed
logins count against the address as SASL failures do
(`vireo_auth_failure_*`).
"""

from __future__ import annotations

from typing import Any

from http_apps.provider import HttpProvider
from http_apps.web import admin
from http_apps.web.admin_sessions import AdminSessions
from http_apps.web.csrf import CsrfTokens
from http_apps.web.sparklines import MetricHistory, totals
from storage.kept_secret import kept_secret
from xmpp.auth_throttle import failure_throttle
from xmpp.jid import JID
from xmpp.metrics import registry as metrics_registry
from xmpp.moduleapi import ModuleContext
from xmpp.modules.adhoc import is_admin
from xmpp.modules.invites import invites_for

#: Seconds between purges of expired logins (at most the idle timeout).
PURGE_INTERVAL = 300.0


def metric_history(m: ModuleContext) -> MetricHistory:
    """One sampler for the whole server, however many hosts load the module."""
    def start() -> MetricHistory:
        history = MetricHistory()
        interval = m.global_config.get_number("vireo_admin_web_sample_interval", 60.0, min=0.05)
        m.add_periodic(interval, lambda: history.record(m.now(), totals(metrics_registry())),
                       first_delay=0.0, what="Sampling metrics for the web admin")
        return history
    return m.shared("admin_web:metrics", start)


def setup(m: ModuleContext) -> None:
    config = m.config
    secret = kept_secret(config.get_str("vireo_admin_web_secret", None), m.open_store())
    rosters = m.typed_store("rosters")
    host = m.host.name

    def check_password(jid: JID, password: str) -> bool:
        users = m.users_of(jid.domain)
        return users is not None and users.exists(jid.local) and \
            users.check_password(jid.local, password)

    def upload_services() -> list[Any]:
        return [share for name, local in m.hosts().items()
                if "http_file_share" in local.modules
                and (share := m.shared(f"file_share:{name}", lambda: None)) is not None]

    idle = config.get_number("vireo_admin_web_idle_timeout", 1800.0, min=1)
    logins = AdminSessions(secret, idle, m.open_store("admin_web_sessions", "map"))
    m.add_periodic(min(idle, PURGE_INTERVAL), lambda: logins.purge(m.now()), first_delay=0.0,
                   what="Purging expired web admin logins")
    service = admin.AdminService(
        host=host, site_name=config.get_str("site_name", host),
        is_admin=lambda jid: is_admin(m, jid), check_password=check_password,
        users=m.users, roster_size=lambda user: len(rosters.get_roster(host, user)),
        sessions=lambda: m.service("sessions")(), invites=invites_for(m),
        upload_services=upload_services, history=metric_history(m),
        logins=logins,
        throttle=failure_throttle(config, f"admin_web:{m.host.name}"), clock=m.now, log=m.log)
    tokens = CsrfTokens(secret, salt=f"admin_web:{host}")
    m.provides("http", HttpProvider(
        name="admin_web", host=host, default_path="/admin", methods=("GET", "POST"), cors=False,
        make_blueprint=lambda: admin.make_blueprint(service, tokens)))
