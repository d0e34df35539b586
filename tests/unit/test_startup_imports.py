"""What a server loads before its first client: Flask waits for the first request
a Flask route may answer (http_apps.flask_host), and BOSH's plain routes never need
it; the OpenSSL verify hook of federation waits for the first TLS context.

Run in a child process: this one has imported everything the other tests use.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
from gevent import monkey
monkey.patch_all()
from werkzeug.test import Client
from xmpp import s2s_tls
from xmpp.config import load_config
from xmpp.server import VireoServer

def flask_loaded():
    return sorted(name for name in ("flask", "jinja2", "click") if name in sys.modules)

server = VireoServer(load_config(sys.argv[1]))
server.db.migrate()
client = Client(server.wsgi_app)
print("built", flask_loaded(), "openssl hook", s2s_tls._openssl.cache_info().currsize)
body = ("<body xmlns='http://jabber.org/protocol/httpbind' rid='1000' to='example.com' "
        "wait='1' hold='1' ver='1.6' xmlns:xmpp='urn:xmpp:xbosh' xmpp:version='1.0'/>")
bosh = client.post("/http-bind", data=body, headers={"Host": "example.com"})
print("bosh", bosh.status_code, flask_loaded())
page = client.get("/file_share/", headers={"Host": "upload.example.com"})
print("file_share", page.status_code, flask_loaded())
server.db.close()
"""


def test_flask_and_openssl_wait_for_their_first_use(tmp_path: Path) -> None:
    config = tmp_path / "vireo.cfg.lua"
    config.write_text(f"""
data_path = "{tmp_path}"
modules_enabled = {{ "saslauth", "roster", "bosh" }}
VirtualHost "example.com"
Component "upload.example.com" "http_file_share"
""")
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "built [] openssl hook 0",
        "bosh 200 []",
        "file_share 200 ['click', 'flask', 'jinja2']",
    ]
