"""Small real rasters, vectors and models for the training tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

UTM = "EPSG:32630"
ORIGIN = (500000.0, 4400000.0)   # UTM 30N, ~ 39.7 N, 3 W
PIXEL = 10.0


def write_scene(path: Path, size: int = 64, seed: int = 0, water_box=(16, 48, 8, 40),
                crs: str | None = UTM) -> np.ndarray:
    """A float32 dB SAR-like scene [size, size] with a dark 'water' box (rows r0:r1, cols c0:c1);
    returns the ground-truth mask (1 water)."""
    rng = np.random.default_rng(seed)
    r0, r1, c0, c1 = water_box
    truth = np.zeros((size, size), np.uint8)
    truth[r0:r1, c0:c1] = 1
    db = np.where(truth == 1, -22.0, -8.0) + rng.normal(0, 1.5, (size, size))
    profile = dict(driver="GTiff", width=size, height=size, count=1, dtype="float32",
                   crs=crs, transform=from_origin(*ORIGIN, PIXEL, PIXEL), nodata=np.nan)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(db.astype(np.float32), 1)
    return truth


def write_label(path: Path, values: np.ndarray, crs: str | None = UTM, transform=None,
                dtype: str = "uint8", nodata=None) -> None:
    h, w = values.shape
    profile = dict(driver="GTiff", width=w, height=h, count=1, dtype=dtype, crs=crs,
                   transform=transform or from_origin(*ORIGIN, PIXEL, PIXEL), nodata=nodata)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values.astype(dtype), 1)


def write_png(path: Path, values: np.ndarray) -> None:
    """A plain 8-bit PNG without georeferencing (like OMBRIA)."""
    import warnings

    from rasterio.errors import NotGeoreferencedWarning

    h, w = values.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="PNG", width=w, height=h, count=1, dtype="uint8") as dst:
            dst.write(values.astype(np.uint8), 1)


def ombria_subset(shared_data: Path, split: str, n: int, start: int = 0) -> tuple[list[Path], list[Path]]:
    """The first ``n`` (AFTER image, MASK) pairs of an OMBRIA split, from ``start``."""
    after = sorted((shared_data / "ombria" / split / "AFTER").glob("S1_after_*.png"))[start:start + n]
    masks = [shared_data / "ombria" / split / "MASK" / p.name.replace("after", "mask") for p in after]
    return after, masks


def ombria_balanced(shared_data: Path, split: str, n: int, lo: float = 0.2,
                    hi: float = 0.8) -> tuple[list[Path], list[Path]]:
    """The first ``n`` OMBRIA (AFTER, MASK) pairs of a split whose water fraction lies in
    [lo, hi]: informative tiles for a short run (many tiles are almost all land)."""
    from PIL import Image

    imgs, masks = [], []
    for p in sorted((shared_data / "ombria" / split / "AFTER").glob("S1_after_*.png")):
        m = shared_data / "ombria" / split / "MASK" / p.name.replace("after", "mask")
        frac = float((np.asarray(Image.open(m)) > 0).mean())
        if lo <= frac <= hi:
            imgs.append(p)
            masks.append(m)
            if len(imgs) == n:
                break
    return imgs, masks


def tiny_model(num_classes: int = 2, classes=None, seed: int = 0):
    """A small ``ti`` model (2 experts, 16 queries, 3 decoder layers) for fast tests."""
    import torch

    from crossearth_sar.core.models.model import build

    torch.manual_seed(seed)
    return build("ti", num_classes=num_classes, classes=classes, experts=2, num_queries=16,
                 dec_layers=3)
