"""One stretch or one estimated calibration for a set of rasters cut from one scene (e.g. a data
set's tiles that share their producer's fixed scaling), so that each tile is read as a window
of the whole scene would be at inference.
"""
from __future__ import annotations

import os
from typing import Optional, Sequence, Union

import numpy as np

from .calibration import estimate_calibration
from .sampling import EmptyRasterError, band_sample, scene_sample, stretch_of
from .sar_io import open_scene


def pooled_statistics(paths: Sequence[Union[str, os.PathLike]], max_pixels: int = 4_000_000,
                      **open_options) -> np.ndarray:
    """One stretch [3, 2] for several rasters cut from one scene (e.g. a data set's tiles that
    share their producer's fixed scaling): the percentiles of their pooled valid pixels, so
    each tile is stretched as a window of the whole scene would be at inference."""
    rng = np.random.default_rng(0)
    per_file = max(1, max_pixels // max(len(paths), 1))
    parts = []
    for p in paths:
        with open_scene(p, **open_options) as scene:
            vals, _ = scene_sample(scene)
        if vals.shape[1] > per_file:
            vals = vals[:, rng.choice(vals.shape[1], per_file, replace=False)]
        parts.append(vals)
    return stretch_of(np.concatenate(parts, axis=1) if parts else np.zeros((3, 0), np.float32))


def pooled_calibration(paths: Sequence[Union[str, os.PathLike]], max_pixels: int = 4_000_000,
                       **open_options) -> Optional[np.ndarray]:
    """One estimated calibration [n_bands, 2] (contract 3) for several rasters cut from one
    scene with one fixed scaling (e.g. ETCI's tiles): :func:`estimate_calibration` of their
    pooled valid pixels, so that a dry tile stays as bright as it is in its scene. None when
    the rasters are calibrated (nothing to estimate)."""
    rng = np.random.default_rng(0)
    per_file = max(1, max_pixels // max(len(paths), 1))
    parts, kinds = [], None
    for p in paths:
        try:
            scene = open_scene(p, **open_options)
        except EmptyRasterError:
            continue
        with scene:
            if scene.calibrated or not scene.fixed_mapping:
                return None
            vals = band_sample(scene)
            kinds = scene.band_kinds()
        if vals.shape[1] > per_file:
            vals = vals[:, rng.choice(vals.shape[1], per_file, replace=False)]
        parts.append(vals)
    if not parts:
        return None
    return estimate_calibration(np.concatenate(parts, axis=1), kinds)
