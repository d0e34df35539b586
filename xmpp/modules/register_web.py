"""Sign-up on the web (Prosody's community mod_register_web and
mod_invites_register_web): `/register?t=TOKEN` (the invite page links there)
lets someone holding an invite that allows registration choose a username and
password. Accounts are created by mod_register's code (xmpp.modules.register),
so everything in-band registration does happens: `user-registering`,
`user-created`, `user-registered`, the invite spent, a contact invite's
mutual subscription.

Options: `site_name`; `password_policy = { length = N }` (Prosody's
mod_password_policy, minimum 8); `vireo_register_web_secret` (signs the forms'
CSRF tokens; default: one made on first use and kept in the module's store, so
a form stays valid across a restart and whichever worker answers its post);
Vireo's per-address limit on sign-up attempts, `vireo_register_web_attempts`
(5) per `vireo_register_web_window` seconds (600), each attempt beyond
doubling the wait from `vireo_register_web_delay` (60 s) up to an hour.

The attempt counts are kept in memory, per process: a restart forgets them,
and with `app.py run --workers N` each worker counts on its own (an address
gets at most N times the attempts). They are only a brake on floods: every
sign-up needs a valid invite anyway.
"""

from __future__ import annotations

from http_apps.provider import HttpProvider
from http_apps.web import signup
from http_apps.web.csrf import CsrfTokens
from storage.kept_secret import kept_secret
from xmpp.auth_throttle import FailureThrottle
from xmpp.moduleapi import ModuleContext
from xmpp.modules.invites import invites_for
from xmpp.modules.register import registration_for
from xmpp.recent_events import recent_events

MAX_DELAY = 3600.0


def setup(m: ModuleContext) -> None:
    invites = invites_for(m)
    m.depends("invites_register")
    registration = registration_for(m)
    config = m.config
    policy = config.get("password_policy", None)
    min_length = signup.DEFAULT_MIN_LENGTH
    if isinstance(policy, dict) and isinstance(policy.get("length"), int | float):
        min_length = max(1, int(policy["length"]))
    delay = config.get_number("vireo_register_web_delay", 60.0, min=0)
    service = signup.SignupService(
        host=m.host.name, site_name=config.get_str("site_name", m.host.name),
        invites=invites, create=registration.create, clock=m.now,
        throttle=FailureThrottle(
            max_failures=config.get_int("vireo_register_web_attempts", 5, min=1),
            window=config.get_number("vireo_register_web_window", 600.0, min=1),
            delay=delay, max_delay=max(MAX_DELAY, delay),
            events=recent_events(config, f"register_web:{m.host.name}")),
        min_password_length=min_length)
    secret = kept_secret(config.get_str("vireo_register_web_secret", None), m.open_store())
    tokens = CsrfTokens(secret, salt=f"register_web:{m.host.name}")
    m.provides("http", HttpProvider(
        name="register_web", host=m.host.name, default_path="/register", methods=("GET", "POST"),
        cors=False, make_blueprint=lambda: signup.make_blueprint(service, tokens)))
