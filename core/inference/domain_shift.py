"""The domain-shift warning: a scene whose per-tile SAR descriptors sit far from the model's
training tiles (the checkpoint's descriptors.train_stats) gets a warning in the raw units of
``ces descriptors``.

Descriptors: float [N, 3] per tile (H_DE, ENL, R_LR), scaled as the model sees them.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..scene.descriptors import unscale_descriptors

SHIFT_Z = 3.0                   # scene median this many training stds away


def _train_reference(train_stats: dict, names: Sequence[str]):
    """(mean [3], std [3], p01 [3] or None, p99 [3] or None) from either stats layout, or None.

    Layouts: train.finetune's {"H_DE": {"mean", "std", "p01", "p99"}, "ENL": {...},
    "R_LR": {...}, "tiles": n}, or {"mean": [3], "std": [3]}.
    """
    try:
        if all(isinstance(train_stats.get(n), dict) for n in names):
            per = [train_stats[n] for n in names]
            mean = np.array([float(d["mean"]) for d in per])
            std = np.array([float(d["std"]) for d in per])
            lo = np.array([float(d["p01"]) for d in per]) if all("p01" in d for d in per) else None
            hi = np.array([float(d["p99"]) for d in per]) if all("p99" in d for d in per) else None
            return mean, std, lo, hi
        mean = np.asarray(train_stats["mean"], np.float64).reshape(-1)
        std = np.asarray(train_stats["std"], np.float64).reshape(-1)
        if mean.size == 3 and std.size == 3:
            return mean, std, None, None
    except (KeyError, TypeError, ValueError):
        pass
    return None


def domain_shift_warning(descriptors: np.ndarray, train_stats: Optional[dict],
                         names: Sequence[str] = ("H_DE", "ENL", "R_LR"),
                         z_limit: float = SHIFT_Z,
                         scaling: Optional[dict] = None) -> Optional[str]:
    """A warning when the scene's per-tile descriptors [N, 3] sit far from the training data.

    The message gives the far descriptors in the raw units ``ces descriptors`` reports (the
    scaled values unscaled with ``scaling``, the model's descriptors.scaling): the scene's
    median tile and the training tiles' 1-99 % range (or mean ± 2 std when no percentiles).

    ``train_stats``: the checkpoint's descriptors.train_stats (scaled descriptors, as the model
    sees them; see :func:`_train_reference` for the layouts). A descriptor is far when the
    scene's median tile is more than ``z_limit`` training stds from the training mean and
    (when known) outside the training 1st..99th percentiles. None when nothing is far or
    nothing is known.
    """
    if not train_stats or descriptors is None or len(descriptors) == 0:
        return None
    ref = _train_reference(train_stats, names)
    if ref is None:
        return None
    mean, std, lo, hi = ref
    scene = np.median(np.asarray(descriptors, np.float64), axis=0)
    far = np.abs(scene - mean) / np.maximum(std, 1e-6) > z_limit
    if lo is not None and hi is not None:
        far &= (scene < lo) | (scene > hi)
    if not far.any():
        return None
    low = lo if lo is not None else mean - 2 * std
    high = hi if hi is not None else mean + 2 * std
    raw_scene, raw_lo, raw_hi = (unscale_descriptors(v, scaling) for v in (scene, low, high))
    parts = [f"{n} {s:.3g} (training tiles {a:.3g}..{b:.3g})"
             for n, s, a, b, f in zip(names, raw_scene, raw_lo, raw_hi, far) if f]
    return ("the scene looks unlike the model's training data (median tile descriptors, in "
            "the units of ces descriptors: " + "; ".join(parts) + "); expect degraded "
            "results, consider fine-tuning on this kind of SAR")
