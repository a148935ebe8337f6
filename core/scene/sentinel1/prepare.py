"""Preparation of a Sentinel-1 GRD product into a calibrated, geocoded dB GeoTIFF that every
``ces`` command reads as a calibrated scene.

product (product.py) → per polarization, strip by strip of the measurement TIFF (uint16 DN):
sigma0 = (DN² − N) / A² (luts.py; thermal noise removed, values at or below the noise floor
kept at SIGMA0_FLOOR), DN 0 (border noise masking) is nodata → multilook ``looks`` × ``looks``
in linear power (mean of the valid pixels) → a temporary float32 GeoTIFF in radar geometry
carrying the annotation's geolocation grid as GCPs → warped with a thin-plate spline through
the GCPs (GDAL's GCP_TPS; the GCPs carry terrain height, a polynomial would leave errors of
hundreds of metres) onto the UTM zone of the scene centre at ``looks`` × the pixel spacing,
bilinear in linear power → dB.

Output: float32 [n_pol, H, W] sigma0 dB, bands described by polarization (co-pol first), NaN
nodata, the UTM CRS; tags: the product's provenance (name, mission, mode, start / stop,
orbit direction, relative orbit) and PROCESSING = PROCESSING_TEXT. Ellipsoid geocoding is not
terrain correction: in relief the position error is about the local height difference / tan
(incidence angle). Written atomically (core/atomic.py), after checking the free disk space; a
write failure (a full disk...) is named for the output in one line (core/write_failures.py).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window

from ...atomic import atomic_output, check_writable, temporary_folder
from ...disk_space import check_space, need
from ...errors import InputError, ParameterError
from ...progress import ProgressCallback, ensure
from .. import raster_check
from . import luts
from .product import Product, find_product

DEFAULT_RESOLUTION_M = 20.0     # about the resolution of IW GRDH (20 × 22 m) at 10 m pixel spacing
#: the default resolution choice: DEFAULT_RESOLUTION_M, or the pixel spacing where that is coarser
#: (EW GRDM: 40 m)
AUTO = "auto"
Resolution = Union[float, str, None]   # metres, AUTO, or None for the native pixel spacing
SIGMA0_FLOOR = 1e-5             # linear sigma0 (−50 dB) where noise removal leaves nothing
STRIP_LINES = 512               # measurement lines read at a time (before multilooking)
GDAL_CACHE_BYTES = 256 * 2**20  # GDAL's block cache while preparing (its default is 5 % of RAM)
WARP_TILE = 2048                # output pixels a side warped at a time
PROCESSING_TEXT = ("sigma0, thermal noise removed, ellipsoid geocoding from GCPs (thin-plate spline), "
                   "no terrain correction")
CO_POL, CROSS_POL = ("VV", "HH"), ("VH", "HV")

PathLike = Union[str, os.PathLike]


@dataclass
class PreparationPlan:
    """What preparing a product writes: polarizations (co-pol first), looks, the output grid."""

    polarizations: list[str]
    looks: int
    spacing_m: float              # the measurement's pixel spacing
    resolution_m: float           # the output's pixel size
    crs: CRS
    transform: rasterio.Affine
    width: int
    height: int
    radar_size: tuple[int, int]   # (width, height) of the measurement


def utm_crs(lon: float, lat: float) -> CRS:
    """The WGS 84 / UTM zone CRS of a point (EPSG 326xx north, 327xx south)."""
    zone = min(60, max(1, int((lon + 180.0) // 6.0) + 1))
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def ordered_polarizations(product: Product) -> list[str]:
    """The product's polarizations, co-pol first (VV, VH or HH, HV)."""
    return sorted(product.polarizations, key=lambda p: (p not in CO_POL, p))


def pixel_spacing_m(product: Product) -> float:
    """The measurement's pixel spacing in metres (annotation rangePixelSpacing)."""
    from . import safe_xml

    name = product.files[product.polarizations[0]].annotation
    try:
        return float(safe_xml.text(product.xml(name), "rangePixelSpacing", name))
    except ValueError:
        raise InputError(f"{product.name}/{name}: rangePixelSpacing is not a number") from None


