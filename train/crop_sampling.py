"""Which windows of a labelled scene are read: random training crops and fixed validation tiles.

Windows are rasterio ``Window(col_off, row_off, width, height)`` in scene pixels. The crop
side is ``tile``, or the largest scene side when every scene is smaller (:func:`crop_size`);
a scene smaller than the crop is read as one window padded past its edge. Training crops
(:func:`choose_window`) are centred near a random labelled pixel with probability
``favour_labelled`` (so sparse polygon labels are seen), else uniform; the draw depends only
on the generator given. Validation tiles (:func:`tiles_of`) cover a scene without overlap,
the edge tiles shifted inside. Labels of a window (:func:`label_window`) are uint8 class
indices, 255 (ignored) past the scene's edge.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from rasterio.windows import Window

from .classes import IGNORE_INDEX
from .labelled_scenes import LabelledScene


def crop_size(scenes: Sequence[LabelledScene], tile: int) -> int:
    """The training crop side: ``tile``, or the largest scene side when all scenes are smaller."""
    return int(min(tile, max(max(s.width, s.height) for s in scenes)))


def choose_window(scene: LabelledScene, size: int, rng: np.random.Generator,
                  favour_labelled: float = 0.9) -> Window:
    """A random ``size`` x ``size`` window; with probability ``favour_labelled`` it is centred
    near a random labelled pixel (so sparse polygon labels are seen), else uniform."""
    h, w = scene.height, scene.width
    max_r, max_c = max(h - size, 0), max(w - size, 0)
    if max_r == 0 and max_c == 0:
        return Window(0, 0, size, size)
    if rng.random() < favour_labelled:
        flat = _labelled_index(scene)
        if flat.size:
            p = int(flat[rng.integers(flat.size)])
            r, c = divmod(p, w)
            r0 = int(np.clip(r - rng.integers(size), 0, max_r))
            c0 = int(np.clip(c - rng.integers(size), 0, max_c))
            return Window(c0, r0, size, size)
    return Window(int(rng.integers(max_c + 1)), int(rng.integers(max_r + 1)), size, size)


_LABELLED_CACHE: dict[int, np.ndarray] = {}


def _labelled_index(scene: LabelledScene, max_points: int = 200_000) -> np.ndarray:
    key = id(scene.labels)
    idx = _LABELLED_CACHE.get(key)
    if idx is None:
        idx = np.flatnonzero(scene.labels.ravel() != IGNORE_INDEX)
        if idx.size > max_points:
            idx = idx[:: int(math.ceil(idx.size / max_points))]
        _LABELLED_CACHE[key] = idx
    return idx


def label_window(labels: np.ndarray, window: Window) -> np.ndarray:
    """The labels of ``window`` (uint8), 255 past the edge."""
    h, w = int(window.height), int(window.width)
    r0, c0 = int(window.row_off), int(window.col_off)
    out = np.full((h, w), IGNORE_INDEX, np.uint8)
    rr0, cc0 = max(r0, 0), max(c0, 0)
    rr1, cc1 = min(r0 + h, labels.shape[0]), min(c0 + w, labels.shape[1])
    if rr1 > rr0 and cc1 > cc0:
        out[rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = labels[rr0:rr1, cc0:cc1]
    return out


def tiles_of(scene: LabelledScene, tile: int) -> list[Window]:
    """Non-overlapping tiles covering the scene (edge tiles shifted inside when possible)."""
    out = []
    th, tw = min(tile, scene.height), min(tile, scene.width)
    for r in range(0, scene.height, th):
        for c in range(0, scene.width, tw):
            out.append(Window(min(c, max(scene.width - tw, 0)), min(r, max(scene.height - th, 0)),
                              tw, th))
    return out
