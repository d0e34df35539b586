"""The module registry: Prosody's module names mapped to our implementations.

A module is a Python module with `setup(m: ModuleContext)` (xmpp.moduleapi).
This is a plain table of imports, not a plugin framework.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING

from xmpp.moduleapi import ModuleContext, ModuleServices

if TYPE_CHECKING:
    from xmpp.config import Config
    from xmpp.hosts import LocalHost

log = logging.getLogger(__name__)

IMPLEMENTED = {
    "roster": "xmpp.modules.roster",
    "presence": "xmpp.modules.presence",
    "message": "xmpp.modules.message",
    "disco": "xmpp.modules.disco",
    "ping": "xmpp.modules.ping",
    "version": "xmpp.modules.version",
    "offline": "xmpp.modules.offline",
    "carbons": "xmpp.modules.carbons",
    "mam": "xmpp.modules.mam",
    "register": "xmpp.modules.register",
    "time": "xmpp.modules.time",
    "uptime": "xmpp.modules.uptime",
    "lastactivity": "xmpp.modules.lastactivity",
    "component": "xmpp.modules.component",
    "http_file_share": "xmpp.modules.http_file_share",
    "bosh": "xmpp.modules.bosh",
    "websocket": "xmpp.modules.websocket",
    "sasl2": "xmpp.modules.sasl2",
    "sasl2_bind2": "xmpp.modules.sasl2_bind2",
    "sasl2_fast": "xmpp.modules.sasl2_fast",
    "sasl2_scram_upgrade": "xmpp.modules.sasl2_scram_upgrade",
    "smacks": "xmpp.modules.smacks",
    "csi": "xmpp.modules.csi",
    "csi_simple": "xmpp.modules.csi_simple",
    "auth_anonymous": "xmpp.modules.auth_anonymous",
    "cloud_notify": "xmpp.modules.cloud_notify",
    "http_openmetrics": "xmpp.modules.http_openmetrics",
    "http_files": "xmpp.modules.http_files",
    "c2s": "xmpp.modules.c2s",
    "s2s": "xmpp.modules.s2s",
    "admin_shell": "xmpp.modules.admin_shell",
    "adhoc": "xmpp.modules.adhoc",
    "invites": "xmpp.modules.invites",
    "invites_adhoc": "xmpp.modules.invites_adhoc",
    "invites_register": "xmpp.modules.invites_register",
    "admin_adhoc": "xmpp.modules.admin_adhoc",
    "announce": "xmpp.modules.announce",
    "server_contact_info": "xmpp.modules.server_contact_info",
    "motd": "xmpp.modules.motd",
    "welcome": "xmpp.modules.welcome",
    "watchregistrations": "xmpp.modules.watchregistrations",
    "groups": "xmpp.modules.groups",
    "tombstones": "xmpp.modules.tombstones",
    "turn_external": "xmpp.modules.turn_external",
    "limits": "xmpp.modules.limits",
    "muc": "xmpp.modules.muc",
    "muc_mam": "xmpp.modules.muc_mam",
    "pep": "xmpp.modules.pep",
    "private": "xmpp.modules.private",
    "blocklist": "xmpp.modules.blocklist",
    "vcard": "xmpp.modules.vcard",
    "vcard4": "xmpp.modules.vcard4",
    "vcard_legacy": "xmpp.modules.vcard_legacy",
    "bookmarks": "xmpp.modules.bookmarks",
    "invites_page": "xmpp.modules.invites_page",
    "register_web": "xmpp.modules.register_web",
    "admin_web": "xmpp.modules.admin_web",
    "cluster": "xmpp.modules.cluster",
}

# Names Prosody configs carry whose job the core does itself: loading them is
# a no-op, not a warning.
BUILT_IN = frozenset({
    "saslauth", "tls", "dialback", "posix", "iq", "http", "s2s_auth_certs",
    "auth_internal_hashed", "auth_internal_plain", "storage_internal", "storage_sql",
    "net_proxy", "admin_socket",
})

# Prosody loads these on every VirtualHost unless modules_disabled names them.
AUTOLOAD = ("presence", "message", "offline")
# ... and these once for the whole server (its listeners).
GLOBAL_AUTOLOAD = ("c2s", "s2s")
# Global modules (Prosody's module:set_global()) loaded once when the global
# modules_enabled names them.
GLOBAL_ON_REQUEST = ("admin_shell", "limits")
# A global module loaded when its option is set (Vireo's own: several nodes).
GLOBAL_BY_OPTION = {"cluster": "cluster"}
# Global modules named in a host's modules_enabled are ignored there.
GLOBAL_ONLY = frozenset(GLOBAL_AUTOLOAD + GLOBAL_ON_REQUEST + tuple(GLOBAL_BY_OPTION))


def modules_for(host: LocalHost) -> list[str]:
    """The host's effective module list, with Prosody's autoloaded ones."""
    names = [name for name in host.config.modules() if name not in GLOBAL_ONLY]
    if host.is_component and host.config.module is None and "component" not in names:
        # Prosody's `Component "name"` without a module is an external (XEP-0114) one.
        names.insert(0, "component")
    if not host.is_component:
        # Prosody loads the provider `authentication` names, as mod_auth_<name>.
        provider = f"auth_{host.config.get_str('authentication', 'internal_hashed')}"
        if provider in IMPLEMENTED and provider not in names:
            names.insert(0, provider)
        disabled = set(host.config.get_list("modules_disabled", []))
        names += [name for name in AUTOLOAD if name not in names and name not in disabled]
    return names


def global_modules(config: Config) -> list[str]:
    """The modules of the global pseudo-host: the listeners, unless disabled, the
    global modules the global modules_enabled names, and those whose option is set."""
    disabled = set(config.get_list("modules_disabled", []))
    enabled = set(config.get_list("modules_enabled", []))
    return [name for name in GLOBAL_AUTOLOAD if name not in disabled] + [
        name for name in GLOBAL_ON_REQUEST if name in enabled and name not in disabled] + [
        name for name, option in GLOBAL_BY_OPTION.items() if config.get(option) is not None]


def unknown_modules(config: Config) -> list[tuple[str, str]]:
    """(host label, module) for each module an enabled host names that Vireo
    does not have (the server skips them)."""
    return [(host.label, name) for host in config.hosts.values() if host.enabled
            for name in host.modules() if name not in IMPLEMENTED and name not in BUILT_IN]


def load_module(host: LocalHost, name: str, services: ModuleServices) -> None:
    """Import and set up module `name` on `host`; an unknown one is logged and skipped."""
    path = IMPLEMENTED.get(name)
    if path is None:
        if name not in BUILT_IN:
            log.warning("%s: module %r is not available in Vireo; skipped", host.name, name)
        return
    importlib.import_module(path).setup(ModuleContext(name, host, services))