def plan_preparation(product: Product, resolution_m: Resolution = AUTO) -> PreparationPlan:
    """The output of preparing ``product`` at ``resolution_m`` (metres; None: the native pixel
    spacing; AUTO: DEFAULT_RESOLUTION_M or the pixel spacing where coarser); ParameterError
    naming ``resolution`` when a number is finer than the pixel spacing."""
    spacing = pixel_spacing_m(product)
    if resolution_m == AUTO:
        resolution_m = max(DEFAULT_RESOLUTION_M, spacing)
    if resolution_m is None:
        looks = 1
    else:
        if not resolution_m > 0 or resolution_m < spacing * 0.999:
            raise ParameterError("resolution", f"{resolution_m:g}",
                                 f"finer than the product's pixel spacing ({spacing:g} m)", product.path)
        looks = max(1, int(round(resolution_m / spacing)))
    width, height = product.image_size()
    gcps = radar_gcps(product, looks)
    lons = [g.x for g in gcps]
    lats = [g.y for g in gcps]
    crs = utm_crs(float(np.mean(lons)), float(np.mean(lats)))
    res = looks * spacing
    transform, w, h = calculate_default_transform(
        CRS.from_epsg(4326), crs, width // looks, height // looks, gcps=gcps, resolution=res,
        SRC_METHOD="GCP_TPS")
    x0 = math.floor(transform.c / res) * res
    y0 = math.ceil(transform.f / res) * res
    w += int(math.ceil((transform.c - x0) / res)) + 1
    h += int(math.ceil((y0 - transform.f) / res)) + 1
    return PreparationPlan(ordered_polarizations(product), looks, spacing, res, crs,
                           rasterio.Affine(res, 0.0, x0, 0.0, -res, y0), int(w), int(h), (width, height))


def radar_gcps(product: Product, looks: int = 1) -> list[GroundControlPoint]:
    """The geolocation grid as GCPs (lon, lat, height; EPSG:4326) of the ``looks``-multilooked
    radar grid. The annotation's line / pixel number a pixel's centre, which is at (n + 0.5)
    in GDAL's image coordinates (corner 0); a multilook divides those by ``looks``."""
    g = product.gcp_grid()
    return [GroundControlPoint(row=(float(r) + 0.5) / looks, col=(float(c) + 0.5) / looks, x=float(x), y=float(y), z=float(z),
                               id=str(i)) for i, (r, c, x, y, z) in enumerate(zip(g.line, g.pixel, g.lon, g.lat, g.height))]


