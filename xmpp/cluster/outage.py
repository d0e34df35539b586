"""One warning per outage of a loop that retries a Redis call every second
(the stream consumer): a node cut off from Redis, or whose inbox a reaper
closed meanwhile (NOGROUP until it rejoins), would otherwise log the same
line every second for as long as it lasts.

Pure: no Redis, so the unit tests drive it with plain exceptions.
"""

from __future__ import annotations

import logging


def failure_kind(error: BaseException) -> str:
    """What tells one failure from another: Redis's error code (NOGROUP,
    LOADING, ...) for an error reply, else the exception's class (a timeout, a
    refused connection)."""
    text = str(error)
    code = text.split(" ", 1)[0]
    if code.isupper() and code.isalpha():
        return code
    return type(error).__name__


class OutageLog:
    """Logs the first failure of an outage and each change of its kind (cut
    off, then the inbox found closed) as a warning, the repeats at debug
    level, and the end of the outage with how many attempts failed."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self.log = log
        self.what = what
        self.failures = 0
        self.kind: str | None = None

    def failed(self, error: BaseException, hint: str = "") -> None:
        self.failures += 1
        kind = failure_kind(error)
        level = logging.DEBUG if kind == self.kind else logging.WARNING
        self.kind = kind
        self.log.log(level, "%s failed (%s)%s; retrying", self.what, error, hint)

    def succeeded(self) -> None:
        if self.failures:
            self.log.info("%s works again after %d failed attempt(s)", self.what,
                          self.failures)
            self.failures, self.kind = 0, None
