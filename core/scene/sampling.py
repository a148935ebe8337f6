"""Scene statistics from one decimated read: the sample of valid pixels, the per-channel stretch
(contracts 1 and 2) or the fixed dB mapping (contract 3), and the nodata fraction.

A decimated read is at most STATS_MAX_SIDE px a side (nearest neighbour): (bands [n, h, w] raw,
valid [h, w] bool). Channel values are log representations or dB (core/scene/contracts.py).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np
from rasterio.enums import Resampling

from ..errors import InputError
from . import raster_check
from .contracts import DB_MAPPING, PERCENTILES, STATS_MAX_SIDE
from .values import mask_values

if TYPE_CHECKING:
    from .sar_io import SarScene


class EmptyRasterError(InputError):
    """A raster without a single valid pixel (training sources skip such tiles)."""


def decimated_read(src, band_indexes: list[int],
                    nodata_values: Sequence[float] = ()) -> tuple[np.ndarray, np.ndarray]:
    """A nearest-neighbour read of at most STATS_MAX_SIDE px a side: (bands, valid)."""
    f = max(src.width / STATS_MAX_SIDE, src.height / STATS_MAX_SIDE, 1.0)
    shape = (len(band_indexes), max(1, int(src.height / f)), max(1, int(src.width / f)))
    data = raster_check.read(src, None, band_indexes, out_shape=shape, resampling=Resampling.nearest)
    masks = raster_check.read_masks(src, None, band_indexes, out_shape=shape,
                                    resampling=Resampling.nearest)
    valid = np.all(mask_values(data, masks, nodata_values) > 0, axis=0)
    if data.dtype.kind in "fc":
        valid &= np.all(np.isfinite(data), axis=0)
    return data, valid


def sample_masks(scene: SarScene, sample: Optional[tuple[np.ndarray, np.ndarray]]):
    """``sample`` (bands, valid) of a decimated read, or a fresh one: (bands, GDAL-style masks)."""
    data, valid = sample if sample is not None else decimated_read(
        scene.src, scene.band_indexes, scene.nodata_values)
    return data, np.where(valid, 255, 0)[None].repeat(len(data), 0)


def scene_sample(scene: SarScene, sample: Optional[tuple[np.ndarray, np.ndarray]] = None
                 ) -> tuple[np.ndarray, float]:
    """(the channels of the valid pixels of a decimated read [3, n], nodata fraction);
    ``sample``: that read when it was already made (:func:`decimated_read`)."""
    rep, valid = scene._represent(*sample_masks(scene, sample))
    return rep[:, valid], 1.0 - float(valid.mean())


def band_sample(scene: SarScene, sample: Optional[tuple[np.ndarray, np.ndarray]] = None
                ) -> np.ndarray:
    """The log representation of each band's valid pixels in a decimated read [n, m]."""
    reps, valid = scene._band_reps(*sample_masks(scene, sample))
    return reps[:, valid]


def stretch_of(values: np.ndarray) -> np.ndarray:
    """The stretch [3, 2] (PERCENTILES of each channel) of log-representation values [3, n]."""
    stats = np.zeros((3, 2), np.float32)
    for c in range(3):
        if values.shape[1] == 0:
            stats[c] = (0.0, 1.0)
            continue
        lo, hi = np.percentile(values[c], PERCENTILES)
        stats[c] = (lo, hi if hi - lo >= 1e-6 else lo + 1.0)
    return stats


def scene_statistics(scene: SarScene, sample: Optional[tuple[np.ndarray, np.ndarray]] = None
                      ) -> tuple[np.ndarray, float]:
    """Robust low/high per channel from a decimated read (contract 3 with backscatter
    bands: the fixed DB_MAPPING); the nodata fraction."""
    values, nodata_fraction = scene_sample(scene, sample)
    if values.shape[1] == 0 and not any_valid_block(scene):
        raise EmptyRasterError(f"{scene.path}: contains no valid pixel (entirely nodata)")
    if scene.fixed_mapping:
        kinds = scene.band_kinds()
        chans = [kinds[0]] * 3 if scene.composition == "single" else [kinds[0], kinds[1], "ratio"]
        return np.float32([DB_MAPPING[k] for k in chans]), nodata_fraction
    stats = stretch_of(values)
    if scene.contract == 1 and scene.domain == "quicklook":   # contract 1: display values / 255
        stats[: 2 if scene.composition == "dualpol" else 3] = (0.0, 255.0)
    return stats, nodata_fraction


def any_valid_block(scene: SarScene) -> bool:
    """Scan the scene block by block (bounded memory) for any valid pixel."""
    src = scene.src
    for _, win in src.block_windows(scene.band_indexes[0]):
        raw, masks = scene._read(win)
        if scene._represent(raw, masks)[1].any():
            return True
    return False
