"""A write that failed for a reason outside the program (a full disk, a read-only or failing
file system, a denied permission), named in one line: exit status 2, like bad input
(docs/contracts.md §5, "Exit status and messages").

:func:`named_writes` wraps a write (core/atomic.py wraps every output and temporary folder
in it) and turns whatever the writing library raised into a :class:`WriteFailure` naming the
user's path, never a hidden temporary sibling or folder, one line::

    no space left on device writing out/flood.gpkg (about 240 MB needed, 12 MB free)
    disk quota exceeded writing out/flood.gpkg (about 240 MB needed)
    read-only file system writing out/model.safetensors
    input/output error writing out/flood_classes.tif
    permission denied writing out/report.json

The libraries say it in many ways: an ``OSError`` with its errno (Python, Pillow), the errno
in words (safetensors' "os error 28", SQLite's "database or disk is full"), or nothing that
names the cause (GDAL's "TIFFAppendToStrip: Write error", OGR's "no such table", torch's
"unexpected pos"; libtiff's own lines are counted by core/tiff_messages.py). So besides the
exception chain, a failed write is one whose file system has less than ``FULL_MARGIN`` free
(a full disk) or is mounted read-only. Sizes: ``needed`` is the estimate in bytes of what
the run needs on that file system (core/disk_space.py); the free space is measured when the
message is made, after the temporaries are gone, so it is what the user sees; the need shown
is never below the free space (the write did not fit in it). MB = 1,000,000 bytes.
"""
from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Iterator, Optional, Union

from . import tiff_messages
from .disk_space import device_of, existing_folder, free_bytes, megabytes_free, megabytes_needed
from .errors import InputError

PathLike = Union[str, os.PathLike]

#: below this many free bytes after a failed write, the file system counts as full
FULL_MARGIN = 1 << 20
#: the errno values that name a write failure, in the words of the message
REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EIO: "input/output error",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EFBIG: "file too large for its file system",
}
#: the same errors as the libraries word them in their messages (lower case)
_MARKERS = (
    ("no space left on device", errno.ENOSPC), ("os error 28", errno.ENOSPC),
    ("database or disk is full", errno.ENOSPC), ("not enough space on the disk", errno.ENOSPC),
    ("disk quota exceeded", errno.EDQUOT), ("os error 122", errno.EDQUOT),
    ("read-only file system", errno.EROFS), ("os error 30", errno.EROFS),
)
#: a temporary sibling (core.atomic.temporary_sibling) or a run's temporary folder
TEMPORARY_FOLDER_PREFIX = ".ces-"


class WriteFailure(InputError):
    """Writing ``path`` failed with ``error_number`` (an errno of REASONS); ``needed``: the
    bytes the run needs on that file system (None: not known). The message (module doc)
    measures the free space each time it is made."""

    def __init__(self, path: PathLike, error_number: int, needed: Optional[int] = None):
        self.error_number = int(error_number)
        self.needed = needed
        self.path = Path(path)
        super().__init__(self._text(self.path), self.path)

    def _text(self, path: Path) -> str:
        reason = REASONS.get(self.error_number, os.strerror(self.error_number).lower())
        if self.error_number == errno.ENOSPC:
            free = free_bytes(path)
            need = max(self.needed or 0, free + 1)
            return (f"{reason} writing {path} (about {megabytes_needed(need)} MB needed, "
                    f"{megabytes_free(free)} MB free)")
        if self.error_number == errno.EDQUOT and self.needed:
            return f"{reason} writing {path} (about {megabytes_needed(self.needed)} MB needed)"
        return f"{reason} writing {path}"

    @property
    def template(self) -> str:
        """The message (it marks no parameter), with the free space as it is now."""
        return self._text(self.path)

    @template.setter
    def template(self, value: str) -> None:   # InputError sets it; the text is made anew
        pass

    def __str__(self) -> str:
        return self._text(self.path)

    def renamed(self, path: PathLike) -> "WriteFailure":
        """The same failure naming ``path`` (the user's output a temporary was written for)."""
        return WriteFailure(path, self.error_number, self.needed)

    def needing(self, nbytes: Optional[int]) -> "WriteFailure":
        """The same failure with the need raised to ``nbytes`` (the run's whole need)."""
        if not nbytes or (self.needed or 0) >= nbytes:
            return self
        return WriteFailure(self.path, self.error_number, nbytes)


