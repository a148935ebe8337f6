"""A real before/after pair whose truth is known, for the change tests.

The after scene is a crop of the Sen1Floods11 Spain chip (examples/, dB, VV + VH, EPSG:4326).
The before scene is the same crop with its labelled water replaced by land backscatter of the
same chip: each water pixel takes the value of the nearest land pixel along a few fixed
shifts, so the land texture stays spatially correlated as in a real scene. The labels' water
is then exactly the new water.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import rasterio
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO / "examples" / "Spain_7370579_S1Hand.tif"
LABELS = REPO / "examples" / "Spain_7370579_LabelHand.tif"
CROP = Window(256, 0, 256, 256)          # the chip's north-east quarter: flooded fields and land
SHIFTS = [(0, 64), (64, 0), (0, -64), (-64, 0), (64, 64), (-64, -64), (64, -64), (-64, 64),
          (0, 128), (128, 0), (0, -128), (-128, 0)]


def _write(path: Path, data: np.ndarray, profile: dict, names=("VV", "VH")) -> Path:
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = tuple(names[: data.shape[0]])
    return path


def write_pair(folder: Path, after_name: str = "S1_20190301_after.tif",
               before_name: str = "S1_20190101_before.tif",
               window: Optional[Window] = None) -> tuple[Path, Path, Path, np.ndarray]:
    """(after, before, labels, water bool [h, w]) written into ``folder``."""
    window = window or CROP
    with rasterio.open(SCENE) as src, rasterio.open(LABELS) as lab:
        after = src.read(window=window)
        labels = lab.read(1, window=window)
        profile = {**src.profile, "width": int(window.width), "height": int(window.height),
                   "transform": src.window_transform(window), "compress": "deflate"}
        label_profile = {**lab.profile, "width": int(window.width),
                         "height": int(window.height), "transform": lab.window_transform(window)}
    water = labels == 1
    land = (labels == 0) & np.isfinite(after).all(axis=0)
    before = after.copy()
    todo = water.copy()
    for dy, dx in SHIFTS:
        src_land = np.roll(land, (dy, dx), axis=(0, 1))
        take = todo & src_land
        before[:, take] = np.roll(after, (dy, dx), axis=(1, 2))[:, take]
        todo &= ~take
    if todo.any():   # what no shift reached: random land pixels of the crop
        rng = np.random.default_rng(0)
        pick = rng.choice(np.flatnonzero(land), int(todo.sum()))
        before[:, todo] = after.reshape(after.shape[0], -1)[:, pick]
    a = _write(folder / after_name, after, profile)
    b = _write(folder / before_name, before, profile)
    with rasterio.open(folder / "labels.tif", "w", **label_profile) as dst:
        dst.write(labels, 1)
    return a, b, folder / "labels.tif", water
