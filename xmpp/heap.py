"""The process's heap: what the cyclic garbage collector walks, and giving
freed C heap memory back to the operating system.

glibc's malloc keeps the pages of freed chunks mapped unless the free space
is at the top of the heap; the buffers of connections that ended (expat
parsers, greenlet stacks, socket reads) leave such holes below the memory of
sessions that live on (XEP-0198 hibernation), and the process's resident
memory never shrinks back. `malloc_trim(0)` returns every free page.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None


_TRIM = _malloc_trim()


def release_free_heap() -> None:
    """Return the C heap's free pages to the system (a few ms on a large heap)."""
    if _TRIM is not None:
        _TRIM(0)


def freeze_startup_objects() -> None:
    """Leave what start-up made (modules, the config, SQLAlchemy's mappers, the
    hosts' modules and HTTP apps, objects that live as long as the process) out
    of every later garbage collection.

    Why: a full collection walks every tracked object, and while sessions are
    being set up one comes every thousand or so logins; with the start-up
    objects in it each took some 170 ms (2,000 logins paid two: 0.17 ms a
    login, a tenth of its CPU), without them half that. Items waiting in the
    archive queue live long enough to reach the oldest generation and trigger
    full collections often (c2s_msgs with mam: 1.7 s of them, 0.2 s frozen).
    What is garbage already is collected first, so none of it is kept for ever.
    Then the heap pages start-up freed (that garbage, among it the Lua state
    that read the config) go back to the system: some 0.8 MiB of the resident
    memory before the first client.
    """
    gc.collect()
    gc.freeze()
    release_free_heap()
