"""The invite page (Prosody's community mod_invites_page): a web page per
registration invite, at `/invites_page?TOKEN` unless `http_paths` moves it.

Options as Prosody's: `site_name` (default: the host), `invites_page` (the
URL template of the page, "{invite.token}" and "{host}" filled in; by
default this module's own page), `invites_page_external` (true: only put
the URL in invites, serve no page), `invites_registration_page` (the
sign-up link, relative to the page). mod_invites adds the page's URL to
each invite that allows registration (`landing_page`), so the ad-hoc
commands and `app.py invite generate` hand out the link.
"""

from __future__ import annotations

from http_apps.provider import HttpProvider
from http_apps.web import invite_page
from xmpp.moduleapi import ModuleContext
from xmpp.modules.invites import invites_for


def setup(m: ModuleContext) -> None:
    invites = invites_for(m)
    if m.config.get_bool("invites_page_external", False):
        return
    site_name = m.config.get_str("site_name", m.host.name)
    registration_page = m.config.get_str("invites_registration_page",
                                         invite_page.DEFAULT_REGISTRATION_PAGE)
    m.provides("http", HttpProvider(
        name="invites_page", host=m.host.name,
        make_blueprint=lambda: invite_page.make_blueprint(invites, site_name, registration_page)))
