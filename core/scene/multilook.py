"""Multilooking a calibrated raster in linear power: a 10 m scene read as a 20 or 40 m one.

``multilook_raster(src, dst, factor)`` writes ``dst``, a float32 GeoTIFF with the bands of
``src`` (same order, descriptions and units: dB stays dB, power stays power, amplitude stays
amplitude), each output pixel the mean linear power of a ``factor`` x ``factor`` block of
input pixels (for amplitude: the root of the mean of the squares). Nodata pixels (the GDAL
mask, NaN) are left out of the mean; a block with fewer than half its pixels valid is nodata
(NaN). The grid covers the input: ceil(H / factor) x ceil(W / factor) pixels of ``factor``
times the input's size, same origin and CRS.

Calibrated input only (docs/contracts.md §3): averaging needs physical power. An 8-bit
quicklook or DN raster is refused with one line. Memory: one strip of ``factor`` x 256 rows
of all bands at a time.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import numpy as np
import rasterio
from rasterio.windows import Window

from ..errors import InputError
from ..progress import ProgressCallback, ensure
from .sar_io import open_scene

STRIP_ROWS = 256   # output rows per strip


def resolution_factor(pixel_m: float, resolution_m: float) -> int:
    """The multilook factor that brings pixels of ``pixel_m`` metres nearest to
    ``resolution_m`` (at least 1)."""
    return max(1, int(round(resolution_m / pixel_m)))


def _to_power(v: np.ndarray, unit: str) -> np.ndarray:
    if unit == "db":
        return np.power(10.0, v / 10.0)
    return v * v if unit == "amplitude" else v


def _from_power(p: np.ndarray, unit: str) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        if unit == "db":
            return 10.0 * np.log10(p)
        return np.sqrt(p) if unit == "amplitude" else p


def raster_unit(path: os.PathLike | str) -> str:
    """"db", "power" or "amplitude" of a calibrated raster (core/scene/sar_io.py detection);
    InputError for uncalibrated or complex input."""
    with open_scene(path) as scene:
        if scene.domain == "db" and scene.calibrated:
            return "db"
        if scene.domain == "linear" and scene.calibrated:
            return scene.linear_kind
        reason = f" ({scene.calibration_reason})" if scene.calibration_reason else ""
    raise InputError(f"multilooking needs calibrated backscatter (dB, power or amplitude); "
                     f"this raster is not{reason}", Path(path))


def multilook_raster(src_path: os.PathLike | str, dst_path: os.PathLike | str, factor: int,
                     progress: Optional[ProgressCallback] = None) -> Path:
    """Write ``dst_path`` (module doc); returns it. ``progress("multilook", done, total)``."""
    progress = ensure(progress)
    factor = int(factor)
    if factor < 1:
        raise ValueError(f"multilook factor must be at least 1, got {factor}")
    unit = raster_unit(src_path)
    dst_path = Path(dst_path)
    with rasterio.open(src_path) as src:
        h, w = math.ceil(src.height / factor), math.ceil(src.width / factor)
        profile = {"driver": "GTiff", "width": w, "height": h, "count": src.count,
                   "dtype": "float32", "nodata": float("nan"), "crs": src.crs,
                   "transform": src.transform @ rasterio.Affine.scale(factor),
                   "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate",
                   "BIGTIFF": "IF_SAFER"}
        strips = math.ceil(h / STRIP_ROWS)
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.descriptions = src.descriptions
            for s in range(strips):
                r0 = s * STRIP_ROWS
                rows = min(STRIP_ROWS, h - r0)
                win = Window(0, r0 * factor, src.width, min(rows * factor, src.height - r0 * factor))
                raw = src.read(window=win, out_dtype="float64")
                valid = (src.read_masks(window=win) > 0) & np.isfinite(raw)
                out = _multilook(raw, valid, factor, unit, rows, w)
                dst.write(out, window=Window(0, r0, w, rows))
                progress("multilook", s + 1, strips)
    return dst_path


def multilook_array(values: np.ndarray, valid: np.ndarray, f: int, unit: str = "db") -> np.ndarray:
    """Bands ``values`` [n, h, w] (``unit`` "db", "power" or "amplitude"), ``valid`` [n, h, w]
    bool -> float32 [n, ceil(h / f), ceil(w / f)] multilooked as :func:`multilook_raster`
    does (NaN where fewer than half of a block's pixels are valid)."""
    return _multilook(values.astype(np.float64), valid, f, unit, math.ceil(values.shape[1] / f),
                      math.ceil(values.shape[2] / f))


def _multilook(raw: np.ndarray, valid: np.ndarray, f: int, unit: str, rows: int, cols: int) -> np.ndarray:
    """raw, valid [n, h, w] -> float32 [n, rows, cols] (blocks padded past the edge)."""
    n, hh, ww = raw.shape
    pad = ((0, 0), (0, rows * f - hh), (0, cols * f - ww))
    power = np.pad(np.where(valid, _to_power(np.where(valid, raw, 0.0), unit), 0.0), pad)
    ok = np.pad(valid, pad)
    total = power.reshape(n, rows, f, cols, f).sum((2, 4))
    count = ok.reshape(n, rows, f, cols, f).sum((2, 4))
    mean = total / np.maximum(count, 1)
    out = _from_power(mean, unit).astype(np.float32)
    out[count * 2 < f * f] = np.nan
    return out


def multilook_factor(path: os.PathLike | str, resolution_m) -> int:
    """The factor that brings the calibrated, georeferenced raster ``path`` to
    ``resolution_m`` metres: 1 for None / "auto" (GeoTIFFs stay at their own pixel size unless a
    size is asked for) and for sizes at or below the raster's. InputError (naming the file)
    for a raster without georeferencing, or uncalibrated, when a coarser size is asked for."""
    if resolution_m is None or isinstance(resolution_m, str):
        return 1
    from .pixel_size import pixel_size_m

    with rasterio.open(path) as src:
        if src.crs is None:
            raise InputError(f"--resolution {resolution_m:g}: the raster has no georeferencing, so "
                             f"its pixel size is unknown", Path(path))
        sx, sy = pixel_size_m(src.crs, src.transform, src.width, src.height)
    factor = resolution_factor((sx + sy) / 2, float(resolution_m))
    if factor > 1:
        raster_unit(path)
    return factor
