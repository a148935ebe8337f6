"""``change_scenes``: flood extent from a before/after pair (docs/interfaces.md).

after scene + one or more reference ("before") scenes → each segmented on its own grid
(core.inference.pipeline.classify_scene: the SAR is never resampled) → the references' class and
confidence rasters warped onto the after scene's grid (GDAL warp, nearest), band of rows by
band of rows → the reference vote → change classes (core.change.classes) → sieve → polygons
and outputs as ``ces segment`` writes them.

* Reference class of a pixel: the class most references give it, among the references that
  cover it; ties go to the class that is not background (water in at least half of the
  references is reference water), so one noisy reference among three does no harm.
* Nodata: a pixel is nodata unless the after scene and at least one reference have data
  there, so the output covers only the common footprint.
* Confidence (float32 0..1, NaN nodata): min(after confidence, mean confidence of the
  references that cover the pixel): a change is no surer than its less sure date.
* Areas (``area_m2``, the summary) are geodesic in every CRS.
* Scenes without georeferencing are compared pixel for pixel and must have the same size
  (e.g. OMBRIA's before/after tiles).

Refused with InputError before any model work (core.change.checks; nothing written): the same
file twice, scenes whose footprints do not overlap, one scene georeferenced and the other
not, and scenes read with different polarizations (the model would compare VV with HH). A
reference whose acquisition date is after the after scene's is a warning, not an error.

Memory: the scenes are segmented one after another (each as in ``ces segment``) and the
comparison holds one band of rows of each date, so the peak is that of segmenting the larger
scene (benchmarks/change_memory.py).
"""
from __future__ import annotations

import contextlib
import math
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import rasterio
from rasterio.warp import Resampling, reproject
from rasterio.windows import Window, transform as window_transform

from ..atomic import temporary_folder
from ..errors import InputError, ParameterError
from ..inference.pipeline import PathLike, WarningLog, classify_scene, gdal_cache_bytes, prepare_model
from ..models.model import input_contract, trained_bands
from ..products import vectorize
from ..products.class_raster import NODATA_CLASS, raster_classes
from ..products.outputs import (
    DEFAULT_SIMPLIFY_PIXELS,
    needed_beside,
    output_needs,
    output_paths,
    sieve_pixels,
    write_outputs,
)
from ..progress import ProgressCallback, ensure
from ..scene import sar_io
from ..scene.pixel_size import metres_to_crs_units, pixel_area_m2
from .checks import check_scenes
from .classes import change_classes, change_lookup, vote_order

PROGRESS_UNITS = 1000   # the "segment" stage runs 0..PROGRESS_UNITS over all scenes


def _scene_progress(progress: ProgressCallback, start: float, share: float,
                    whole: float) -> ProgressCallback:
    """One scene's tiler progress as its share of one "segment" stage over all scenes."""
    def report(stage: str, done: int, total: int) -> None:
        if stage == "segment" and total:
            frac = (start + share * min(done / total, 1.0)) / whole
            progress("segment", int(round(PROGRESS_UNITS * frac)), PROGRESS_UNITS)
        else:
            progress(stage, done, total)
    return report


def _reference_band(src, win: Window, grid, nodata) -> np.ndarray:
    """Band 1 of a reference raster on the after grid's window ``win``: GDAL warp (nearest)
    into the window's grid, or the same window for scenes without a CRS (pixel-aligned)."""
    if grid.crs is None:
        return src.read(1, window=win)
    out = np.full((int(win.height), int(win.width)), nodata, src.dtypes[0])
    reproject(source=rasterio.band(src, 1), destination=out, src_transform=src.transform,
              src_crs=src.crs, src_nodata=nodata, dst_transform=window_transform(win, grid.transform),
              dst_crs=grid.crs, dst_nodata=nodata, resampling=Resampling.nearest)
    return out


