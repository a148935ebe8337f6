"""Any scene path as a raster the scene readers open: a Sentinel-1 product is prepared
(prepare.py) to a GeoTIFF first, a calibrated raster asked for at a coarser pixel size is
multilooked in power (core/scene/multilook.py), anything else is used as it is.

``prepared_scene(path, folder, ...)`` is a context manager yielding the raster path: for a
product, a temporary GeoTIFF in ``folder`` (beside the run's outputs), removed on exit, or the
``keep`` path, which stays. The free disk space of ``folder`` is checked before any work, and
a write failure of the temporary scene (a full disk...) is named for ``output``, the user's
output it is prepared for (core/write_failures.py, one line, exit status 2).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Iterator, Optional, Union

from ...atomic import atomic_output, check_writable, temporary_folder
from ...disk_space import check_space, need
from ...progress import ProgressCallback
from ..multilook import multilook_factor, multilook_raster
from .prepare import AUTO, PreparationPlan, Resolution, plan_preparation, prepare_product
from .product import find_product, is_product

PathLike = Union[str, os.PathLike]
#: bytes per output pixel and band while preparing: the radar-geometry float32 power (at most
#: the output's size) and the output's float32 dB, uncompressed (the upper bound)
BYTES_PER_PIXEL_AND_BAND = 8
#: the share of a prepared scene's grid its swath fills at least (a GRD swath geocoded onto a
#: north-up UTM grid is a parallelogram filling most of it): the valid pixels of a segmentation
VALID_AT_LEAST = 0.5


def space_needed(plan: PreparationPlan) -> int:
    """Bytes of disk a preparation needs at most (temporary and final files)."""
    radar = (plan.radar_size[0] // plan.looks) * (plan.radar_size[1] // plan.looks)
    out = plan.width * plan.height
    return int(len(plan.polarizations) * (radar + out) * BYTES_PER_PIXEL_AND_BAND / 2)


def check_product(path: PathLike, folder: PathLike, resolution_m: Resolution = AUTO,
                  output: Optional[PathLike] = None) -> PreparationPlan:
    """The plan of preparing the product ``path`` into ``folder``, after checking that its
    measurements exist and that ``folder`` has the free space it needs (WriteFailure naming
    ``output``, default ``folder``, with both sizes otherwise: core/disk_space.py)."""
    with find_product(path) as product:
        product.check_measurements()
        plan = plan_preparation(product, resolution_m)
    check_space([need(output if output is not None else folder, space_needed(plan), where=folder)])
    return plan


@contextlib.contextmanager
def prepared_scene(path: PathLike, folder: PathLike, *, resolution_m: Resolution = AUTO,
                   keep: Optional[PathLike] = None, overwrite: bool = False,
                   progress: Optional[ProgressCallback] = None,
                   output: Optional[PathLike] = None) -> Iterator[Path]:
    """The raster to read for ``path``: its product prepared into ``folder`` (removed
    afterwards) or into ``keep`` (kept); a raster multilooked in power to ``resolution_m`` when
    that is coarser than its pixels (core/scene/multilook.py; same folders); else ``path``.
    ``output``: the user's output the scene is prepared for, named by a write failure of the
    temporary scene (default ``folder``)."""
    named = output if output is not None else folder
    if not is_product(path):
        factor = multilook_factor(path, resolution_m)
        if factor == 1:
            yield Path(path)
        elif keep is not None:
            check_writable(keep, overwrite)
            with atomic_output(keep, overwrite=overwrite) as tmp:
                multilook_raster(path, tmp, factor, progress)
            yield Path(keep)
        else:
            with temporary_folder(folder, "multilooked", named) as tmp:
                yield multilook_raster(path, tmp / f"{Path(path).stem}.tif", factor, progress)
        return
    keep_folder = folder if keep is None else (Path(keep).parent if str(Path(keep).parent) else ".")
    plan = check_product(path, keep_folder, resolution_m, named if keep is None else keep)
    if keep is not None:
        prepare_product(path, keep, resolution_m=resolution_m, overwrite=overwrite, progress=progress)
        yield Path(keep)
        return
    with temporary_folder(folder, "prepared", named, space_needed(plan)) as tmp:
        name = find_product_name(path)
        out = tmp / f"{name}.tif"
        prepare_product(path, out, resolution_m=resolution_m, progress=progress)
        yield out


def find_product_name(path: PathLike) -> str:
    """The product's NAME (of NAME.SAFE)."""
    with find_product(path) as product:
        return product.name


def product_info(path: PathLike, resolution_m: Resolution = AUTO) -> dict:
    """What ``ces info`` tells of a product: its manifest's facts, its size, its calibration, and
    what preparing it at ``resolution_m`` would write (grid, CRS, pixel size)."""
    with find_product(path) as product:
        plan = plan_preparation(product, resolution_m)
        missing = [p for p in product.polarizations if not product.exists(product.files[p].measurement)]
        lons = [lon for lon, _ in product.footprint]
        lats = [lat for _, lat in product.footprint]
        return {
            "path": str(path), "product": product.name, "mission": product.mission, "mode": product.mode,
            "product_type": product.product_type, "polarizations": plan.polarizations,
            "start": product.start, "stop": product.stop, "orbit_direction": product.orbit_direction,
            "relative_orbit": product.relative_orbit,
            "footprint": [[round(lon, 5), round(lat, 5)] for lon, lat in product.footprint],
            "bounds_lonlat": [min(lons), min(lats), max(lons), max(lats)] if lons else None,
            "width": plan.radar_size[0], "height": plan.radar_size[1], "pixel_spacing_m": plan.spacing_m,
            "calibrated": True, "calibration_reason": "product LUTs (sigma0, thermal noise removed)",
            "missing_measurements": missing,
            "prepare": {"width": plan.width, "height": plan.height, "crs": plan.crs.to_string(),
                        "resolution_m": plan.resolution_m, "looks": plan.looks,
                        "processing": "sigma0 dB, thermal noise removed, ellipsoid geocoding from GCPs "
                                      "(thin-plate spline), no terrain correction"},
        }
