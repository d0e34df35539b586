"""XEP-0363 HTTP File Upload: one upload service's slots, files and expiry.

Joins the pure rules (policy, tokens) with storage and the disk: issuing a
slot (checked and charged in one locked transaction, see storage.uploads),
where files live, and pruning expired ones. Shared by the XMPP module (slot
requests, the expiry job) and the HTTP routes (uploads and downloads).

Files live where Prosody keeps them, `<data_path>/<host, %-encoded>/http_file_share/<slot>.bin`
(`store_directory`), or in `http_file_share_path`; an upload in progress goes to
a temporary `<slot>.bin~XXXX` beside it. A PUT is answered 201 only once the
file is in place and its row marked complete, so after a crash `recover` can
undo every upload that did not get there.
"""

from __future__ import annotations

import fcntl
import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

from http_apps.file_share import tokens
from http_apps.file_share.policy import FileSpec, Policy, SlotRequest, Usage
from storage.uploads import UploadRecord, UploadStore
from xmpp.auth_throttle import FailureThrottle

log = logging.getLogger(__name__)

MODULE_NAME = "http_file_share"
PRUNE_BATCH = 100
SLOT_BYTES = 12  # 16 URL-safe characters, as long as Prosody's slot ids

_NOT_WORD = re.compile(r"[^A-Za-z0-9]")


def hold_while_writing(file: BinaryIO) -> None:
    """Mark an upload's file as being written, until it is closed: a node that
    starts on a shared `http_file_share_path` recovers after its own crash,
    not over the uploads other nodes are writing (an flock(2) lock; one on
    NFS is taken as an fcntl lock by Linux)."""
    fcntl.flock(file, fcntl.LOCK_EX)


def being_written(path: Path) -> bool:
    """Whether a live process holds `path`'s lock (`hold_while_writing`)."""
    try:
        with path.open("rb") as file:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False  # gone already, or unreadable: deleting it will say
    return False


def store_directory(data_dir: Path, host: str) -> Path:
    """Where a host's files are kept without `http_file_share_path`."""
    return data_dir / encode_host(host) / MODULE_NAME


def encode_host(host: str) -> str:
    """A host name as Prosody's datamanager writes it in paths: non-alphanumerics as %xx."""
    return _NOT_WORD.sub(lambda m: "".join(f"%{b:02x}" for b in m.group().encode()), host)


