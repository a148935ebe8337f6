"""libtiff's process-wide error lines: counted, not printed.

GDAL (3.10 in the rasterio wheels, built on libtiff >= 4.5) reports a failed write or seek
of a GeoTIFF, a full disk among others, through libtiff's process-wide error handler, not
GDAL's own: libtiff's default prints ``_tiffWriteProc: No space left on device.`` straight to
file descriptor 2, past rasterio's and GDAL's error handling, and the write may even return
without an exception (a strip flushed when the dataset closes).

:func:`install` replaces that handler, in every libtiff the process has loaded (found in
``/proc/self/maps``; elsewhere nothing is done), with one that prints nothing and counts the
failed writes and seeks (WRITE_MODULES); :func:`failures` is the count so far, which
core/write_failures.py compares before and after a write. Only the ``ces`` command line asks
for it (:func:`enable`, in crossearth_cli/main.py): a host application such as QGIS keeps its
own handler.
"""
from __future__ import annotations

import ctypes
import os
import threading

_ENABLED = False
_COUNT = 0
_LAST_MODULE = ""
_INSTALLED: set[str] = set()
_LOCK = threading.Lock()

# void handler(const char *module, const char *fmt, va_list ap): the va_list is never read
_HANDLER_TYPE = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p)


#: the libtiff functions (GDAL's I/O procedures) whose errors are failed writes
WRITE_MODULES = ("_tiffWriteProc", "_tiffSeekProc")


def _count(module: bytes | None, fmt: bytes | None, ap: int | None) -> None:
    global _COUNT, _LAST_MODULE
    name = (module or b"").decode("utf-8", "replace")
    if name in WRITE_MODULES:
        _COUNT += 1
        _LAST_MODULE = name


_HANDLER = _HANDLER_TYPE(_count)   # kept alive for the life of the process


def enable() -> None:
    """Ask for :func:`install` at each write (the ``ces`` command line does)."""
    global _ENABLED
    _ENABLED = True


def enabled() -> bool:
    """Whether :func:`enable` was called in this process."""
    return _ENABLED


def failures() -> int:
    """Failed libtiff writes and seeks reported through the process-wide handler so far."""
    return _COUNT


def last_module() -> str:
    """The libtiff function that reported the last counted error (``_tiffWriteProc``...)."""
    return _LAST_MODULE


def loaded_libtiffs() -> list[str]:
    """Paths of the libtiff libraries mapped into this process (Linux; [] elsewhere)."""
    try:
        with open("/proc/self/maps") as f:
            fields = [line.split(None, 5) for line in f]
    except OSError:
        return []
    paths = {parts[5].strip() for parts in fields if len(parts) == 6}
    return sorted(p for p in paths
                  if os.path.basename(p).startswith("libtiff") and ".so" in os.path.basename(p)
                  and os.path.isfile(p))


def install() -> int:
    """Count, not print, the process-wide libtiff errors of every libtiff loaded so far that
    has not been handled yet (when :func:`enable` was called); returns how many libraries
    were newly handled."""
    if not _ENABLED:
        return 0
    done = 0
    with _LOCK:
        for path in loaded_libtiffs():
            if path in _INSTALLED:
                continue
            _INSTALLED.add(path)
            try:
                lib = ctypes.CDLL(path)   # the library already loaded: the same handle
                set_handler = lib.TIFFSetErrorHandler
            except (OSError, AttributeError):
                continue
            set_handler.restype = ctypes.c_void_p
            set_handler.argtypes = [_HANDLER_TYPE]
            set_handler(_HANDLER)
            done += 1
    return done
