"""The local admin socket (Prosody's `admin_socket`), which `app.py sessions` asks.

The server listens on a UNIX socket, `admin_socket` (default `vireo.sock`,
relative to `data_path`), created with mode 0600. Only root and the server's
own user may use it: the file mode keeps others out of the path, and every
connection's SO_PEERCRED uid is checked as well.

Protocol: one JSON object per connection each way, each on one line.
The client sends `{"command": "sessions"}`; the server answers
`{"ok": true, "sessions": [...]}` or `{"ok": false, "error": "..."}` and closes.
Other commands are global modules': the event `admin/<command>` on the global
host, with the `request` object, `sessions()` (the listing below) and
`shutdown(reason)`; the handler returns the reply's fields.

Session contract: every live session (c2s, s2s, component) offers
`describe() -> dict` with these keys, all JSON values:
- `kind`: "c2s", "s2sin", "s2sout", "component", ...
- `id`: the full JID of a c2s session, the remote domain of an s2s link, the
  component's domain; None before authentication
- `address`, `port`: the peer's address and port (for a proxied connection, the
  client's as the PROXY header gave them)
- `secure`: whether the stream is encrypted
- `listener`: the listener it arrived on ("c2s", "c2s_direct_tls", "proxy:c2s",
  "component", ...), or how it was made ("outgoing")
- `client` (c2s, optional): the user agent's software and device (XEP-0388)
Extra keys are allowed and ignored by the table.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gevent.server import StreamServer

if TYPE_CHECKING:
    from xmpp.config import Config

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "vireo.sock"
MAX_REQUEST = 4096
IO_TIMEOUT = 10.0
COLUMNS = ("kind", "id", "address", "port", "secure", "listener", "auth", "client")


def socket_path(config: Config) -> Path:
    """Where the admin socket lives: `admin_socket`, relative to `data_path`."""
    data_path = config.resolve_path(config.get_str("data_path", "data") or "data")
    return data_path / (config.get_str("admin_socket", DEFAULT_SOCKET) or DEFAULT_SOCKET)


# -- the listing ------------------------------------------------------------------------


def live_sessions(server: Any) -> Iterator[Any]:
    """Every session of every listener, bound sessions no listener holds (BOSH), then
    outgoing s2s links."""
    seen: set[int] = set()
    for listener in server.listeners:
        for session in list(listener.sessions.values()):
            seen.add(id(session))
            yield session
    for resources in list(server.router.sessions.values()):
        for session in list(resources.values()):
            if id(session) not in seen:
                seen.add(id(session))
                yield session
    s2s = getattr(server, "s2s", None)  # None while federation is off
    if s2s is not None:
        yield from s2s.outgoing_sessions()


def describe_sessions(server: Any) -> list[dict[str, Any]]:
    """The admin listing: one `describe()` dict per live session."""
    return [describe(session) for session in live_sessions(server)]


def describe(session: Any) -> dict[str, Any]:
    """`session.describe()`, or what its JID and transport tell for a session without
    one (a component: its domain once authenticated)."""
    if hasattr(session, "describe"):
        return session.describe()
    transport = getattr(session, "transport", None)
    peer = getattr(transport, "peer", None) or (None, None)
    jid = getattr(session, "jid", None)
    return {"kind": getattr(session, "kind", type(session).__name__),
            "id": str(jid) if jid else None,
            "address": peer[0], "port": peer[1], "secure": bool(getattr(session, "secure", False)),
            "listener": getattr(transport, "listener", None)}


COMMANDS: dict[str, Callable[[Any], dict[str, Any]]] = {
    "sessions": lambda server: {"sessions": describe_sessions(server)},
}


# -- the server side ----------------------------------------------------------------------


def peer_uid(sock: socket.socket) -> int:
    """The uid of the process at the other end of a UNIX socket (Linux SO_PEERCRED)."""
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid


def may_administer(uid: int) -> bool:
    """Root and the server's own user may use the admin socket."""
    return uid in (0, os.geteuid())


