"""Label rasters read onto their image's grid: raw label values [H, W] and their validity.

**Label resampling rule** (training and evaluation alike; :func:`read_label_raster`): a label
raster on the image's grid (same size, CRS and geotransform) is read as it is; one on another
grid or in another CRS (both georeferenced) is resampled onto the image's grid by nearest
neighbour (:func:`resample_to_grid`, as ``gdalwarp -r near``); image pixels outside the label
raster or on its nodata are not valid. A label raster that does not overlap its image is
refused, naming both files. Values stay raw here: train/classes.py maps them to class indices.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from ..core.errors import InputError
from ..core.scene import sar_io


def _open_raster(path: Path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise InputError(f"{path}: not a raster GDAL can read ({str(e).splitlines()[0]})") from None


def _georeferenced(src) -> bool:
    return src.crs is not None or not src.transform.is_identity


def read_label_raster(path: Path, scene: sar_io.SarScene) -> tuple[np.ndarray, np.ndarray]:
    """Raw label values [H, W] and their validity (label nodata excluded) on the scene grid.

    **Label resampling rule** (training and evaluation alike): a label raster on the scene's
    grid (same size, CRS and geotransform) is read as it is; one on another grid or in another
    CRS (both georeferenced) is resampled onto the scene's grid by nearest neighbour
    (:func:`resample_to_grid`); scene pixels outside the label raster or on its nodata are
    not valid. InputError when it does not overlap the scene at all (naming both files), when
    one of the two lacks a CRS, or when a raster without georeferencing has another size.
    """
    with _open_raster(path) as src:
        same_size = (src.width, src.height) == (scene.width, scene.height)
        if _georeferenced(src) and (scene.crs is not None or not scene.transform.is_identity):
            tol = 1e-3 * max(abs(scene.transform.a), abs(scene.transform.e))
            same_grid = (same_size and src.crs == scene.crs
                         and src.transform.almost_equals(scene.transform, precision=tol))
            if not same_grid and (src.crs is None or scene.crs is None):
                raise InputError(f"{path}: label raster (CRS {src.crs}) is on another grid than "
                                 f"its image {scene.path.name} (CRS {scene.crs}); resampling "
                                 f"needs both CRSs: warp it onto the image grid")
            if not same_grid:
                return resample_to_grid(src, path, scene)
        elif not same_size:
            raise InputError(f"{path}: label raster is {src.width}x{src.height} px but its image "
                             f"{scene.path.name} is {scene.width}x{scene.height} px (same size "
                             f"needed without georeferencing)")
        raw = src.read(1)
        valid = src.read_masks(1) > 0
    return raw, valid


def resample_to_grid(src, path: Path, scene: sar_io.SarScene) -> tuple[np.ndarray, np.ndarray]:
    """Band 1 of the open label raster ``src`` on the scene's grid (both with a CRS), nearest
    neighbour by GDAL's warper (as ``gdalwarp -r near``): (raw values [H, W], valid [H, W]);
    valid is the warped mask of ``src`` (nodata value, mask band, alpha), False outside the
    label raster. InputError naming both files when they do not overlap at all."""
    from rasterio.transform import array_bounds
    from rasterio.warp import Resampling, reproject, transform_bounds

    left, bottom, right, top = array_bounds(scene.height, scene.width, scene.transform)
    lb = transform_bounds(src.crs, scene.crs, *src.bounds, densify_pts=21)
    if min(right, lb[2]) <= max(left, lb[0]) or min(top, lb[3]) <= max(bottom, lb[1]):
        image = _bounds_text((left, bottom, right, top))
        raise InputError(f"{path}: label raster does not overlap its image {scene.path} "
                         f"(bounds {_bounds_text(lb)} and {image} in {scene.crs})")
    grid = dict(src_transform=src.transform, src_crs=src.crs, dst_transform=scene.transform,
                dst_crs=scene.crs, resampling=Resampling.nearest, src_nodata=None, dst_nodata=None)
    raw = np.zeros((scene.height, scene.width), src.dtypes[0])
    valid = np.zeros((scene.height, scene.width), np.uint8)
    reproject(src.read(1), raw, **grid)
    reproject((src.read_masks(1) > 0).astype(np.uint8), valid, **grid)
    return raw, valid > 0


def _bounds_text(b) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in b) + ")"
