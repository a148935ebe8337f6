"""Free disk space, and the pre-flight check of the space a run's files need.

Units: bytes everywhere; messages show megabytes, ``MB`` = 1,000,000 bytes (docs/contracts.md
§5, "Exit status and messages"). Free space is what an unprivileged writer may use
(``statvfs`` ``f_bavail``), measured in the nearest folder of a path that exists, so it can
be asked for outputs and work folders that are not made yet.

A :class:`Need` is one file or folder of a run: the path a message names (the user's output,
never a hidden temporary), the bytes it takes at least, and whether it stays (``kept``: an
output, a checkpoint) or is removed before the next scene (a temporary raster, a prepared
scene). :func:`check_space` sums the needs of each file system (kept ones all; temporary ones
scene by scene, the largest scene) and refuses at once (core.write_failures.WriteFailure,
exit status 2) where the free space is short of that sum::

    no space left on device writing out/flood.gpkg (about 240 MB needed, 12 MB free)

The sizes are lower bounds (the estimates are calibrated on compressed outputs of real runs),
so a refusal means the run would certainly fail; a run that passes may still fill the disk,
and then its write failure is named in the same words (core/write_failures.py).
"""
from __future__ import annotations

import errno
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence, Union

PathLike = Union[str, os.PathLike]
MB = 1_000_000


def existing_folder(path: PathLike) -> Path:
    """The nearest folder of ``path`` that exists: itself when it is one, else its parent,
    its parent's parent... (``.`` for a relative path whose parents are all missing)."""
    p = Path(path)
    if p.is_dir():
        return p
    for parent in p.parents:
        if parent.is_dir():
            return parent
    return Path(".")


def free_bytes(path: PathLike) -> int:
    """Bytes free for writing at ``path`` (in its nearest existing folder)."""
    return int(shutil.disk_usage(existing_folder(path)).free)


def device_of(path: PathLike) -> int:
    """The file system (``st_dev``) that ``path`` is, or would be, written on."""
    return os.stat(existing_folder(path)).st_dev


def megabytes_needed(nbytes: int) -> int:
    """``nbytes`` in whole MB, rounded up (a need is never shown smaller than it is)."""
    return int(math.ceil(max(0, nbytes) / MB))


def megabytes_free(nbytes: int) -> int:
    """``nbytes`` in whole MB, rounded down (free space is never shown larger than it is)."""
    return int(max(0, nbytes) // MB)


@dataclass(frozen=True)
class Need:
    """``bytes`` (at least) that writing ``path`` takes in the file system of ``where``
    (default: ``path`` itself); ``kept``: the file stays to the end of the run; ``job``:
    the scene (or other unit) a temporary belongs to (temporaries of different jobs never
    coexist)."""

    path: Path
    bytes: int
    kept: bool = True
    where: Path | None = None
    job: int = 0


def need(path: PathLike, nbytes: float, *, kept: bool = True, where: PathLike | None = None,
         job: int = 0) -> Need:
    """A :class:`Need` of ``nbytes`` (rounded up) for ``path``."""
    return Need(Path(path), int(math.ceil(max(0.0, float(nbytes)))), kept,
                None if where is None else Path(where), job)


def device_totals(needs: Iterable[Need]) -> dict[int, tuple[Path, Path, int]]:
    """{st_dev: (the path to name, a folder on it, bytes needed)}: per file system, every kept
    need plus the largest job's temporaries; the path named is the first kept output there
    (else the first need)."""
    kept: dict[int, int] = {}
    temporary: dict[int, dict[int, int]] = {}
    first: dict[int, tuple[Path, Path]] = {}
    named_kept: set[int] = set()
    for n in needs:
        where = n.where if n.where is not None else n.path
        dev = device_of(where)
        if dev not in first or (n.kept and dev not in named_kept):
            first[dev] = (n.path, existing_folder(where))
            if n.kept:
                named_kept.add(dev)
        if n.kept:
            kept[dev] = kept.get(dev, 0) + n.bytes
        else:
            jobs = temporary.setdefault(dev, {})
            jobs[n.job] = jobs.get(n.job, 0) + n.bytes
    return {dev: (first[dev][0], first[dev][1],
                  kept.get(dev, 0) + max(temporary.get(dev, {0: 0}).values()))
            for dev in first}


def check_space(needs: Sequence[Need]) -> None:
    """Refuse at once (WriteFailure, ENOSPC) when a file system has less free space than
    the run's ``needs`` there (module doc); nothing is written either way."""
    from .write_failures import WriteFailure

    for _dev, (path, folder, total) in device_totals(needs).items():
        if total > 0 and free_bytes(folder) < total:
            raise WriteFailure(path, errno.ENOSPC, needed=total)
