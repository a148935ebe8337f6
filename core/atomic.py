"""Atomic outputs: write to a temporary name beside the target, rename at the end.

Nothing partial is left behind on failure or Ctrl-C (KeyboardInterrupt included). Every
output file gets the mode the umask gives (0666 less the umask), whichever library wrote it.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator

from .errors import InputError, parameter


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
def atomic_output(final: os.PathLike | str, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path; on success rename it to ``final``, else remove it.

    >>> with atomic_output("out.gpkg") as tmp:   # doctest: +SKIP
    ...     write_gpkg(tmp)
    """
    final = check_writable(final, overwrite)
    tmp = temporary_sibling(final)
    try:
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
