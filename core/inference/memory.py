"""Handing freed heap memory back to the operating system during long streamed work.

glibc keeps memory freed by one thread in that thread's arena; a window reader on a
background thread and the model on the main thread leave such free blocks behind, so the
resident size of a long run creeps up with the scene's size although what is alive does not.
:func:`release_free_memory` asks glibc (``malloc_trim``) to return them; elsewhere it does
nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Optional


@functools.lru_cache(maxsize=1)
def _glibc() -> Optional[ctypes.CDLL]:
    """The C library when it is glibc (has ``malloc_trim``), else None; looked up once."""
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None


def release_free_memory() -> bool:
    """Return the heap's free memory to the OS (glibc ``malloc_trim(0)``); True if it did."""
    lib = _glibc()
    if lib is None:
        return False
    return bool(lib.malloc_trim(0))
