"""Giving freed C heap memory back to the operating system.

glibc's malloc keeps the pages of freed chunks mapped unless the free space
is at the top of the heap; the buffers of connections that ended (expat
parsers, greenlet stacks, socket reads) leave such holes below the memory of
sessions that live on (XEP-0198 hibernation), and the process's resident
memory never shrinks back. `malloc_trim(0)` returns every free page.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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
