"""Federation (Prosody's mod_s2s with mod_dialback): the s2s listener and remote routes.

A global module, loaded unless `modules_disabled = { "s2s" }`; without it
stanzas to other domains bounce with service-unavailable. It hooks
`route/remote` on every host and declares the `s2s` listener (`s2s_ports`,
5269); xmpp.s2s_manager holds the links and the policy. In a cluster it
takes the `<db:verify/>` requests and answers other nodes pass on
(`ownership-forwarded` of kinds `s2s` and `dialback`), and makes sure every
node makes and checks dialback keys with the same secret.
"""

from __future__ import annotations

from typing import Any

from storage.kept_secret import kept_secret
from xmpp.cluster.options import cluster_options
from xmpp.config import ConfigError
from xmpp.dialback import DialbackKeys, fingerprint
from xmpp.jid import InvalidJID, parse_jid
from xmpp.moduleapi import ModuleContext
from xmpp.ownership import Ownership
from xmpp.providers import NetProvider
from xmpp.resolver import DEFAULT_PORT
from xmpp.s2s_manager import S2SManager


def setup(m: ModuleContext) -> None:
    def fire(name: str, local: str | None = None, **fields: Any) -> None:
        """Server-wide, then on our host `local` (Prosody fires s2s*-established both ways)."""
        m.fire(name, **fields)
        host = m.hosts().get(local) if local is not None else None
        if host is not None:
            host.fire(name, **fields)

    manager: S2SManager = m.shared(
        "s2s", lambda: S2SManager(m.global_config, m.service("router"), m.now, fire=fire,
                                  links=Ownership(m, "s2s"),
                                  verifications=Ownership(m, "dialback")))

    def route_remote(event: Any) -> bool:
        try:
            to = parse_jid(event.stanza.get("to", ""))
        except InvalidJID:
            return False
        manager.route(event.stanza, to, event.origin)
        return True

    def forwarded(event: Any) -> bool:
        if event.kind == "s2s":
            return manager.verify_for_peer(event.stanza)
        if event.kind == "dialback":
            return manager.peer_answered(event.stanza)
        return False

    def starting(event: Any) -> None:
        if cluster_options(m.global_config) is not None:
            manager.keys = DialbackKeys(cluster_secret(m))

    m.hook("ownership-forwarded", forwarded)
    m.hook("ownership-holder-gone", lambda event: manager.holder_gone(event.node))
    # Once the database is migrated, before any port opens.
    m.hook("server-starting", starting)
    # Last, so modules of the host may take a remote stanza first.
    m.hook_each_host("route/remote", route_remote, -1)
    m.hook("server-stopping", lambda event: manager.stop())
    m.hook("config-reloaded", lambda event: manager.tls.reload(event.config))
    m.provides("net", NetProvider("s2s", manager.make_incoming, default_ports=(DEFAULT_PORT,),
                                  starttls_context=manager.starttls_context,
                                  handshake_timeout=manager.timeout))


def cluster_secret(m: ModuleContext) -> str:
    """The dialback secret of a cluster's nodes: a remote server may check a key
    one node made with another (the one its connection back reached), so they
    need the same one. `dialback_secret`, else one made once and kept in the
    shared database (Prosody's random secret per process would fail those
    checks). ConfigError when a live node has another: refused at start,
    rather than federation failing now and then."""
    secret = kept_secret(m.global_config.get_str("dialback_secret", None), m.open_store())
    differs = m.fire_event("shared-setting", setting="dialback_secret",
                           fingerprint=fingerprint(secret), differs=[]).differs
    if differs:
        raise ConfigError(str(m.global_config.path), None, (
            f"option 'dialback_secret' differs from that of node(s) {', '.join(differs)} "
            "of the cluster: every node needs the same one, or none of them (the nodes "
            "then share one kept in the database); a node stopped counts until its "
            "heartbeat expires (node_timeout)"))
    return secret
