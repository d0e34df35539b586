"""What the browser tests share: the page's own origin and the Chromium driver."""

from __future__ import annotations

import functools
import json
import subprocess
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RUN_TIMEOUT = 60


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *_args) -> None:
        pass


@pytest.fixture(scope="module")
def page_origin():
    """This folder over HTTP on its own port: the page's origin differs from the server's."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(QuietHandler, directory=str(HERE)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def run_page(args: dict) -> dict:
    """run_strophe.mjs in Debian's Chromium with `args`; the page's result."""
    done = subprocess.run(["node", str(HERE / "run_strophe.mjs"), json.dumps(args)],
                          cwd=HERE, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])