def combine(after_classes: PathLike, after_conf: PathLike,
            references: Sequence[tuple[PathLike, PathLike]], classes: Sequence[dict],
            out_classes: PathLike, out_conf: PathLike,
            progress: Optional[ProgressCallback] = None) -> None:
    """Write the change raster (uint8, change values, 255 nodata) and its confidence (float32,
    NaN nodata) on the after grid from the after scene's class / confidence rasters and the
    references' (module doc). ``classes``: the model's raster classes."""
    progress = ensure(progress)
    lut = change_lookup(classes)
    values = np.array([int(c["value"]) for c in classes])
    order = vote_order(classes)
    with contextlib.ExitStack() as stack:
        a_cls = stack.enter_context(rasterio.open(after_classes))
        a_conf = stack.enter_context(rasterio.open(after_conf))
        refs = [(stack.enter_context(rasterio.open(c)), stack.enter_context(rasterio.open(f)))
                for c, f in references]
        common = {**vectorize.TEMP_RASTER_PROFILE, "width": a_cls.width, "height": a_cls.height,
                  "count": 1, "crs": a_cls.crs, "transform": a_cls.transform}
        o_cls = stack.enter_context(rasterio.open(out_classes, "w", dtype="uint8",
                                                  nodata=NODATA_CLASS, **common))
        o_conf = stack.enter_context(rasterio.open(out_conf, "w", dtype="float32",
                                                   nodata=float("nan"), **common))
        rows = vectorize.rows_per_band(a_cls.width)
        bands = math.ceil(a_cls.height / rows)
        for k, row0 in enumerate(range(0, a_cls.height, rows)):
            win = Window(0, row0, a_cls.width, min(rows, a_cls.height - row0))
            after = a_cls.read(1, window=win)
            votes = np.zeros((len(classes),) + after.shape, np.int16)
            conf_sum = np.zeros(after.shape, np.float32)
            covered = np.zeros(after.shape, np.int16)
            for r_cls, r_conf in refs:
                ref = _reference_band(r_cls, win, a_cls, NODATA_CLASS)
                conf = _reference_band(r_conf, win, a_cls, np.nan)
                has = ref != NODATA_CLASS
                covered += has
                conf_sum += np.where(has, np.nan_to_num(conf), 0.0)
                for i, v in enumerate(values):
                    votes[i] += ref == v
            winner = np.argmax(votes[order], axis=0)          # first of the most: ties to order
            reference = values[np.asarray(order)[winner]].astype(np.uint8)
            reference[covered == 0] = NODATA_CLASS
            change = lut[reference, after]
            with np.errstate(invalid="ignore", divide="ignore"):
                ref_conf = conf_sum / covered
            conf = np.minimum(a_conf.read(1, window=win), ref_conf).astype(np.float32)
            conf[change == NODATA_CLASS] = np.nan
            o_cls.write(change, 1, window=win)
            o_conf.write(conf, 1, window=win)
            progress("compare", k + 1, bands)


def change_scenes(after_path: PathLike, before_paths: Sequence[PathLike], model,
                  out_vector: PathLike, *, raster: Optional[PathLike] = None,
                  confidence: Optional[PathLike] = None, preview: Optional[PathLike] = None,
                  tile: int = 512, overlap: int = 128, batch: int = 4, device: str = "auto",
                  min_area: Optional[float] = None, simplify: Optional[float] = None,
                  overwrite: bool = False, progress: Optional[ProgressCallback] = None,
                  warn: Optional[Callable[[str], None]] = None, domain: Optional[str] = None,
                  bands: Optional[Sequence] = None, complex_part: str = "amplitude",
                  calibrated: Optional[bool] = None) -> dict:
    """The change product of ``after_path`` against the references ``before_paths`` (module
    doc). Options as core.inference.pipeline.segment_scene; ``min_area`` / ``simplify`` apply to the
    change map on the after grid. Returns {"outputs", "warnings", "polygons",
    "class_area_m2" (geodesic m² per change class), "classes", "timing", ...}.
    Raises InputError for bad input (nothing is written then)."""
    with rasterio.Env(GDAL_CACHEMAX=max(gdal_cache_bytes(p) for p in [after_path, *before_paths])):
        return _change_scenes(after_path, list(before_paths), model, out_vector, raster=raster,
                              confidence=confidence, preview=preview, tile=tile,
                              overlap=overlap, batch=batch, device=device, min_area=min_area,
                              simplify=simplify, overwrite=overwrite, progress=progress,
                              warn=warn, domain=domain, bands=bands, complex_part=complex_part,
                              calibrated=calibrated)


