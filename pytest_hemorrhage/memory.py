"""Giving memory back to the operating system once a check's copies are gone.

A check copies models (a candidate made for one test, the repaired copies its mitigations try).
Python frees them, but glibc's allocator keeps most of the freed pages of its heap for later,
so a long test session stays near its largest size. :func:`release_freed_memory` hands them back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

__all__ = ["release_freed_memory"]

_LIBC: ctypes.CDLL | None = None


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (the only one with ``malloc_trim``), else None."""
    global _LIBC
    if _LIBC is None and sys.platform.startswith("linux"):
        name = ctypes.util.find_library("c")
        try:
            libc = ctypes.CDLL(name) if name else None
        except OSError:
            libc = None
        _LIBC = libc if libc is not None and hasattr(libc, "malloc_trim") else None
    return _LIBC


def release_freed_memory() -> bool:
    """Collect garbage, then return the allocator's free pages to the system (glibc only).

    Returns whether the pages could be handed back (False on other platforms: nothing to do).
    """
    gc.collect()
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
