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
In a cluster a request for a session held by another node is passed on to it.
"""

from __future__ import annotations

from http_apps.bosh.manager import BoshManager, BoshOptions
from http_apps.bosh.views import wsgi_handlers
from xmpp.http_c2s import provide_c2s_over_http, serving_hosts
from xmpp.moduleapi import ModuleContext
from xmpp.ownership import Ownership


def setup(m: ModuleContext) -> None:
    provide_c2s_over_http(
        m, make_service=lambda: BoshManager(m.service("c2s"),
                                            BoshOptions.from_config(m.global_config),
                                            serving_hosts(m), Ownership(m, "bosh")),
        wsgi_handlers=wsgi_handlers, default_path="/http-bind",
        methods=("GET", "POST", "OPTIONS"), deprecated_option="cross_domain_bosh",
        limit_body=True)
