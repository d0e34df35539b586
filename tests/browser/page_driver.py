"""One Chromium for a test module (drive_pages.mjs), commanded line by line, and a
check that a screenshot shows something."""

from __future__ import annotations

import json
import select
import struct
import subprocess
import time
import zlib
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
COMMAND_TIMEOUT = 30.0


class BrowserError(AssertionError):
    pass


class PageDriver:
    def __init__(self) -> None:
        self.process = subprocess.Popen(["node", str(HERE / "drive_pages.mjs")], cwd=HERE,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, bufsize=1)
        self._next = 0

    def __call__(self, op: str, **args: Any) -> Any:
        self._next += 1
        self.process.stdin.write(json.dumps({"id": self._next, "op": op, **args}) + "\n")
        self.process.stdin.flush()
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if self.process.poll() is not None:
                raise BrowserError(f"{op}: the browser driver ended: "
                                   f"{self.process.stderr.read()}")
            if left <= 0:
                raise BrowserError(f"{op}: no answer in {COMMAND_TIMEOUT} s")
            ready, _, _ = select.select([self.process.stdout], [], [], left)
            if ready:
                break
        answer = json.loads(self.process.stdout.readline())
        if not answer["ok"]:
            raise BrowserError(f"{op} {args}: {answer['error']}")
        return answer.get("value")  # undefined in JavaScript: no key

    def close(self) -> None:
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def distinct_pixels(png: Path) -> int:
    """How many different pixel values (RGBA, 8-bit, unfiltered rows excepted) a PNG
    holds, sampled: 1 for a blank render."""
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    position, idat, header = 8, b"", None
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        position += 12 + length
    width, _height, depth, color = header[:4]
    channels = {2: 3, 6: 4}[color]
    assert depth == 8
    raw = zlib.decompress(idat)
    stride = width * channels + 1
    seen = set()
    # Filtered bytes differ from pixels, but a blank page filters to the same few values.
    for row in range(0, len(raw) // stride, 7):
        line = raw[row * stride + 1:(row + 1) * stride]
        for x in range(0, len(line), channels * 13):
            seen.add(line[x:x + channels])
    return len(seen)
