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
from typing import Optional

_libc: Optional[ctypes.CDLL] = None
_looked_up = False


def _glibc() -> Optional[ctypes.CDLL]:
    global _libc, _looked_up
    if not _looked_up:
        _looked_up = True
        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name) if name else None
            _libc = lib if lib is not None and hasattr(lib, "malloc_trim") else None
        except OSError:
            _libc = None
    return _libc


def release_free_memory() -> bool:
    """Return the heap's free memory to the OS (glibc ``malloc_trim(0)``); True if it did."""
    lib = _glibc()
    if lib is None:
        return False
    return bool(lib.malloc_trim(0))
