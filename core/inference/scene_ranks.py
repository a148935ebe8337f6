"""Many scenes over many processes: inputs, ranks, shares, finished outputs, rank status.

No scheduler: under ``torchrun`` (``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``) or Slurm's
``srun`` (``SLURM_PROCID`` / ``SLURM_NTASKS`` / ``SLURM_LOCALID``), rank r of N takes every
N-th scene of the expanded input list, in its fixed order (:func:`share`); each rank runs on
its own device (``cuda:LOCAL_RANK``, :func:`rank_device`). A killed job resumes by running
again: the scenes whose outputs all exist are skipped (:func:`finished`).

Each rank writes its log (``<folder>/ces-segment.rank<r>.log``, one line per scene) and, when
it ends, its status (``<folder>/.ces-segment-status/<run>.rank<r>.json``: one record per
scene, written in a ``finally``, so a failing rank writes it too); rank 0 waits for every
rank's status and prints the summary table (:func:`wait_for_ranks`, :func:`summary_table`).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, TypeVar

from ..errors import InputError

T = TypeVar("T")
LIST_SUFFIXES = (".txt",)                     # a text file listing scenes, one per line
SCENE_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".nc", ".h5", ".safe")
STATUS_FOLDER = ".ces-segment-status"


def torchrun_command() -> list[str]:
    """The torchrun launcher of this Python: its ``torchrun`` script, one on PATH, or
    ``python -m torch.distributed.run``."""
    exe = Path(sys.executable).with_name("torchrun")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("torchrun")
    return [found] if found else [sys.executable, "-m", "torch.distributed.run"]


@dataclass(frozen=True)
class Rank:
    """This process's place among the processes of one job."""

    rank: int = 0
    world: int = 1
    local: int = 0
    launcher: str = "single"  # torchrun, slurm or single


def current_rank(environ: Optional[dict] = None) -> Rank:
    """The rank from torchrun's or Slurm's environment (torchrun wins); one process otherwise."""
    env = os.environ if environ is None else environ
    for rank, world, local, launcher in (("RANK", "WORLD_SIZE", "LOCAL_RANK", "torchrun"),
                                         ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "slurm")):
        if rank in env and world in env:
            try:
                values = int(env[rank]), int(env[world]), int(env.get(local, env[rank]))
            except ValueError:
                raise InputError(f"{rank}/{world}/{local} are not integers "
                                 f"({launcher})") from None
            return _checked(*values, launcher)
    return Rank()


def _checked(rank: int, world: int, local: int, launcher: str) -> Rank:
    if world < 1 or not 0 <= rank < world or local < 0:
        raise InputError(f"rank {rank} of {world} processes ({launcher}) is not a valid rank")
    return Rank(rank, world, local, launcher)


def run_id(scenes: Sequence[Path], world: int, environ: Optional[dict] = None) -> str:
    """An id shared by all ranks of one job: the launcher's job id and the scene list."""
    env = os.environ if environ is None else environ
    job = env.get("TORCHELASTIC_RUN_ID") or ".".join(
        env[k] for k in ("SLURM_JOB_ID", "SLURM_STEP_ID") if k in env) or "local"
    digest = hashlib.sha1("\n".join([str(world), *map(str, scenes)]).encode()).hexdigest()[:12]
    return f"{job}-{digest}".replace(os.sep, "_")


def expand_inputs(inputs: Sequence[Path]) -> list[Path]:
    """Scene paths from files, folders (their rasters and Sentinel-1 products, sorted by name)
    and .txt lists (one path per line, relative to the list's folder; blank lines and #
    comments skipped), in the order given; a Sentinel-1 product (its zip, .SAFE folder,
    manifest or a SAFE subdataset) is one scene. InputError for a missing path or an empty
    folder or list."""
    from ..scene.sentinel1.product import is_product

    scenes: list[Path] = []
    for item in map(Path, inputs):
        if is_product(item):
            scenes.append(item)
        elif item.is_dir():
            found = sorted(p for p in item.iterdir()
                           if (p.is_file() and p.suffix.lower() in SCENE_SUFFIXES) or is_product(p))
            if not found:
                raise InputError(f"{item}: the folder holds no raster "
                                 f"({', '.join(SCENE_SUFFIXES)})")
            scenes.extend(found)
        elif item.suffix.lower() in LIST_SUFFIXES and item.is_file():
            listed = []
            for line in item.read_text().splitlines():
                line = line.strip()
                if line and not line.startswith("#"):
                    path = Path(line).expanduser()
                    listed.append(path if path.is_absolute() else item.parent / path)
            if not listed:
                raise InputError(f"{item}: the list names no scene")
            scenes.extend(listed)
        else:
            scenes.append(item)
    return scenes


