"""The module registry: Prosody's module names mapped to our implementations.

A module is a Python module with `setup(m: ModuleContext)`. This is a plain
table of imports, not a plugin framework.
"""

from __future__ import annotations

import importlib
import logging

from xmpp.hosts import LocalHost, ModuleContext

log = logging.getLogger(__name__)

IMPLEMENTED = {
    "roster": "xmpp.modules.roster",
    "presence": "xmpp.modules.presence",
    "disco": "xmpp.modules.disco",
    "ping": "xmpp.modules.ping",
    "version": "xmpp.modules.version",
    "offline": "xmpp.modules.offline",
    "register": "xmpp.modules.register",
    "time": "xmpp.modules.time",
    "uptime": "xmpp.modules.uptime",
    "component": "xmpp.modules.component",
    "http_file_share": "xmpp.modules.http_file_share",
    "bosh": "xmpp.modules.bosh",
    "websocket": "xmpp.modules.websocket",
    "http_openmetrics": "xmpp.modules.http_openmetrics",
}

# Names Prosody configs carry whose job the core does itself (or, for the
# listeners, the server composition): loading them is a no-op, not a warning.
BUILT_IN = frozenset({
    "saslauth", "tls", "c2s", "s2s", "dialback", "posix", "message", "iq",
    "http", "s2s_auth_certs", "auth_internal_hashed", "auth_internal_plain",
    "storage_internal", "storage_sql", "net_proxy",
})

# Prosody loads these on every VirtualHost unless modules_disabled names them.
AUTOLOAD = ("presence", "offline")


def modules_for(host: LocalHost) -> list[str]:
    """The host's effective module list, with Prosody's autoloaded ones."""
    names = list(host.config.modules())
    if host.is_component and host.config.module is None and "component" not in names:
        # Prosody's `Component "name"` without a module is an external (XEP-0114) one.
        names.insert(0, "component")
    if not host.is_component:
        disabled = set(host.config.get_list("modules_disabled", []))
        names += [name for name in AUTOLOAD if name not in names and name not in disabled]
    return names


def load_modules(host: LocalHost) -> None:
    """Import and set up each module named for `host`; unknown ones are logged and skipped."""
    for name in host.modules:
        path = IMPLEMENTED.get(name)
        if path is None:
            if name not in BUILT_IN:
                log.warning("%s: module %r is not available in Vireo; skipped", host.name, name)
            continue
        module = importlib.import_module(path)
        module.setup(ModuleContext(name, host))
