"""``segment_scene``: the one place where reading, the model, tiling, rasters and vectors meet.

scene (core.scene.sar_io: scene-level normalization) → per-tile descriptors + model probabilities
(core.inference.tiler: blended windows, streamed rows) → class raster and confidence raster (tiled,
compressed temporary GeoTIFFs) → sieve (core.products.vectorize) → polygons → outputs.

Outputs (all written atomically, all or none; a write failure, a full disk among others, is
named in one line for the user's path: core/write_failures.py):

* the vector file (``landcover`` layer; .gpkg/.geojson/.fgb/.shp/.parquet);
* ``raster``: the class raster (uint8, class values, nodata 255) *after* sieving, so it and
  the polygons agree; a COG (tiled, deflate, overviews by nearest neighbour);
* ``confidence``: the blended maximum class probability (float32 0..1, nodata NaN), a COG.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from ..atomic import temporary_folder
from ..errors import InputError, bare, word_parameters
from ..models import cpu_streams
from ..models.model import input_contract, trained_bands
from ..products import vectorize
from ..products.class_raster import raster_classes
from ..products.outputs import (
    DEFAULT_SIMPLIFY_PIXELS,
    needed_beside,
    output_needs,
    output_paths,
    sieve_pixels,
    write_outputs,
)
from ..progress import ProgressCallback, ensure
from ..scene import sar_io, values
from ..scene.pixel_size import metres_to_crs_units, pixel_area_m2
from . import tiler
from .domain_shift import domain_shift_warning
from .memory import release_free_memory
from .window_steps import window_steps

PathLike = Union[str, os.PathLike]
GDAL_CACHE_MB = (16, 256)       # GDAL block cache while segmenting, MiB: (least, most)


def gdal_cache_bytes(scene_path: PathLike) -> int:
    """GDAL_CACHEMAX in bytes while segmenting ``scene_path``: two rows of blocks of one band
    (a decimated read visits a whole row of blocks for every output row, the tiler's windows
    two), within GDAL_CACHE_MB. rasterio hands an integer GDAL_CACHEMAX to GDAL in bytes
    (GDAL's own "below 100000 means MB" rule does not apply): a cache of "64" is 64 bytes, and
    every block is decompressed again for each row read. The least applies when the scene
    cannot be opened (the scene's own checks then report it)."""
    least, most = (mb * 1024 * 1024 for mb in GDAL_CACHE_MB)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            src = rasterio.open(scene_path)
        with src:
            bh, bw = src.block_shapes[0]
            row = math.ceil(src.width / bw) * bh * bw * values.numpy_dtype(src.dtypes[0]).itemsize
    except (rasterio.errors.RasterioError, OSError, ValueError):
        return least
    return int(min(max(2 * row, least), most))


class _RasterSink:
    """Writes the tiler's finished rows to the class and confidence temporary GeoTIFFs."""

    def __init__(self, classes_path: Path, confidence_path: Path, scene: sar_io.SarScene):
        common = {**vectorize.TEMP_RASTER_PROFILE, "width": scene.width,
                  "height": scene.height, "count": 1, "crs": scene.crs,
                  "transform": scene.transform}
        self.classes = rasterio.open(classes_path, "w", dtype="uint8",
                                     nodata=tiler.NODATA_CLASS, **common)
        self.confidence = rasterio.open(confidence_path, "w", dtype="float32",
                                        nodata=float("nan"), **common)
        self.width = scene.width

    def __call__(self, row0: int, classes: np.ndarray, confidence: np.ndarray) -> None:
        win = Window(0, row0, self.width, classes.shape[0])
        self.classes.write(classes, 1, window=win)
        self.confidence.write(confidence.astype(np.float32, copy=False), 1, window=win)
        release_free_memory()  # what the reader thread freed (RSS flat with scene size)

    def close(self) -> None:
        self.classes.close()
        self.confidence.close()


def make_predict(model: torch.nn.Module, collected: Optional[list] = None) -> tiler.Predict:
    """The tiler's predict callable for a CrossEarthSAR: descriptors per tile, probabilities.

    Descriptors are computed in float32 outside autocast; each batch's descriptors [B, 3] are
    appended (as numpy) to ``collected`` when given (per stream, in no fixed order, when the
    model runs the batch as parallel CPU streams: descriptors and model in each stream).
    """

    def one_stream(x: torch.Tensor, phys: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            desc = model.compute_descriptors(phys.float(), valid)
        if collected is not None:
            collected.append(desc.detach().float().cpu().numpy())
        return model.predict_proba(x, desc)  # within a stream: one plain call

    def predict(x: torch.Tensor, phys: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        streams_on = getattr(model, "streams_on", None)
        if streams_on is not None and streams_on(x):
            return cpu_streams.split_call(one_stream, [x, phys, valid])
        return one_stream(x, phys, valid)

    return predict


class WarningLog:
    """A run's warnings: called with a message, it keeps it (``messages``, for the result,
    parameters worded by name) and passes it on to ``warn`` (the CLI's or QGIS's reporter, which
    words the parameters marked by core.errors.parameter) when given."""

    def __init__(self, warn: Optional[Callable[[str], None]] = None):
        self.messages: list[str] = []
        self.warn = warn

    def __call__(self, message: str) -> None:
        """Keep ``message`` and pass it on."""
        self.messages.append(word_parameters(message, bare))
        if self.warn is not None:
            self.warn(message)


def prepare_model(model: Union[torch.nn.Module, PathLike], device: str
                  ) -> tuple[torch.nn.Module, torch.device]:
    """(the model in eval mode on its device, the device) from a CrossEarthSAR or a checkpoint
    path; InputError for a backbone without a segmentation head."""
    dev = tiler.resolve_device(device)
    model_path = None if isinstance(model, torch.nn.Module) else model
    if model_path is not None:
        from ..models import checkpoints

        model = checkpoints.load(model, map_location="cpu")
    if getattr(model, "config", {}).get("kind", "model") != "model" or not hasattr(model, "classes"):
        raise InputError("the model is a backbone without a segmentation head; fine-tune it "
                         "first (ces finetune --model ...)",
                         model_path)
    return model.to(dev).eval(), dev


def classify_scene(scene: sar_io.SarScene, model: torch.nn.Module, classes_path: PathLike,
                   confidence_path: PathLike, *, tile: int, overlap: int, batch: int,
                   device: torch.device, progress: Optional[ProgressCallback] = None,
                   warn: Optional[Callable[[str], None]] = None) -> tiler.TilingStats:
    """Run the model over an open scene on its own grid: the unsieved class raster (uint8,
    raster_classes values, 255 nodata) and the confidence raster (float32 0..1, NaN nodata),
    written as temporary GeoTIFFs at the two paths. A domain-shift warning goes to ``warn``."""
    model_classes = raster_classes(model.classes)
    descriptors: list[np.ndarray] = []
    sink = _RasterSink(Path(classes_path), Path(confidence_path), scene)
    try:
        with window_steps(model, progress) as steps:   # a bar that moves on a single chip
            stats = tiler.run_tiled(
                scene, make_predict(model, descriptors), len(model_classes), sink, tile=tile,
                overlap=overlap, batch=batch, device=device,
                class_values=[c["value"] for c in model_classes], progress=steps)
    finally:
        sink.close()
    desc = np.concatenate(descriptors) if descriptors else np.zeros((0, 3))
    dcfg = model.config.get("descriptors", {})
    shift = domain_shift_warning(desc, dcfg.get("train_stats"), scaling=dcfg.get("scaling"))
    if shift and warn is not None:
        warn(f"{Path(scene.path).name}: {shift}")
    return stats


def segment_scene(scene_path: PathLike, model: Union[torch.nn.Module, PathLike],
                  out_vector: PathLike, *, raster: Optional[PathLike] = None,
                  confidence: Optional[PathLike] = None, tile: int = 512, overlap: int = 128,
                  batch: int = 4, device: str = "auto", min_area: Optional[float] = None,
                  simplify: Optional[float] = None, overwrite: bool = False,
                  progress: Optional[ProgressCallback] = None,
                  warn: Optional[Callable[[str], None]] = None, domain: Optional[str] = None,
                  bands: Optional[Sequence] = None, complex_part: str = "amplitude",
                  preview: Optional[PathLike] = None,
                  calibrated: Optional[bool] = None) -> dict:
    """Segment one SAR scene into land-cover polygons (and optional rasters).

    ``calibrated``: None detects the scene's calibration, True / False overrides it (models
    of input contract 3; core/scene/sar_io.py).
    ``min_area`` m² (default 4 pixels' area; 0 = no sieve); ``simplify`` metres (default 3/4
    pixel; 0 = exact pixel edges). ``model``: a CrossEarthSAR or a checkpoint path.
    ``domain`` / ``bands`` / ``complex_part``: passed to core.scene.sar_io.open_scene.
    ``preview``: also write a PNG picture of the result there (core.products.preview).
    Returns {"outputs": {"vector", ["raster"], ["confidence"]}, "warnings": [...],
    "class_area_m2": {name: m²}, "polygons": N, "timing": {...}, ...}.
    Raises InputError for bad input (nothing is written then).
    """
    with rasterio.Env(GDAL_CACHEMAX=gdal_cache_bytes(scene_path)):
        return _segment_scene(scene_path, model, out_vector, raster=raster,
                              confidence=confidence, tile=tile, overlap=overlap, batch=batch,
                              device=device, min_area=min_area, simplify=simplify,
                              overwrite=overwrite, progress=progress, warn=warn, domain=domain,
                              bands=bands, complex_part=complex_part, preview=preview,
                              calibrated=calibrated)


def _segment_scene(scene_path, model, out_vector, *, raster, confidence, tile, overlap, batch,
                   device, min_area, simplify, overwrite, progress, warn, domain, bands,
                   complex_part, preview, calibrated) -> dict:
    progress = ensure(progress)
    warning = WarningLog(warn)
    out_vector, raster_path, confidence_path, preview_path = output_paths(
        out_vector, raster, confidence, preview, overwrite)
    tiler.check_tiling(tile, overlap, batch)
    model, dev = prepare_model(model, device)
    classes = raster_classes(model.classes)

    t0 = time.perf_counter()
    preferred = trained_bands(model.config)  # the bands it was trained on
    with sar_io.open_scene(scene_path, domain=domain, bands=bands, complex_part=complex_part,
                           prefer=preferred, contract=input_contract(model.config),
                           calibrated=calibrated) as scene:
        for w in scene.warnings:
            warning(w)
        if scene.nodata_fraction >= 1.0:
            raise InputError(f"{scene_path}: contains no valid pixel (entirely nodata)")
        px_area = pixel_area_m2(scene.crs, scene.transform, scene.width, scene.height)
        min_pixels = sieve_pixels(scene, min_area)
        px_size = math.sqrt(max(px_area, 1e-12))
        simplify_m = DEFAULT_SIMPLIFY_PIXELS * px_size if simplify is None else float(simplify)
        tolerance = metres_to_crs_units(simplify_m, scene.crs, scene.transform,
                                                  scene.width, scene.height)
        folder = out_vector.parent if str(out_vector.parent) else Path(".")
        needs = output_needs((scene.width, scene.height, 1.0 - scene.nodata_fraction), out_vector,
                             raster_path, confidence_path, preview_path)
        with temporary_folder(folder, "segment", out_vector, needed_beside(needs, folder)) as tmp:
            raw_path, conf_path, sieved_path = tmp / "raw.tif", tmp / "conf.tif", tmp / "classes.tif"
            stats = classify_scene(scene, model, raw_path, conf_path, tile=tile,
                                   overlap=overlap, batch=batch, device=dev,
                                   progress=progress, warn=warning)
            t_tiles = time.perf_counter()
            vectorize.sieve_raster(raw_path, sieved_path, min_pixels, progress=progress)
            draw = None
            if preview_path is not None:
                from ..products.preview import write_preview

                def draw(path):
                    write_preview(scene_path, sieved_path, classes, path)
            summary = write_outputs(sieved_path, conf_path, classes, out_vector,
                                    raster_path, confidence_path, preview_path, draw,
                                    tolerance=tolerance, overwrite=overwrite, progress=progress,
                                    needs=needs)
            t_end = time.perf_counter()
    out = {"vector": str(out_vector.absolute())}
    if raster_path is not None:
        out["raster"] = str(raster_path.absolute())
    if confidence_path is not None:
        out["confidence"] = str(confidence_path.absolute())
    if preview_path is not None:
        out["preview"] = str(preview_path.absolute())
    if summary["polygons"] == 0:
        warning(f"{Path(scene_path).name}: no polygon left after sieving")
    return {
        "scene": str(scene_path),
        "outputs": out,
        "warnings": warning.messages,
        "polygons": summary["polygons"],
        "class_area_m2": summary["class_area_m2"],
        "min_area_pixels": min_pixels,
        "simplify_m": simplify_m,
        "timing": {"tiles_s": round(t_tiles - t0, 3), "forward_s": round(stats.forward_s, 3),
                   "vectorize_s": round(t_end - t_tiles, 3), "total_s": round(t_end - t0, 3),
                   "windows": stats.windows, "windows_skipped": stats.windows_skipped,
                   "device": stats.device},
    }