class AdminSocket:
    """The server end of the admin socket."""

    def __init__(self, server: Any, path: Path) -> None:
        self.server = server
        self.path = path
        self.listener = StreamServer(_bind_private(path), self._handle)

    def start(self) -> None:
        self.listener.start()
        log.info("Admin socket at %s", self.path)

    def stop(self) -> None:
        self.listener.stop(timeout=1.0)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def _handle(self, sock: socket.socket, _address: Any) -> None:
        sock.settimeout(IO_TIMEOUT)
        try:
            uid = peer_uid(sock)
            if not may_administer(uid):
                log.warning("Admin socket: refusing uid %d", uid)
                reply: dict[str, Any] = {"ok": False, "error": "permission denied"}
            else:
                reply = self.answer(_read_line(sock))
            sock.sendall(json.dumps(reply).encode() + b"\n")
        except (OSError, ValueError) as error:
            log.debug("Admin socket: %s", error)

    def answer(self, request: bytes) -> dict[str, Any]:
        """The reply to one request line."""
        try:
            command = json.loads(request).get("command")
        except (ValueError, AttributeError):
            return {"ok": False, "error": "the request is not a JSON object"}
        if not isinstance(command, str):
            return {"ok": False, "error": f"unknown command {command!r}"}
        handler = COMMANDS.get(command)
        if handler is not None:
            return {"ok": True, **handler(self.server)}
        # Commands of global modules (admin_shell): the event `admin/<command>`.
        reply = self.server.core.global_host.fire(
            f"admin/{command}", request=json.loads(request),
            sessions=lambda: describe_sessions(self.server),
            shutdown=self.server.request_shutdown)
        if reply is None:
            return {"ok": False, "error": f"unknown command {command!r}"}
        return {"ok": True, **reply}


def open_admin_socket(server: Any) -> AdminSocket | None:
    """The admin socket of this server, or None (logged) when it cannot be created."""
    path = socket_path(server.config)
    try:
        return AdminSocket(server, path)
    except OSError as error:
        log.error("No admin socket at %s: %s", path, error)
        return None


def _bind_private(path: Path) -> socket.socket:
    """A listening UNIX socket at `path` that only its owner can connect to."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise FileExistsError(f"{path} exists and is not a socket")
        if _answers(path):
            raise FileExistsError(f"{path} is in use: is another server running?")
        path.unlink()  # left behind by a server that did not stop cleanly
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # The umask makes the socket 0600 from its creation: no window where others may connect.
    previous = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(previous)
    os.chmod(path, 0o600)
    sock.listen(16)
    sock.setblocking(False)
    return sock


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


def _read_line(sock: socket.socket) -> bytes:
    data = b""
    while b"\n" not in data:
        chunk = sock.recv(MAX_REQUEST)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("request too long")
    return data.split(b"\n", 1)[0]


# -- the client side ----------------------------------------------------------------------


class AdminError(Exception):
    """The admin socket could not be reached or refused the request."""


def request(path: Path, command: str, timeout: float = IO_TIMEOUT,
            **fields: Any) -> dict[str, Any]:
    """Send one command (with its `fields`) to the running server's admin socket;
    return its reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            sock.sendall(json.dumps({"command": command, **fields}).encode() + b"\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        except FileNotFoundError as error:
            raise AdminError(f"no admin socket at {path}: is the server running?") from error
        except OSError as error:
            raise AdminError(f"admin socket {path}: {error}") from error
    try:
        reply = json.loads(data)
    except ValueError as error:
        raise AdminError(f"unreadable answer from {path}") from error
    if not reply.get("ok"):
        raise AdminError(str(reply.get("error", "request refused")))
    return reply


def format_sessions(sessions: list[dict[str, Any]]) -> str:
    """The listing as a plain text table, one session per line (with a NODE
    column when a cluster node lists other nodes' sessions too)."""
    header = ["KIND", "JID/DOMAIN", "ADDRESS", "PORT", "SECURE", "LISTENER", "AUTH", "CLIENT"]
    columns = COLUMNS
    if any(entry.get("node") for entry in sessions):
        header, columns = [*header, "NODE"], (*COLUMNS, "node")
    rows = [header]
    for entry in sessions:
        row = [entry.get(column) for column in columns]
        row[1] = row[1] or "-"
        row[4] = "yes" if row[4] else "no"
        rows.append(["-" if value is None else str(value) for value in row])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True))
             .rstrip() for row in rows]
    lines.append(f"{len(sessions)} session(s)")
    return "\n".join(lines)
