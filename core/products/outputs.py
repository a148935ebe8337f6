"""The outputs of a segmentation or change run: their paths checked before any work (formats,
writable, all different), the sieve threshold, and their writing, all or none (core/atomic.py).

Torch-free, so that the CLI checks outputs before it imports torch. Outputs (docs/contracts.md §6):
the vector layer (core/products/vectorize.py), the class raster (uint8 COG, 255 nodata), the
confidence raster (float32 COG, 0..1, NaN nodata) and a PNG picture.
"""
from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Sequence, Union

import rasterio.shutil

from ..atomic import atomic_output, check_writable
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


def write_outputs(classes_path: Path, confidence_tmp: Path, classes: Sequence[dict],
                  out_vector: Path, raster_path: Optional[Path], confidence_path: Optional[Path],
                  preview_path: Optional[Path], draw: Optional[Callable[[Path], object]], *,
                  tolerance: float, overwrite: bool, progress: ProgressCallback,
                  geodesic: bool = False) -> dict:
    """The outputs of a segmentation or change run, all or none (core.atomic): polygons of
    the (sieved) class raster, its COG, the confidence COG, and the picture ``draw(path)``
    makes. Returns core.products.vectorize.vectorize's summary."""
    with contextlib.ExitStack() as outputs:
        vec_tmp = outputs.enter_context(atomic_output(out_vector, overwrite))
        summary = vectorize.vectorize(classes_path, vec_tmp, classes,
                                      confidence_raster=confidence_tmp, simplify=tolerance,
                                      progress=progress, geodesic=geodesic)
        if raster_path is not None:
            write_cog(classes_path, outputs.enter_context(atomic_output(raster_path, overwrite)))
        if confidence_path is not None:
            write_cog(confidence_tmp, outputs.enter_context(
                atomic_output(confidence_path, overwrite)), resampling="average")
        if preview_path is not None and draw is not None:
            draw(outputs.enter_context(atomic_output(preview_path, overwrite)))
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
