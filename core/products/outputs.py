"""The outputs of a segmentation or change run: their paths checked before any work (formats,
writable, all different), the sieve threshold, and their writing, all or none (core/atomic.py).

Torch-free, so that the CLI checks outputs before it imports torch. Outputs (docs/contracts.md §6):
the vector layer (core/products/vectorize.py), the class raster (uint8 COG, 255 nodata), the
confidence raster (float32 COG, 0..1, NaN nodata) and a PNG picture.

:func:`output_needs` estimates the disk space of a run's outputs and temporary rasters
(core/disk_space.py), in bytes, as lower bounds: the per-pixel sizes below are under those
of the deflate-compressed rasters of real runs (a confidence raster took 3.1 bytes per valid
pixel, a class raster under 0.05 per pixel, a picture 0.7 per pixel of the picture).
"""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import rasterio.shutil

from ..atomic import atomic_output, check_writable
from ..disk_space import Need, device_of, device_totals, need
from ..errors import InputError, ParameterError, parameter
from ..progress import ProgressCallback
from ..scene.pixel_size import pixel_area_m2
from . import vectorize

if TYPE_CHECKING:
    from ..scene.sar_io import SarScene

PathLike = Union[str, os.PathLike]
DEFAULT_MIN_PIXELS = 4          # min_area default: regions under 4 pixels are sieved away
DEFAULT_SIMPLIFY_PIXELS = 0.75  # simplify default: 3/4 pixel (smooths 1-px stairs, keeps 1-px² bumps)
RASTER_EXTENSIONS = (".tif", ".tiff")
CONFIDENCE_BYTES = 2.0          # bytes per valid pixel, at least: float32 0..1, deflate
CLASS_BYTES = 0.02              # bytes per pixel, at least: uint8 classes, deflate
PICTURE_BYTES = 0.5             # bytes per pixel of the PNG picture, at least
OVERVIEWS = 4 / 3               # a COG with its overviews, to the full resolution alone
VECTOR_BYTES = {"GPKG": 96 * 1024}   # an empty GeoPackage; other formats: 0 (polygons unknown)
Grid = tuple[int, int, float]   # (width, height, valid fraction 0..1) of a scene's pixel grid


def check_raster_path(path: Optional[PathLike], overwrite: bool) -> Optional[Path]:
    """``path`` checked as a raster output (a .tif / .tiff GeoTIFF, writable); None stays None."""
    if path is None:
        return None
    path = Path(path)
    if path.suffix.lower() not in RASTER_EXTENSIONS:
        raise InputError(f"{path}: raster outputs are GeoTIFFs (.tif or .tiff)")
    return check_writable(path, overwrite)


def write_cog(src_path: PathLike, dst_path: PathLike, resampling: str = "nearest") -> None:
    """Copy a GeoTIFF as a Cloud-Optimized GeoTIFF (tiled 512, deflate, overviews)."""
    rasterio.shutil.copy(str(src_path), str(dst_path), driver="COG", compress="deflate",
                         blocksize=512, overview_resampling=resampling, bigtiff="if_safer")


def output_needs(grid: Grid, vector: PathLike, raster: Optional[PathLike] = None,
                 confidence: Optional[PathLike] = None, preview: Optional[PathLike] = None, *,
                 temporary_grids: Sequence[Grid] = (), job: int = 0) -> list[Need]:
    """The disk space a segmentation or change run needs at least (bytes; module doc): its
    outputs on the output ``grid``, and its temporary rasters in the vector's folder: a class
    and a confidence raster per grid of ``temporary_grids`` (each scene segmented; default
    the output grid) and the sieved classes (named for ``vector``, of ``job``)."""
    from .preview import MAX_SIDE, _out_shape

    width, height, valid = grid
    pixels, valid_pixels = width * height, width * height * valid
    vector = Path(vector)
    folder = vector.parent if str(vector.parent) else Path(".")
    needs = [need(vector, VECTOR_BYTES.get(vectorize.vector_format(vector), 0))]
    if raster is not None:
        needs.append(need(raster, CLASS_BYTES * pixels * OVERVIEWS))
    if confidence is not None:
        needs.append(need(confidence, CONFIDENCE_BYTES * valid_pixels * OVERVIEWS))
    if preview is not None:
        h, w = _out_shape(width, height, MAX_SIDE)
        needs.append(need(preview, PICTURE_BYTES * w * h))
    temporary = sum(CONFIDENCE_BYTES * w * h * v + CLASS_BYTES * w * h
                    for w, h, v in (temporary_grids or [grid]))
    needs.append(need(vector, temporary + CLASS_BYTES * pixels, kept=False, where=folder, job=job))
    return needs


