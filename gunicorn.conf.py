"""gunicorn settings running Vireo in gunicorn's gevent worker.

    VIREO_CONFIG=/etc/vireo/vireo.cfg.lua gunicorn -k gevent -w 1 -c gunicorn.conf.py

gunicorn binds `http_ports` on `http_interfaces` (Prosody's defaults: 5280 on
loopback) and serves the WSGI app `wsgi:application`, the same callable the
built-in server runs. The one worker also opens what the modules declare
besides: the XMPP listeners, the `https_ports` (pywsgi with SNI, as
gunicorn's own TLS has one certificate) and the PROXY-protocol ports.
Vireo keeps every session in one process, so there is exactly one worker.

gunicorn's own request limits apply on the http ports (400 for an oversized
request line or header); route body limits (413) are the app's.
"""

import os

from http_apps.server import listen_addresses
from http_apps.urls import mark_listening
from xmpp.config import load_config

vireo_config = load_config(os.environ.get("VIREO_CONFIG", "config.example.lua"))


def gunicorn_binds(addresses):
    """gunicorn bind strings for (interface, port) pairs.

    gunicorn's IPv6 sockets are dual-stack, so "::" alone covers "*" on its port.
    """
    wildcard_v6 = {port for interface, port in addresses if interface == "::"}
    binds = []
    for interface, port in addresses:
        if interface == "*":
            if port not in wildcard_v6:
                binds.append(f"0.0.0.0:{port}")
        elif ":" in interface:
            binds.append(f"[{interface}]:{port}")
        else:
            binds.append(f"{interface}:{port}")
    return binds


bind = gunicorn_binds(listen_addresses(vireo_config, "http"))
wsgi_app = "wsgi:application"
worker_class = "gevent"
workers = 1
# BOSH long polls hold a connection each.
worker_connections = 10000
graceful_timeout = 5


def post_worker_init(worker):
    """In the worker, once `wsgi` is loaded: what `app.py run` opens besides the
    http ports gunicorn binds (XMPP listeners, https, PROXY-protocol ports)."""
    import wsgi

    for sock in worker.sockets:
        mark_listening("http", sock.getsockname()[1])
    wsgi.server.start_xmpp_listeners()
    wsgi.server.start_http(("https",))
    wsgi.server.started()


def worker_exit(server, worker):
    """Vireo's https ports, streams and listeners, in the order `app.py run` closes them."""
    import wsgi

    wsgi.server.stop(timeout=graceful_timeout)
