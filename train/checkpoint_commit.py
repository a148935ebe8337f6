"""The checkpoint commit protocol of training, with the RNG state that makes a resume exact.

A checkpoint in ``work_dir`` is one unit of two files: ``last.state-NNNNNNNN.pt`` (optimizer,
scheduler, the RNG states of every rank, iteration NNNNNNNN, best validation mIoU; a plain
tensor/number dict read back with ``torch.load(weights_only=True)``) is written first, then
``last.safetensors`` (the model, core.models.checkpoints, whose provenance names the iteration and so
its state file) replaces the previous one by an atomic rename: that rename is the commit.
Until it, the previous model and its state file are untouched; after it, the new pair is
complete; the superseded state file is removed last. A kill at any instant therefore leaves
the previous checkpoint or the new one (stray temporary files are ignored and cleaned by the
next save). A write that fails (a full disk...) removes what it wrote, the new state file
included, so the previous checkpoint is left alone and resumes; the failure is named for
``last.safetensors`` in one line (core/write_failures.py, exit status 2).

RNG state: Python's, numpy's and torch's (CPU and CUDA) generators as tensors, gathered from
every rank (:func:`all_rng_states`), so that a resumed run draws the same crops and
augmentations as an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import os
import random
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.distributed as dist

from ..core.errors import InputError
from ..core.models import checkpoints

STATE_SUFFIX = ".state.pt"     # legacy (before checkpoints were one unit): last.state.pt

#: Called with a phase name ("state-written", "model-written", "committed", "pruned") and the
#: work folder at each step of a checkpoint write. Tests use it to freeze the folder as a kill
#: at that instant would leave it; None in normal runs.
CHECKPOINT_HOOK: Optional[Callable[[str, Path], None]] = None


# -- RNG state --------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """This process's RNG states (torch CPU and CUDA, numpy, Python) as tensors and numbers."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": _py_state_to_tensor(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the RNG states of :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached"]))
    random.setstate(_py_state_from_tensor(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def _py_state_to_tensor(s) -> dict:
    return {"version": int(s[0]), "state": torch.tensor(s[1], dtype=torch.int64),
            "gauss": -1.0 if s[2] is None else float(s[2])}


def _py_state_from_tensor(d) -> tuple:
    return (d["version"], tuple(int(v) for v in d["state"].tolist()),
            None if d["gauss"] == -1.0 else d["gauss"])


def seed_everything(seed: int, rank: int = 0) -> None:
    """Seed Python, numpy and torch with ``seed + rank``."""
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2 ** 32)
    torch.manual_seed(seed + rank)


# -- checkpoint files ----------------------------------------------------------------------
def state_path(model_path: Path, iteration: Optional[int] = None) -> Path:
    """The training-state file of the checkpoint ``model_path`` at ``iteration``
    (``last.state-00000004.pt``); without an iteration, the legacy ``last.state.pt``."""
    stem = model_path.name.replace(".safetensors", "")
    if iteration is None:
        return model_path.with_name(stem + STATE_SUFFIX)
    return model_path.with_name(f"{stem}.state-{int(iteration):08d}.pt")


def _phase(name: str, folder: Path) -> None:
    if CHECKPOINT_HOOK is not None:
        CHECKPOINT_HOOK(name, folder)


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_training_state(path: Path, state: dict[str, Any]) -> None:
    """torch.save to a temporary sibling, flush it to disk, then rename (atomic). Written
    through a Python file, so a failed write raises its OSError (a full disk: ENOSPC), not
    only torch's "unexpected pos"."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def load_training_state(path: Path) -> dict[str, Any]:
    """A training state file read back (``torch.load(weights_only=True)``); InputError when
    it is missing or unreadable."""
    if not path.is_file():
        raise InputError(f"{path}: no training state to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(f"{path}: unreadable training state ({type(e).__name__}: {e})") from None


def checkpoint_iteration(model_path: Path) -> Optional[int]:
    """The iteration of the committed checkpoint ``model_path`` (None: there is none)."""
    if not model_path.is_file():
        return None
    prov = checkpoints.read_config(model_path).get("provenance", {}) or {}
    it = prov.get("iteration")
    return None if it is None else int(it)


def load_checkpoint_state(model_path: Path) -> dict[str, Any]:
    """The training state that belongs to the committed model ``model_path``."""
    it = checkpoint_iteration(model_path)
    if it is None:
        raise InputError(f"{model_path}: no checkpoint to resume from")
    path = state_path(model_path, it)
    if not path.is_file() and state_path(model_path).is_file():
        path = state_path(model_path)  # a run written before checkpoints were one unit
    return load_training_state(path)


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a nested dict / list / tuple (a training state's size)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def checkpoint_bytes(model: torch.nn.Module, state: Optional[dict[str, Any]] = None,
                     trainable: bool = True) -> int:
    """Bytes a checkpoint takes at least: the model file and its training state (``state``'s
    tensors; without one, AdamW's two moments of every trainable parameter)."""
    model_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if state is not None:
        return model_bytes + tensor_bytes(state)
    moments = sum(2 * p.numel() * p.element_size() for p in model.parameters()
                  if p.requires_grad or not trainable)
    return model_bytes + moments


def write_checkpoint(model: torch.nn.Module, model_path: Path, state: dict[str, Any],
                     **provenance: Any) -> None:
    """Write the model and its training state as one unit (see the module doc): the state
    file of ``state["iteration"]``, then the model to a temporary name, then the commit
    rename of the model, then the removal of superseded state and temporary files. A failed
    write removes the new state file too (unless it is the committed checkpoint's) and
    raises a WriteFailure naming ``model_path``."""
    from ..core.atomic import remove_path, temporary_sibling
    from ..core.write_failures import named_writes

    folder = model_path.parent
    it = int(state["iteration"])
    new_state = state_path(model_path, it)
    keep_state = checkpoint_iteration(model_path) == it   # the committed one's: never removed
    with named_writes(model_path, checkpoint_bytes(model, state)):
        try:
            save_training_state(new_state, state)
            _phase("state-written", folder)
            tmp = temporary_sibling(model_path)
            try:
                checkpoints.save(model, tmp, **provenance, iteration=it)
                _fsync(tmp)
                _phase("model-written", folder)
                os.replace(tmp, model_path)
            except BaseException:
                remove_path(tmp)
                raise
        except BaseException:
            if not keep_state:   # no orphan state file: the previous checkpoint stays whole
                with contextlib.suppress(OSError):
                    new_state.unlink()
            raise
    _fsync(folder)
    _phase("committed", folder)
    prune_checkpoint_files(model_path, it)
    _phase("pruned", folder)


def prune_checkpoint_files(model_path: Path, iteration: int) -> None:
    """Remove the state files of other iterations than the committed ``iteration`` and the
    temporary files of interrupted writes."""
    from ..core.atomic import remove_path

    folder, keep = model_path.parent, state_path(model_path, iteration).name
    stem = model_path.name.replace(".safetensors", "")
    for old in folder.glob(f"{stem}.state*.pt"):
        if old.name != keep:
            with contextlib.suppress(OSError):
                old.unlink()
    for pattern in (f".{stem}.*tmp*", f"..{stem}.*tmp*"):
        for stray in folder.glob(pattern):
            remove_path(stray)


def save_model(model: torch.nn.Module, path: Path, **provenance) -> None:
    """Write the model file of a checkpoint (core.models.checkpoints.save)."""
    checkpoints.save(model, path, **provenance)


def all_rng_states(world: int) -> list:
    """The RNG states of every rank (gathered to all under torchrun)."""
    if world > 1:
        states = [None] * world
        dist.all_gather_object(states, rng_state())
        return states
    return [rng_state()]
