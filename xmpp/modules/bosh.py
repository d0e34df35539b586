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

from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary

from http_apps.bosh.manager import BoshManager, BoshOptions
from http_apps.bosh.views import wsgi_handlers
from xmpp.errors import StreamError
from xmpp.hosts import ModuleContext

if TYPE_CHECKING:
    from xmpp.server import VireoServer

_managers: WeakKeyDictionary[VireoServer, BoshManager] = WeakKeyDictionary()


def manager_for(server: VireoServer) -> BoshManager:
    """The server's BOSH manager, made on first use."""
    manager = _managers.get(server)
    if manager is None:
        def serves(domain: str) -> bool:
            host = server.router.hosts.get(domain)
            return host is not None and not host.is_component and "bosh" in host.modules

        manager = BoshManager(server, BoshOptions.from_config(server.config), serves)
        _managers[server] = manager
    return manager


def setup(m: ModuleContext) -> None:
    server = m.server
    first = server not in _managers
    manager = manager_for(server)
    # Held requests get their terminate bodies before the HTTP server drains.
    m.hook("server-stopping", lambda: manager.close_all(StreamError("system-shutdown")))
    if first and "cross_domain_bosh" in server.config.globals:
        m.log.warning("The 'cross_domain_bosh' option is deprecated and ignored; "
                      "CORS for bosh is set with http_cors_override")
    global_ = "bosh" in server.config.get_list("modules_enabled", [])
    if global_ and not first:
        return  # one global app serves every host
    m.provides_http("bosh", None, wsgi_handlers=wsgi_handlers(manager),
                    default_path="/http-bind", cors=True, methods=("GET", "POST", "OPTIONS"),
                    max_body_size=server.c2s_stanza_size_limit(None if global_ else m.host),
                    global_=global_)
