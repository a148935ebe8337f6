"""Value transforms of raw raster bands: dtypes, nodata masks, the log representation (dB for
calibrated linear data), contract 1's physical values, and reflect padding at scene edges.

Arrays: raw bands [n, h, w] or one band [h, w] as GDAL reads them; outputs float32.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .contracts import LINEAR_FLOOR


def numpy_dtype_name(name: str) -> str:
    """The numpy dtype GDAL's pixels of rasterio dtype ``name`` are read as (numpy has no
    complex integers: CInt16 / CInt32 are read as complex64 / complex128)."""
    return {"complex_int16": "complex64", "complex_int32": "complex128"}.get(name, name)


def numpy_dtype(name: str) -> np.dtype:
    """:func:`numpy_dtype_name` as a numpy dtype (e.g. for sizes): never a TypeError for a rasterio
    dtype name."""
    return np.dtype(numpy_dtype_name(name))


def mask_values(raw: np.ndarray, masks: np.ndarray, nodata_values: Sequence[float]) -> np.ndarray:
    """GDAL masks [n, h, w] with every pixel whose raw value (any band) is one of
    ``nodata_values`` set to 0."""
    if not nodata_values:
        return masks
    hit = np.isin(raw, np.asarray(nodata_values, raw.dtype)).any(axis=0)
    return np.where(hit[None], 0, masks).astype(masks.dtype)


def log_representation(band: np.ndarray, domain: str, complex_part: str,
                        linear_kind: str = "power") -> np.ndarray:
    """One raw band -> its log representation (see module doc), float32: dB for calibrated
    linear power (10·log10) and amplitude (20·log10, ``linear_kind="amplitude"``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if domain == "complex":
            z = band.astype(np.complex64)
            if complex_part == "amplitude":
                return (20.0 * np.log10(np.maximum(np.abs(z), LINEAR_FLOOR))).astype(np.float32)
            part = z.real if complex_part == "real" else z.imag
            return (np.sign(part) * 20.0 * np.log10(1.0 + np.abs(part))).astype(np.float32)
        v = band.astype(np.float32)
        if domain == "linear":
            factor = 20.0 if linear_kind == "amplitude" else 10.0
            return (factor * np.log10(np.maximum(v, LINEAR_FLOOR))).astype(np.float32)
        return v  # quicklook and dB are already on a log/display scale


def physical_values(band: np.ndarray, domain: str, complex_part: str) -> np.ndarray:
    """Contract 1's physical value X behind a raw band (linear power for dB), float32."""
    with np.errstate(over="ignore", invalid="ignore"):
        if domain == "complex":
            z = band.astype(np.complex64)
            if complex_part == "amplitude":
                return np.abs(z).astype(np.float32)
            return (z.real if complex_part == "real" else z.imag).astype(np.float32)
        v = band.astype(np.float32)
        if domain == "db":
            return np.power(10.0, np.clip(v, -100, 100) / 10.0).astype(np.float32)
        return v


def reflect_pad(a: np.ndarray, pads) -> np.ndarray:
    """Reflect-pad a 2-D array; falls back to edge padding for 1-pixel-wide data."""
    if min(a.shape) < 2:
        return np.pad(a, pads, mode="edge")
    return np.pad(a, pads, mode="reflect")