def _change_scenes(after_path, before_paths, model, out_vector, *, raster, confidence,
                   preview, tile, overlap, batch, device, min_area, simplify, overwrite,
                   progress, warn, domain, bands, complex_part, calibrated) -> dict:
    from ..inference import tiler

    progress = ensure(progress)
    warning = WarningLog(warn)
    out_vector, raster_path, confidence_path, preview_path = output_paths(
        out_vector, raster, confidence, preview, overwrite)
    tiler.check_tiling(tile, overlap, batch)
    model, dev = prepare_model(model, device)
    classes = raster_classes(model.classes)
    try:
        change = change_classes(classes)
    except ValueError as e:
        raise ParameterError("model", None, str(e)) from None
    open_options = dict(domain=domain, bands=bands, complex_part=complex_part,
                        prefer=trained_bands(model.config), contract=input_contract(model.config),
                        calibrated=calibrated)
    check_scenes(after_path, before_paths, open_options, warning)

    t0 = time.perf_counter()
    scenes = [*before_paths, after_path]
    sizes, grids = [], []
    for path in scenes:
        with rasterio.open(path) as src:
            sizes.append(float(src.width * src.height))
            grids.append((src.width, src.height, 1.0))
    folder = out_vector.parent if str(out_vector.parent) else Path(".")
    needs = output_needs(grids[-1], out_vector, raster_path, confidence_path, preview_path,
                         temporary_grids=[*grids, grids[-1]])   # each scene's, the combination's
    with temporary_folder(folder, "change", out_vector, needed_beside(needs, folder)) as tmp:
        rasters = []
        for k, path in enumerate(scenes):
            with sar_io.open_scene(path, **open_options) as scene:
                for w in scene.warnings:
                    warning(w)
                if scene.nodata_fraction >= 1.0:
                    raise InputError(f"{path}: contains no valid pixel (entirely nodata)")
                pair = (tmp / f"classes_{k}.tif", tmp / f"confidence_{k}.tif")
                classify_scene(scene, model, *pair, tile=tile, overlap=overlap, batch=batch,
                               device=dev, warn=warning,
                               progress=_scene_progress(progress, sum(sizes[:k]), sizes[k],
                                                        sum(sizes)))
                rasters.append(pair)
                if k == len(scenes) - 1:
                    grid = (scene.crs, scene.transform, scene.width, scene.height)
                    min_pixels = sieve_pixels(scene, min_area)
        t_tiles = time.perf_counter()
        raw, conf = tmp / "change_raw.tif", tmp / "change_confidence.tif"
        combine(*rasters[-1], rasters[:-1], classes, raw, conf, progress=progress)
        crs, transform, width, height = grid
        px_size = math.sqrt(max(pixel_area_m2(crs, transform, width, height), 1e-12))
        simplify_m = DEFAULT_SIMPLIFY_PIXELS * px_size if simplify is None else float(simplify)
        tolerance = metres_to_crs_units(simplify_m, crs, transform, width, height)
        sieved = tmp / "change.tif"
        vectorize.sieve_raster(raw, sieved, min_pixels, progress=progress)
        def draw(path):
            from .preview import write_change_preview

            write_change_preview(before_paths[0], after_path, rasters[0][0], rasters[-1][0],
                                 sieved, classes, change, path)
        summary = write_outputs(sieved, conf, change, out_vector, raster_path, confidence_path,
                                preview_path, draw, tolerance=tolerance, overwrite=overwrite,
                                progress=progress, geodesic=True, needs=needs)
        t_end = time.perf_counter()
    out = {"vector": str(out_vector.absolute())}
    for key, path in (("raster", raster_path), ("confidence", confidence_path),
                      ("preview", preview_path)):
        if path is not None:
            out[key] = str(path.absolute())
    return {
        "scene": str(after_path), "references": [str(p) for p in before_paths],
        "outputs": out, "warnings": warning.messages, "polygons": summary["polygons"],
        "class_area_m2": summary["class_area_m2"], "classes": change,
        "min_area_pixels": min_pixels, "simplify_m": simplify_m,
        "timing": {"segment_s": round(t_tiles - t0, 3), "compare_s": round(t_end - t_tiles, 3),
                   "total_s": round(t_end - t0, 3)},
    }