def is_temporary(path: PathLike) -> bool:
    """Whether ``path`` is a hidden temporary: a temporary sibling (``.NAME.tmp-XXXX.ext``) or
    inside a run's temporary folder (``.ces-*``)."""
    p = Path(path)
    if p.name.startswith(".") and ".tmp-" in p.name:
        return True
    return any(part.startswith(TEMPORARY_FOLDER_PREFIX) for part in p.parts)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [error]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack += [e.__cause__, e.__context__]


def _within(filename: object, folder: Path) -> bool:
    """Whether an OSError's file lies in ``folder`` (the folder being written); True when the
    error names no file."""
    if filename is None:
        return True
    try:
        Path(os.fsdecode(filename)).resolve().relative_to(folder.resolve())
        return True
    except (ValueError, TypeError, OSError):
        return False


def read_only(folder: PathLike) -> bool:
    """Whether the file system of ``folder`` is mounted read-only."""
    flag = getattr(os, "ST_RDONLY", None)
    if flag is None:
        return False
    try:
        return bool(os.statvfs(existing_folder(folder)).f_flag & flag)
    except OSError:
        return False


def failure_errno(error: BaseException, folder: PathLike, tiff_failed: bool = False
                  ) -> Optional[int]:
    """The errno (of REASONS) of a write into ``folder`` that raised ``error``, or None when
    the error is not a write failure (bad input, Ctrl-C, a failure of the work). ``tiff_failed``:
    libtiff reported a write error meanwhile (core/tiff_messages.py)."""
    if isinstance(error, (InputError, KeyboardInterrupt, SystemExit, GeneratorExit)):
        return None
    folder = existing_folder(folder)
    chain = list(_chain(error))
    for e in chain:
        if isinstance(e, OSError) and e.errno in REASONS:
            if e.errno in (errno.ENOSPC, errno.EDQUOT) or _within(e.filename, folder):
                return e.errno
    for e in chain:
        text = str(e).lower()
        for marker, number in _MARKERS:
            if marker in text:
                return number
    if not isinstance(error, Exception):
        return None
    try:
        if free_bytes(folder) < FULL_MARGIN:
            return errno.ENOSPC
    except OSError:
        return None
    if read_only(folder):
        return errno.EROFS
    return errno.EIO if tiff_failed else None


@contextlib.contextmanager
def named_writes(path: PathLike, needed: Optional[int] = None) -> Iterator[None]:
    """Within: a write failure becomes a WriteFailure naming ``path`` (module doc); one named
    inside for a hidden temporary is renamed to ``path``, and ``needed`` (bytes the run needs
    there) raises its need. Bad input, Ctrl-C and failures of the work pass unchanged. A
    libtiff write error that raised nothing is raised here at the end."""
    path = Path(path)
    folder = existing_folder(path)
    tiff_messages.install()
    before = tiff_messages.failures()
    try:
        yield
    except WriteFailure as e:
        failure = e
        if is_temporary(e.path) and not is_temporary(path):
            failure = e.renamed(path)
        if needed and _same_device(failure.path, path):
            failure = failure.needing(needed)
        if failure is e:
            raise
        raise failure from e
    except BaseException as e:
        number = failure_errno(e, folder, tiff_messages.failures() > before)
        if number is None:
            raise
        raise WriteFailure(path, number, needed) from e
    if tiff_messages.failures() > before:
        full = free_bytes(folder) < FULL_MARGIN
        raise WriteFailure(path, errno.ENOSPC if full else errno.EIO, needed)


def _same_device(a: Path, b: Path) -> bool:
    try:
        return device_of(a) == device_of(b)
    except OSError:
        return False
