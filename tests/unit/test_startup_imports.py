"""What a server loads before its first client: Flask waits for the first request
a Flask route may answer (http_apps.flask_host), and BOSH's plain routes never need
it; the OpenSSL verify hook of federation waits for the first TLS context; the
stores speak SQLAlchemy Core, never its ORM.

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


STORES_SCRIPT = """
import sys
from datetime import UTC, datetime
from gevent import monkey
monkey.patch_all()
from storage import userdata
from storage.roster import RosterItem
from storage.stores import StoreFactory
from storage.uploads import UploadRecord
from xmpp.config import load_config
from xmpp.server import VireoServer

LAZY = ("sqlalchemy.orm", "sqlalchemy.dialects.mysql", "prometheus_client", "jwt")
host, now = "example.com", datetime.now(UTC)
server = VireoServer(load_config(sys.argv[1]))
server.db.migrate_in_child()  # as start() does: Alembic's imports stay out of the server
server.accounts.create(host, "juliet", "pw")
assert server.accounts.check_password(host, "juliet", "pw")
assert server.accounts.set_password(host, "juliet", "new")
server.rosters.put_item(host, "juliet", RosterItem("romeo@example.net", groups=["A"]))
assert server.rosters.get_item(host, "juliet", "romeo@example.net").groups == ["A"]
server.offline.store(host, "juliet", "<message/>", now)
assert server.offline.pop_all(host, "juliet") == [("<message/>", now)]
server.uploads.issue(UploadRecord("slot", "upload." + host, "juliet@" + host, "f", 1, "text/plain",
                                  now, None, None), now, lambda total, daily: None)
assert server.uploads.complete("upload." + host, "slot", now)
stores = StoreFactory(server.db)
stores.open(host, "private", "map").set("juliet", "ns", {"a": 1})
archive = stores.open(host, "archive", "archive")
first = archive.append("juliet", {"n": 1}, now, "romeo@example.net")
archive.append("juliet", {"n": 2}, now, "romeo@example.net")
assert [r.value for r in archive.find("juliet", after=first)] == [{"n": 2}]
assert userdata.read_user(server.db, host, "juliet").roster[0].groups == ["A"]
assert server.accounts.delete(host, "juliet")
print(sorted(name for name in LAZY if name in sys.modules))
server.db.close()
"""


def test_what_a_server_and_its_stores_never_use_is_not_loaded(tmp_path: Path) -> None:
    """SQLAlchemy's ORM is some 6 MiB of a server's memory: the stores speak Core.
    Its MySQL dialects, 1 MiB, wait for a MySQL engine; prometheus_client for
    the first scrape or storage failure; PyJWT for the first upload token."""
    config = tmp_path / "vireo.cfg.lua"
    config.write_text(f"""
data_path = "{tmp_path}"
modules_enabled = {{ "saslauth", "roster", "offline", "bosh" }}
VirtualHost "example.com"
Component "upload.example.com" "http_file_share"
""")
    result = subprocess.run([sys.executable, "-c", STORES_SCRIPT, str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["[]"]