def needed_beside(needs: Sequence[Need], path: PathLike) -> int:
    """Bytes that ``needs`` take on the file system of ``path`` (for a write failure's message)."""
    return device_totals(needs).get(device_of(path), (None, None, 0))[2]


def write_outputs(classes_path: Path, confidence_tmp: Path, classes: Sequence[dict],
                  out_vector: Path, raster_path: Optional[Path], confidence_path: Optional[Path],
                  preview_path: Optional[Path], draw: Optional[Callable[[Path], object]], *,
                  tolerance: float, overwrite: bool, progress: ProgressCallback,
                  geodesic: bool = False, needs: Sequence[Need] = ()) -> dict:
    """The outputs of a segmentation or change run, all or none (core.atomic): polygons of
    the (sieved) class raster, its COG, the confidence COG, and the picture ``draw(path)``
    makes. ``needs``: the run's (:func:`output_needs`), for the message of a write failure.
    Returns core.products.vectorize.vectorize's summary."""
    def output(path: Path) -> Path:
        return outputs.enter_context(atomic_output(path, overwrite,
                                                   needed_beside(needs, path) or None))

    with contextlib.ExitStack() as outputs:
        summary = vectorize.vectorize(classes_path, output(out_vector), classes,
                                      confidence_raster=confidence_tmp, simplify=tolerance,
                                      progress=progress, geodesic=geodesic)
        if raster_path is not None:
            write_cog(classes_path, output(raster_path))
        if confidence_path is not None:
            write_cog(confidence_tmp, output(confidence_path), resampling="average")
        if preview_path is not None and draw is not None:
            draw(output(preview_path))
    return summary


def output_paths(out_vector: PathLike, raster, confidence, preview, overwrite: bool
                 ) -> tuple[Path, Optional[Path], Optional[Path], Optional[Path]]:
    """The output paths of a run checked (formats, writable, all different): vector, class
    raster, confidence raster, preview; InputError naming the first that fails."""
    from .preview import check_path

    out_vector = Path(out_vector)
    vectorize.vector_format(out_vector)
    check_writable(out_vector, overwrite)
    raster_path = check_raster_path(raster, overwrite)
    confidence_path = check_raster_path(confidence, overwrite)
    preview_path = None if preview is None else check_writable(check_path(preview), overwrite)
    finals = [p.resolve() for p in (out_vector, raster_path, confidence_path, preview_path)
              if p is not None]
    if len(set(finals)) != len(finals):
        raise InputError(f"{out_vector}: the vector, {parameter('raster')}, "
                         f"{parameter('confidence')} and {parameter('preview')} "
                         f"outputs must differ")
    return out_vector, raster_path, confidence_path, preview_path


def sieve_pixels(scene: SarScene, min_area: Optional[float]) -> int:
    """The sieve threshold in pixels for ``min_area`` m² (None: DEFAULT_MIN_PIXELS).

    The default shrinks to fit a scene of a few pixels (a 1 x 1 scene is not sieved); an
    explicit ``min_area`` of the whole scene's area or more would merge every region into
    one and is refused (ParameterError naming ``min_area`` and the scene's area).
    """
    pixels = scene.width * scene.height
    if min_area is None:
        return min(DEFAULT_MIN_PIXELS, pixels - 1)
    px_area = pixel_area_m2(scene.crs, scene.transform, scene.width, scene.height)
    need = int(math.ceil(float(min_area) / max(px_area, 1e-12)))
    if need > 1 and need >= pixels:
        raise ParameterError("min_area", f"{min_area:g}",
                             f"not smaller than the whole scene ({scene.width} x {scene.height} "
                             f"px, {pixels * px_area:.6g} m²); give a smaller value, or 0 to "
                             f"keep every pixel", scene.path)
    return need
