"""XEP-0124/XEP-0206 BOSH (Prosody's mod_bosh): XMPP client sessions over HTTP long polling.

The HTTP app "bosh" is mounted at /http-bind (`http_paths.bosh` moves it), with
CORS on unless `http_cors_override.bosh` says otherwise. Enabled in the global
modules_enabled it is a global HTTP app, answering on every HTTP host; enabled
on a VirtualHost only, it answers on that host's HTTP name. Either way the
`to` of the session request picks the XMPP host, which must have bosh loaded.
One manager per server keeps every BOSH session, whatever path it came in on.

Options (global section, as Prosody): bosh_max_inactivity (60), bosh_max_wait
(120), bosh_max_requests (2), bosh_default_hold (1), bosh_max_polling (5),
consider_bosh_secure (false). The request body limit is c2s_stanza_size_limit.
"""

from __future__ import annotations

from http_apps.bosh.manager import BoshManager, BoshOptions
from http_apps.bosh.views import wsgi_handlers
from http_apps.provider import HttpProvider
from xmpp.c2s import C2SServices
from xmpp.errors import StreamError
from xmpp.moduleapi import ModuleContext


def setup(m: ModuleContext) -> None:
    config = m.global_config
    first = not m.provided("http", "bosh")
    manager = m.shared("bosh", lambda: new_manager(m))
    if first and "cross_domain_bosh" in config.globals:
        m.log.warning("The 'cross_domain_bosh' option is deprecated and ignored; "
                      "CORS for bosh is set with http_cors_override")
    global_ = "bosh" in config.get_list("modules_enabled", [])
    if global_ and not first:
        return  # one global app serves every host
    # Held requests get their terminate bodies before the HTTP server drains.
    m.hook("server-stopping", lambda event: manager.close_all(StreamError("system-shutdown")))
    c2s: C2SServices = m.service("c2s")
    m.provides("http", HttpProvider(
        name="bosh", host=m.host.name, make_blueprint=None,
        wsgi_handlers=wsgi_handlers(manager), default_path="/http-bind", cors=True,
        methods=("GET", "POST", "OPTIONS"),
        max_body_size=c2s.stanza_size_limit(None if global_ else m.host), global_=global_))


def new_manager(m: ModuleContext) -> BoshManager:
    """The server's one BOSH manager, serving the VirtualHosts that load bosh."""
    def serves(domain: str) -> bool:
        host = m.hosts().get(domain)
        return host is not None and not host.is_component and "bosh" in host.modules

    return BoshManager(m.service("c2s"), BoshOptions.from_config(m.global_config), serves)
