"""nginx (Debian's package) as a real reverse proxy in front of the HTTP layer.

nginx sets X-Forwarded-For and X-Forwarded-Proto; Vireo trusts it as a loopback
peer and sees the client's address (clients bind other 127.0.0.0/8 sources) and
whether the client used TLS; /metrics is judged on the forwarded address.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import time

import pytest

from tests.certs import make_self_signed
from tests.http_fixtures import connect, http_request, http_server_process
from tests.integration.server_fixture import free_port, stop_process

NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed")

CONFIG = """
statistics = "internal"
openmetrics_allow_ips = { "127.0.0.3" }
http_ports = { 0 }
http_interfaces = { "127.0.0.1" }
https_ports = { }
VirtualHost "example.com"
"""

NGINX_CONF = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{plain};
        listen 127.0.0.1:{tls} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_http_version 1.1;
            proxy_set_header Host "example.com";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_buffering off;
            tcp_nodelay on;
        }}
    }}
}}
"""


def wait_listening(port: int, process: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}")
        try:
            connect(port).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nginx not listening on {port}")


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    directory = tmp_path_factory.mktemp("nginx")
    cert, key = make_self_signed(directory / "certs", "example.com")
    with http_server_process(directory / "vireo", CONFIG) as vireo:
        ports = {"plain": free_port(), "tls": free_port()}
        conf = directory / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=directory, cert=cert, key=key,
                                          backend=vireo.http_port, **ports))
        nginx = subprocess.Popen([NGINX, "-p", str(directory), "-c", str(conf),
                                  "-e", str(directory / "error.log")],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_listening(ports["plain"], nginx)
            wait_listening(ports["tls"], nginx)
            yield {**ports, "backend": vireo.http_port}
        finally:
            stop_process(nginx)


def request(port: int, path: str, source: str, *, tls: bool = False, headers=None):
    sock = connect(port, source=source)
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(sock, server_hostname="example.com")
    with sock:
        response = http_request(sock, "GET", path, "example.com", headers=headers)
        return response.status, response.read()


def test_client_address_through_the_proxy(proxied):
    status, body = request(proxied["plain"], "/probe", "127.0.0.2")
    assert status == 200
    seen = json.loads(body)
    assert seen["remote_addr"] == "127.0.0.2"
    assert seen["secure"] is False


def test_tls_at_the_proxy_marks_the_request_secure(proxied):
    status, body = request(proxied["tls"], "/probe", "127.0.0.2", tls=True)
    assert status == 200
    assert json.loads(body) == {**json.loads(body), "remote_addr": "127.0.0.2", "secure": True}


def test_forwarded_for_sent_by_the_client_does_not_hide_it(proxied):
    _status, body = request(proxied["plain"], "/probe", "127.0.0.2",
                            headers={"X-Forwarded-For": "127.0.0.3"})
    assert json.loads(body)["remote_addr"] == "127.0.0.2"


def test_metrics_allow_the_forwarded_address(proxied):
    assert request(proxied["plain"], "/probe", "127.0.0.3")[0] == 200
    status, body = request(proxied["plain"], "/metrics", "127.0.0.3")
    assert status == 200
    assert b'vireo_http_requests_total{status="200"}' in body


def test_metrics_refuse_other_forwarded_addresses(proxied):
    assert request(proxied["plain"], "/metrics", "127.0.0.2")[0] == 403
    assert request(proxied["plain"], "/metrics", "127.0.0.2",
                   headers={"X-Forwarded-For": "127.0.0.3"})[0] == 403
    # The proxy itself (loopback, trusted) is judged as its client: allowed only via XFF.
    assert request(proxied["plain"], "/metrics", "127.0.0.1")[0] == 403


def test_spoofed_headers_straight_to_vireo_are_ignored(proxied):
    _status, body = request(proxied["backend"], "/probe", "127.0.0.2", headers={
        "X-Forwarded-For": "127.0.0.3", "X-Forwarded-Proto": "https"})
    seen = json.loads(body)
    assert seen["remote_addr"] == "127.0.0.2"
    assert seen["secure"] is False
    assert request(proxied["backend"], "/metrics", "127.0.0.2",
                   headers={"X-Forwarded-For": "127.0.0.3"})[0] == 403