def share(items: Sequence[T], rank: int, world: int) -> list[T]:
    """Rank ``rank``'s items: every ``world``-th one, starting at ``rank``."""
    return list(items[rank::world])


def finished(outputs: Sequence[Optional[Path]]) -> bool:
    """All of a scene's requested outputs exist (they are written atomically: all or none)."""
    wanted = [Path(p) for p in outputs if p is not None]
    return bool(wanted) and all(p.exists() for p in wanted)


def rank_device(device: str, rank: Rank) -> str:
    """``device`` for this rank: with several processes, ``auto``/``cuda`` become
    ``cuda:LOCAL_RANK`` (modulo the visible GPUs) where CUDA is present
    (core.inference.devices.resolve_device)."""
    if rank.world == 1:
        return device
    from .devices import resolve_device

    return str(resolve_device(device, rank.local))


class RankLog:
    """``<folder>/ces-segment.rank<r>.log``: a line per event, flushed at once."""

    def __init__(self, folder: Path, rank: Rank):
        self.path = Path(folder) / f"ces-segment.rank{rank.rank}.log"
        self._file = open(self.path, "a", encoding="utf-8")
        self.write(f"rank {rank.rank} of {rank.world} ({rank.launcher}, local {rank.local}) "
                   f"pid {os.getpid()} started")

    def write(self, message: str) -> None:
        """Append one time-stamped line and flush."""
        self._file.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")
        self._file.flush()

    def close(self) -> None:
        """Close the log file."""
        self._file.close()


def status_path(folder: Path, run: str, rank: int) -> Path:
    """The status file of ``rank`` in ``run`` (JSON, in the output folder's status folder)."""
    return Path(folder) / STATUS_FOLDER / f"{run}.rank{rank}.json"


def write_status(folder: Path, run: str, rank: Rank, records: list[dict], ok: bool) -> None:
    """This rank's scene records [{scene, status, polygons?, windows?, seconds?, error?}]."""
    path = status_path(folder, run, rank.rank)
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"rank": rank.rank, "ok": ok, "scenes": records}))
    os.replace(tmp, path)


def wait_for_ranks(folder: Path, run: str, world: int, poll_s: float = 0.5,
                   timeout_s: Optional[float] = None) -> list[dict]:
    """Rank 0: every rank's status (waits until all are written), then removes them."""
    paths = [status_path(folder, run, r) for r in range(world)]
    start = time.monotonic()
    while not all(p.exists() for p in paths):
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            break
        time.sleep(poll_s)
    statuses = []
    for r, p in enumerate(paths):
        try:
            statuses.append(json.loads(p.read_text()))
            p.unlink()
        except (OSError, ValueError):
            statuses.append({"rank": r, "ok": False, "scenes": [], "missing": True})
    try:
        paths[0].parent.rmdir()
    except OSError:
        pass
    return statuses


def summary_table(statuses: list[dict]) -> list[str]:
    """Lines of the table of every scene of every rank (in scene order within a rank)."""
    rows = [(Path(rec["scene"]).name, str(st["rank"]), rec["status"],
             str(rec.get("polygons", "")), str(rec.get("windows", "")),
             f"{rec['seconds']:.1f}" if "seconds" in rec else "")
            for st in statuses for rec in st["scenes"]]
    head = ("scene", "rank", "status", "polygons", "windows", "seconds")
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" if i < 3 else f"{{:>{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*head)] + [fmt.format(*r) for r in rows]
    counts = {s: sum(1 for r in rows if r[2] == s) for s in ("done", "skipped", "failed")}
    missing = [str(st["rank"]) for st in statuses if st.get("missing")]
    total = f"{len(rows)} scenes: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    if missing:
        total += f"; no status from rank(s) {', '.join(missing)}"
    return lines + [total]