def to_datetime(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


@dataclass(frozen=True)
class IssuedSlot:
    """A granted slot: where to PUT (with which headers) and where to GET."""

    slot: str
    put_url: str
    get_url: str
    headers: dict[str, str]


class FileShare:
    """One upload service (a Component or VirtualHost loading http_file_share).

    base_url: the URL slots are under: the service's own public URL, or an
        external upload service's (`http_file_share_base_url`, `external` set).
    clock: seconds since the epoch (the server's clock).
    throttle: failed upload PUTs (bad or missing tokens) per client address.
    """

    def __init__(self, *, host: str, policy: Policy, secret: str, store: UploadStore,
                 directory: Path, base_url: Callable[[], str], external: bool,
                 clock: Callable[[], float], throttle: FailureThrottle) -> None:
        self.host = host
        self.policy = policy
        self.secret = secret
        self.store = store
        self.directory = directory
        self.base_url = base_url
        self.external = external
        self.now = clock
        self.throttle = throttle

    # -- slots --------------------------------------------------------------------

    def path_for(self, slot: str) -> Path:
        return self.directory / f"{slot}.bin"

    def slot_url(self, slot: str, filename: str) -> str:
        """<base>/<slot>/<url-encoded filename>."""
        return f"{self.base_url().rstrip('/')}/{slot}/{quote(filename, safe='')}"

    def issue_slot(self, request: SlotRequest) -> IssuedSlot:
        """Check `request` (raising policy.Refusal), record and charge the slot, sign its token."""
        spec = self.policy.check_request(request)
        now = self.now()
        slot = secrets.token_urlsafe(SLOT_BYTES)
        record = UploadRecord(
            slot=slot, host=self.host, uploader=spec.uploader, filename=spec.filename,
            size=spec.size, content_type=spec.content_type, created=to_datetime(now),
            completed=None, path=None if self.external else str(self.path_for(slot)))

        def decide(global_bytes: int, daily_bytes: int) -> None:
            self.policy.check_usage(spec, Usage(global_bytes, daily_bytes))

        self.store.issue(record, to_datetime(self.policy.daily_window_start(now)), decide)
        return self._grant(slot, spec, now)

    def _grant(self, slot: str, spec: FileSpec, now: float) -> IssuedSlot:
        claims = tokens.make_claims(
            uploader=spec.uploader, slot=slot, filename=spec.filename, filesize=spec.size,
            filetype=spec.content_type, now=now, expires_after=self.policy.expires_after)
        url = self.slot_url(slot, spec.filename)
        return IssuedSlot(slot, url, url,
                          {"Authorization": f"Bearer {tokens.sign(self.secret, claims)}"})

    # -- expiry -------------------------------------------------------------------

    def prune(self, pause: Callable[[], object] = lambda: None) -> int:
        """Delete the files and rows of expired slots; the number of slots removed.

        `pause` runs between batches (the expiry job yields to other greenlets there).
        A file that cannot be deleted keeps its row, and is tried again next time.
        """
        if self.policy.expires_after < 0:
            return 0
        boundary = to_datetime(self.now() - self.policy.expires_after)
        removed = 0
        while True:
            records = self.store.created_until(self.host, boundary, PRUNE_BATCH)
            gone = [record.slot for record in records if self.remove_files(record.slot)]
            removed += self.store.delete(self.host, gone)
            if len(records) < PRUNE_BATCH or len(gone) < len(records):
                break
            pause()
        if removed:
            log.info("%s: pruned %d expired upload(s)", self.host, removed)
        return removed

    # -- start-up -------------------------------------------------------------------

    def recover(self) -> int:
        """Undo the uploads a killed process left half-done; the number of files removed.

        Run before the HTTP ports open. Partial files (`<slot>.bin~*`) go, and
        so does the whole file of a slot whose row was never marked complete:
        the process died between moving the file into place and recording it,
        so its PUT got no 201, and the client may PUT again. A file whose
        writer still holds its lock (`hold_while_writing`) is left alone.
        """
        if self.external or not self.directory.is_dir():
            return 0
        leftovers = list(self.directory.glob("*.bin~*"))
        leftovers += [path for record in self.store.incomplete(self.host)
                      if record.path and (path := Path(record.path)).exists()]
        removed = 0
        for path in leftovers:
            if being_written(path):
                continue  # another node's upload, on a directory they share
            try:
                path.unlink(missing_ok=True)
                removed += 1
            except OSError as error:
                log.error("%s: could not delete unfinished upload %s: %s", self.host, path,
                          error)
        if removed:
            log.info("%s: removed %d unfinished upload file(s)", self.host, removed)
        return removed

    def delete(self, slot: str) -> bool:
        """Remove one upload (the web admin): its file, then its record."""
        removed = self.remove_files(slot)
        return bool(self.store.delete(self.host, [slot])) and removed

    def remove_files(self, slot: str) -> bool:
        """Remove a slot's file and any leftover partial upload; False if one stays."""
        ok = True
        for path in [self.path_for(slot), *self.directory.glob(f"{glob_escape(slot)}.bin~*")]:
            try:
                path.unlink(missing_ok=True)
            except OSError as error:
                log.error("%s: could not delete expired file %s: %s", self.host, path, error)
                ok = False
        return ok


def glob_escape(text: str) -> str:
    """`text` as a literal in a glob pattern."""
    return re.sub(r"([*?\[])", r"[\1]", text)
