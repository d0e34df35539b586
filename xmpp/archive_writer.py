"""Archive writes off the routing path: items wait in a bounded queue and a
worker greenlet appends them in batches, so a slow database slows archiving,
never delivery.

When the queue is full, `offer` refuses at once and the caller delivers the
message unarchived. A batch the database refuses is retried with a growing
pause; after `MAX_ATTEMPTS` failures its items are tried one by one and the
ones still refused are dropped (logged), so one bad item cannot stop the rest.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import gevent
from gevent.event import Event
from gevent.lock import Semaphore

from storage.stores import ArchiveEntry

MAX_ATTEMPTS = 5
# Rows per transaction. A batch's wall time is mostly waiting (for the thread
# to be scheduled, for the hub to take the result back), not rows, so under a
# load of a few thousand messages a second 1000-row batches fell behind and the
# full queue refused messages; SQLite takes ~4000 rows of 8 values in one statement.
BATCH_SIZE = 4000
GATHER_DELAY = 0.05  # seconds the worker waits for more items before writing
FIRST_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 30.0


class ArchiveWriter:
    """Appends items to one archive store from a worker greenlet."""

    def __init__(self, store: Any, log: logging.Logger, *, capacity: int = 10000,
                 batch_size: int = BATCH_SIZE, gather_delay: float = GATHER_DELAY) -> None:
        self._store = store
        self._log = log
        self.capacity = capacity
        self.batch_size = batch_size
        self.gather_delay = gather_delay
        self._pending: deque[ArchiveEntry] = deque()
        self._wake = Event()
        # Held while a batch is written, so flush() sees every earlier item committed.
        self._writing = Semaphore()
        self._worker: gevent.Greenlet | None = None
        self._stopped = False
        self.refused = 0

    def __len__(self) -> int:
        return len(self._pending)

    def offer(self, entry: ArchiveEntry) -> bool:
        """Queue `entry`; False (at once) when the queue is full or stopped."""
        if self._stopped:
            return False
        if len(self._pending) >= self.capacity:
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                self._log.warning("Archive queue full (%d items): %d messages not archived",
                                  self.capacity, self.refused)
            return False
        self._pending.append(entry)
        if not self._wake.is_set():
            self._wake.set()
        if self._worker is None or self._worker.dead:
            self._worker = gevent.spawn(self._run)
        return True

    def flush(self) -> None:
        """Write everything queued now, in this greenlet (before a query reads)."""
        with self._writing:
            self._write_pending()

    def discard(self, user: str) -> None:
        """Forget the queued items of a user whose account is gone."""
        with self._writing:
            kept = [entry for entry in self._pending if entry.user != user]
            self._pending = deque(kept)

    def stop(self) -> None:
        """End the worker and write what is left (at shutdown); later
        messages are not archived."""
        self._stopped = True
        if self._worker is not None:
            # Not in the middle of a batch: killed while it waited for the
            # database, the worker would leave rows committed but still queued,
            # and the final flush would write them again and fail on their keys.
            with self._writing:
                self._worker.kill()
            self._worker = None
        try:
            self.flush()
        except Exception as error:
            self._log.error("Could not archive %d queued messages at shutdown: %s",
                            len(self._pending), error)

    def _run(self) -> None:
        attempts = 0
        while True:
            self._wake.wait()
            # Let a batch gather: a commit costs more than many rows in it.
            gevent.sleep(self.gather_delay)
            self._wake.clear()
            try:
                self.flush()
                attempts = 0
            except Exception as error:
                attempts += 1
                self._log.error("Archiving %d messages failed (attempt %d): %s",
                                len(self._pending), attempts, error)
                if attempts >= MAX_ATTEMPTS:
                    self._write_one_by_one()
                    attempts = 0
                gevent.sleep(min(FIRST_RETRY_DELAY * 2 ** attempts, MAX_RETRY_DELAY))
                self._wake.set()

    def _append(self, batch: list[ArchiveEntry]) -> None:
        # A store that blocks (SQLite) runs its statement in a thread of the
        # hub's pool, so routing goes on meanwhile.
        self._store.append_many(batch, run_blocking=gevent.get_hub().threadpool.apply)

    def _write_pending(self) -> None:
        pending = self._pending
        while pending:
            batch = [pending[i] for i in range(min(self.batch_size, len(pending)))]
            self._append(batch)
            for _ in batch:
                pending.popleft()

    def _write_one_by_one(self) -> None:
        with self._writing:
            pending = self._pending
            for _ in range(min(self.batch_size, len(pending))):
                entry = pending[0]
                try:
                    self._append([entry])
                except Exception as error:
                    self._log.error("Dropping archive item %s of %s: %s", entry.key,
                                    entry.user, error)
                pending.popleft()
