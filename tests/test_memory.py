"""release_freed_memory: garbage collected, and the allocator's free pages handed back where it can."""

from __future__ import annotations

import ctypes.util
import gc
import sys
import weakref

from pytest_hemorrhage.memory import release_freed_memory


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_release_collects_garbage_and_trims_glibc() -> None:
    gc.disable()  # only release_freed_memory may collect the cycle
    try:
        ref = weakref.ref(_Cycle())
        assert ref() is not None
        trimmed = release_freed_memory()
        assert ref() is None
    finally:
        gc.enable()
    glibc = sys.platform.startswith("linux") and hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "malloc_trim")
    assert trimmed == glibc