def sigma0_strip(dn: np.ndarray, gain: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """sigma0 (linear) of DN [h, w] with A [h, w] and N [h, w]: (DN² − N) / A², NaN where DN is 0
    (border noise masking), SIGMA0_FLOOR where noise removal leaves nothing."""
    d = dn.astype(np.float32)
    s = (d * d - noise.astype(np.float32)) / np.square(gain, dtype=np.float32)
    np.maximum(s, SIGMA0_FLOOR, out=s)
    s[dn == 0] = np.nan
    return s


def multilook(power: np.ndarray, looks: int) -> np.ndarray:
    """The mean of the valid (finite) pixels of each ``looks`` × ``looks`` block of power [h, w]
    (h, w multiples of looks): float32 [h / looks, w / looks], NaN where a block has none."""
    if looks == 1:
        return power
    h, w = power.shape
    blocks = power.reshape(h // looks, looks, w // looks, looks)
    valid = np.isfinite(blocks)
    total = np.where(valid, blocks, 0.0).sum(axis=(1, 3), dtype=np.float64)
    count = valid.sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = total / count
    return np.where(count > 0, out, np.nan).astype(np.float32)


def _write_radar(product: Product, plan: PreparationPlan, path: Path, progress: ProgressCallback) -> None:
    """The multilooked sigma0 (linear power) of every polarization in radar geometry, with GCPs."""
    looks = plan.looks
    width, height = plan.radar_size
    out_w, out_h = width // looks, height // looks
    strip = max(looks, (STRIP_LINES // looks) * looks)
    cols = np.arange(out_w * looks)
    profile = {"driver": "GTiff", "width": out_w, "height": out_h, "count": len(plan.polarizations),
               "dtype": "float32", "nodata": float("nan"), "tiled": True, "blockxsize": 512,
               "blockysize": 512, "compress": "zstd", "bigtiff": "if_safer",
               "gcps": radar_gcps(product, looks), "crs": CRS.from_epsg(4326)}
    total = len(plan.polarizations) * math.ceil(out_h * looks / strip)
    done = 0
    with rasterio.open(path, "w", **profile) as dst:
        for band, pol in enumerate(plan.polarizations, start=1):
            files = product.files[pol]
            gain = luts.read_calibration(product.xml(files.calibration), files.calibration)
            noise = luts.read_noise(product.xml(files.noise), files.noise)
            source = product.gdal_path(files.measurement)
            try:
                src = rasterio.open(source)
            except rasterio.errors.RasterioIOError as e:
                raise InputError(f"{product.path}: the {pol} measurement TIFF cannot be opened "
                                 f"({raster_check.gdal_message(e)})") from None
            with src:
                if (src.width, src.height) != (width, height):
                    raise InputError(f"{product.path}: the {pol} measurement is {src.width} x {src.height} px, "
                                     f"the annotation says {width} x {height}")
                for r0 in range(0, out_h * looks, strip):
                    n = min(strip, out_h * looks - r0)
                    rows = np.arange(r0, r0 + n)
                    dn = raster_check.read(src, source, 1, window=Window(0, r0, out_w * looks, n))
                    power = sigma0_strip(dn, gain.sample(rows, cols), noise.sample(rows, cols))
                    dst.write(multilook(power, looks), band, window=Window(0, r0 // looks, out_w, n // looks))
                    done += 1
                    progress("calibrate", done, total)
            dst.set_band_description(band, pol)


def _warp(radar: Path, plan: PreparationPlan, out: Path, tags: dict, progress: ProgressCallback) -> None:
    """The radar-geometry power ``radar`` warped through its GCPs (thin-plate spline) onto the
    plan's grid, written as dB."""
    profile = {"driver": "GTiff", "width": plan.width, "height": plan.height, "count": len(plan.polarizations),
               "dtype": "float32", "nodata": float("nan"), "crs": plan.crs, "transform": plan.transform,
               "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "deflate",
               "predictor": 3, "bigtiff": "if_safer"}
    tiles = [(c, r) for r in range(0, plan.height, WARP_TILE) for c in range(0, plan.width, WARP_TILE)]
    with rasterio.open(radar) as src, rasterio.open(out, "w", **profile) as dst:
        gcps, gcp_crs = src.gcps
        for i, (c, r) in enumerate(tiles, start=1):
            win = Window(c, r, min(WARP_TILE, plan.width - c), min(WARP_TILE, plan.height - r))
            tile = np.full((src.count, int(win.height), int(win.width)), np.nan, np.float32)
            reproject(source=rasterio.band(src, list(range(1, src.count + 1))), destination=tile,
                      gcps=gcps, src_crs=gcp_crs, src_nodata=np.nan,
                      dst_transform=rasterio.windows.transform(win, plan.transform), dst_crs=plan.crs,
                      dst_nodata=np.nan, resampling=Resampling.bilinear, SRC_METHOD="GCP_TPS")
            with np.errstate(divide="ignore", invalid="ignore"):
                db = np.where(np.isfinite(tile) & (tile > 0), 10.0 * np.log10(tile), np.nan).astype(np.float32)
            dst.write(db, window=win)
            progress("geocode", i, len(tiles))
        for band, pol in enumerate(plan.polarizations, start=1):
            dst.set_band_description(band, pol)
        dst.update_tags(**tags)


def provenance(product: Product, plan: PreparationPlan) -> dict:
    """The output's GeoTIFF tags: where it comes from and what was done to it."""
    return {
        "PRODUCT": product.name, "MISSION": product.mission, "MODE": product.mode,
        "PRODUCT_TYPE": product.product_type, "ACQUISITION_START": product.start,
        "ACQUISITION_STOP": product.stop, "ORBIT_DIRECTION": product.orbit_direction,
        "RELATIVE_ORBIT": str(product.relative_orbit or ""), "POLARIZATIONS": ",".join(plan.polarizations),
        "RESOLUTION_M": f"{plan.resolution_m:g}", "LOOKS": str(plan.looks),
        "PROCESSING": PROCESSING_TEXT, "DOMAIN": "db", "CALIBRATION": "sigma0 from the product's LUTs",
    }


def prepare_product(path: PathLike, out: PathLike, *, resolution_m: Resolution = AUTO,
                    overwrite: bool = False, progress: Optional[ProgressCallback] = None) -> dict:
    """Prepare the product ``path`` (any form product.find_product accepts) into the GeoTIFF
    ``out`` (see the module doc). Returns {"output", "width", "height", "crs", "resolution_m",
    "looks", "polarizations"}; InputError for a product it cannot read (nothing is written)."""
    progress = ensure(progress)
    out = Path(out)
    if out.suffix.lower() not in (".tif", ".tiff"):
        raise InputError(f"{out}: the prepared scene is a GeoTIFF (.tif or .tiff)")
    check_writable(out, overwrite)
    with find_product(path) as product:
        product.check_measurements()
        plan = plan_preparation(product, resolution_m)
        folder = out.parent if str(out.parent) else Path(".")
        from .prepared import space_needed  # (that module builds on this one)

        needed = space_needed(plan)
        check_space([need(out, needed)])   # at once: refused when the disk is clearly short
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), \
                temporary_folder(folder, "prepare", out, needed) as tmp:
            radar = tmp / "radar.tif"
            _write_radar(product, plan, radar, progress)
            with atomic_output(out, overwrite, needed) as tmp_out:
                _warp(radar, plan, tmp_out, provenance(product, plan), progress)
    return {"output": str(out.absolute()), "width": plan.width, "height": plan.height,
            "crs": plan.crs.to_string(), "resolution_m": plan.resolution_m, "looks": plan.looks,
            "polarizations": plan.polarizations}
