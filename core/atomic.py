"""Atomic outputs: write to a temporary name beside the target, rename at the end.

Nothing partial is left behind on failure or Ctrl-C (KeyboardInterrupt included). Every
output file gets the mode the umask gives (0666 less the umask), whichever library wrote it.
A write that fails for a reason outside the program (a full disk...) is named in one line
for the user's path, not the temporary one (core/write_failures.py); ``needed`` is the bytes
the run needs on that file system, for the message (core/disk_space.py).
:func:`temporary_folder` is the same for a run's temporary files (``.ces-*`` folders).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator, Optional

from .errors import InputError, parameter
from .write_failures import TEMPORARY_FOLDER_PREFIX, named_writes


def temporary_sibling(final: os.PathLike | str) -> Path:
    """A unique temporary path in the folder of ``final`` that keeps its extension(s).

    The extension is kept because GDAL and OGR pick their driver from it.
    """
    final = Path(final)
    suffix = "".join(final.suffixes) or ""
    stem = final.name[: len(final.name) - len(suffix)] if suffix else final.name
    return final.with_name(f".{stem}.tmp-{uuid.uuid4().hex[:8]}{suffix}")


def check_writable(final: os.PathLike | str, overwrite: bool = False) -> Path:
    """Refuse (InputError) an output whose folder is missing or unwritable, or that exists."""
    final = Path(final)
    folder = final.parent if str(final.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"{final}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise InputError(f"{final}: output folder {folder} is not writable")
    if final.exists() and not overwrite:
        raise InputError(f"{final}: output exists (use {parameter('overwrite')} to replace it)")
    return final


def current_umask() -> int:
    """The process umask (read from /proc where possible: os.umask can only be read by
    setting it, which races with other threads creating files)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: os.PathLike | str) -> None:
    """Give a written file the mode a plain ``open()`` would (0666 less the umask): some
    writers (safetensors) create their files 0600."""
    path = Path(path)
    if path.is_file() and not path.is_symlink():
        with contextlib.suppress(OSError):
            os.chmod(path, 0o666 & ~current_umask())


def remove_path(path: os.PathLike | str) -> None:
    """Remove a file or folder (and GDAL/SQLite side files) if present."""
    path = Path(path)
    for p in (path, Path(str(path) + "-journal"), Path(str(path) + "-wal"),
              Path(str(path) + "-shm"), Path(str(path) + ".aux.xml")):
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        elif p.exists() or p.is_symlink():
            with contextlib.suppress(OSError):
                p.unlink()
    if path.suffix.lower() == ".shp":  # a shapefile is several files
        for side in path.parent.glob(path.stem + ".*"):
            with contextlib.suppress(OSError):
                side.unlink()


@contextlib.contextmanager
def atomic_output(final: os.PathLike | str, overwrite: bool = False,
                  needed: Optional[int] = None) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to ``final``, else remove it. A write
    failure (full disk...) becomes a WriteFailure naming ``final`` (``needed``: bytes the run
    needs there, for its message).

    >>> with atomic_output("out.gpkg") as tmp:   # doctest: +SKIP
    ...     write_gpkg(tmp)
    """
    final = check_writable(final, overwrite)
    tmp = temporary_sibling(final)
    try:
        with named_writes(final, needed):
            yield tmp
            if final.suffix.lower() == ".shp":
                for side in tmp.parent.glob(tmp.stem + ".*"):
                    os.replace(side, final.with_suffix(side.suffix))
            else:
                follow_umask(tmp)
                if final.is_dir():
                    shutil.rmtree(final)
                os.replace(tmp, final)
    except BaseException:
        remove_path(tmp)
        raise


@contextlib.contextmanager
def temporary_folder(folder: os.PathLike | str, kind: str, output: os.PathLike | str,
                     needed: Optional[int] = None) -> Iterator[Path]:
    """A new hidden folder ``.ces-KIND-XXXX`` in ``folder`` for a run's temporary files,
    removed on exit whatever happens; a write failure inside becomes a WriteFailure naming
    ``output`` (the user's output the temporaries are for; ``needed``: bytes the run needs)."""
    import tempfile

    with named_writes(output, needed):   # making it (a full disk may have no inode left)
        made = tempfile.TemporaryDirectory(prefix=f"{TEMPORARY_FOLDER_PREFIX}{kind}-", dir=folder)
    with made as tmp:
        with named_writes(output, needed):   # told apart while the temporaries still fill it
            yield Path(tmp)
