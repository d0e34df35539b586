"""The WSGI callable of Vireo's HTTP services, for gunicorn (see gunicorn.conf.py).

`server` is the whole Vireo server built from $VIREO_CONFIG; `application` is
its WSGI app. gunicorn's gevent worker has monkey-patched the process already.
"""

import os

from app import DEFAULT_CONFIG, build_server

server = build_server(os.environ.get("VIREO_CONFIG", DEFAULT_CONFIG))
application = server.wsgi_app
