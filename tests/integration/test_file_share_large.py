"""XEP-0363 with a 1 GiB file: uploads and downloads stream, so server memory stays flat."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import threading
import time
from urllib.parse import urlsplit

import pytest

from tests.http_fixtures import connect
from tests.integration.clients import close, login
from tests.integration.test_file_share import PLUGINS, file_share_server, request_slot, start

MiB = 1024 * 1024
SIZE = 1024 * MiB
#: Allowed growth of the server's resident memory during either transfer.
MAX_GROWTH = 64 * MiB


def rss(pid: int) -> int:
    """Resident set size of process `pid` in bytes (VmRSS of /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as status:
        match = re.search(r"^VmRSS:\s+(\d+) kB", status.read(), re.MULTILINE)
    assert match is not None
    return int(match.group(1)) * 1024


class PeakRss:
    """Samples a process's RSS in a thread until stopped; keeps the highest."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = rss(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.peak = max(self.peak, rss(self.pid))


def read_head(sock) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and whatever body bytes came with the head."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the response head"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, rest


@pytest.mark.slow
def test_one_gib_up_and_down_with_flat_memory(tmp_path):
    server = file_share_server(tmp_path, f"""
    http_file_share_size_limit = {SIZE}
""")
    start(server)
    try:
        async def get_slot():
            client = await login(server, "alice", plugins=PLUGINS)
            iq = await request_slot(client, "big.bin", SIZE, "application/octet-stream")
            await close(client)
            return iq["http_upload_slot"]

        slot = asyncio.run(asyncio.wait_for(get_slot(), 60))
        path = urlsplit(slot["put"]["url"]).path
        auth = {h["name"]: h["value"] for h in slot["put"]["headers"]}["Authorization"]
        block = os.urandom(MiB)
        expected = hashlib.sha256()
        pid = server.process.pid
        base = rss(pid)

        with PeakRss(pid) as put_peak, connect(server.ports["http"]) as sock:
            sock.settimeout(120)
            sock.sendall((f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {auth}\r\n"
                          f"Content-Type: application/octet-stream\r\n"
                          f"Content-Length: {SIZE}\r\n\r\n").encode())
            started = time.monotonic()
            for _ in range(SIZE // MiB):
                sock.sendall(block)
                expected.update(block)
            status, _, _ = read_head(sock)
            put_seconds = time.monotonic() - started
        assert status == 201

        received = hashlib.sha256()
        got = 0
        buffer = bytearray(MiB)
        with PeakRss(pid) as get_peak, connect(server.ports["http"]) as sock:
            sock.settimeout(120)
            started = time.monotonic()
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            status, headers, rest = read_head(sock)
            assert status == 200 and int(headers["content-length"]) == SIZE
            received.update(rest)
            got = len(rest)
            view = memoryview(buffer)
            while got < SIZE:
                n = sock.recv_into(view, min(MiB, SIZE - got))
                assert n, "connection closed mid-download"
                received.update(view[:n])
                got += n
            get_seconds = time.monotonic() - started
        assert received.digest() == expected.digest()

        print(f"\n1 GiB: PUT {SIZE / MiB / put_seconds:.0f} MiB/s, "
              f"GET {SIZE / MiB / get_seconds:.0f} MiB/s; RSS base {base // MiB} MiB, "
              f"growth PUT {(put_peak.peak - base) / MiB:.1f} MiB, "
              f"GET {(get_peak.peak - base) / MiB:.1f} MiB")
        assert put_peak.peak - base < MAX_GROWTH
        assert get_peak.peak - base < MAX_GROWTH
    finally:
        assert server.stop() == 0
        for stored in (tmp_path / "data").rglob("*.bin*"):
            stored.unlink()
