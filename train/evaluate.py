"""Evaluation (paper §5): per-class IoU, mIoU, overall accuracy, confusion matrix, expert use.

Whole images are predicted with the tiler's blended sliding windows (core/inference/tiler.py)
when they are larger than ``tile``, else in one window; predictions are compared with the
labels (mapped through the classes: the model's own by label value, or a classes file with
the same number of classes in the model's class order). Nodata and ignored pixels do not count.

Besides IoU: the boundary F-score (train/boundary_metrics.py) at a tolerance in pixels, pooled
and per image. ``multilook`` > 1 scores the model on the images multilooked in power
(core/scene/multilook.py; e.g. 2 shows 10 m chips as 20 m scenes): its predictions are
brought back to the labels' grid (each coarse pixel repeated) and scored there.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..core.atomic import temporary_folder
from ..core.errors import InputError
from ..core.inference.tiler import NODATA_CLASS, resolve_device, run_tiled
from ..core.models import checkpoints
from ..core.models.model import input_contract, trained_bands
from ..core.progress import ensure
from ..core.scene import pooled
from ..core.scene.multilook import multilook_raster
from .boundary_metrics import DEFAULT_TOLERANCE_PX, boundary_counts, boundary_f
from .classes import IGNORE_INDEX, ClassSpec, from_model_classes
from .datasets import SceneCache
from .expert_stats import expert_report
from .file_pairing import RASTER_EXTS, expand_paths
from .labelled_scenes import load_labelled_scenes
from .metrics import confusion_matrix, summarize


def load_model(path: os.PathLike | str):
    """A whole model (kind "model") from a checkpoint; InputError for a bare backbone."""
    config = checkpoints.read_config(path)
    if config.get("kind") != "model":
        raise InputError(f"{path}: is a {config.get('kind')} checkpoint; evaluation needs a whole "
                         f"model (fine-tune it first)")
    return checkpoints.load(path)


def evaluate(model, images: Sequence[str], labels: Sequence[str], *,
             classes: Optional[ClassSpec] = None, class_field: Optional[str] = None,
             pair_pattern: Optional[str] = None, tile: int = 512, overlap: int = 128,
             batch: int = 4, device: str = "auto", domain: Optional[str] = None,
             bands: Optional[Sequence] = None, stretch: str = "scene",
             calibrated: Optional[bool] = None, multilook: int = 1,
             boundary_tolerance: float = DEFAULT_TOLERANCE_PX, progress=None) -> dict:
    """The metrics report (see train.metrics.summarize) plus ``boundary`` (pooled boundary
    F-score, train.boundary_metrics.boundary_f), ``per_image`` [{image, pixels, miou,
    per_class_iou, boundary_f}], ``multilook``, ``expert_activation``
    (train.expert_stats.expert_report), ``images`` and ``wall_s``.

    ``stretch`` as in a data file (train/sources.py): "scene", each image its own stretch;
    "source", one stretch pooled over all the images (tiles cut from one scene with one
    fixed scaling). Models of input contract 1 read quicklooks as v / 255 either way.
    ``calibrated``: None detects each image's calibration; True / False overrides (contract 3)."""
    progress = ensure(progress)
    t0 = time.perf_counter()
    k = len(model.classes)
    if classes is None:
        classes = from_model_classes(model.classes)
    elif len(classes) != k:
        raise InputError(f"{classes.source}: {len(classes)} classes but the model has {k} "
                         f"({', '.join(c['name'] for c in model.classes)})")
    opts = dict(domain=domain, bands=bands, calibrated=calibrated)
    preferred = trained_bands(model.config)  # feed it the bands it was trained on, as segment does
    stats = calibration = None
    contract = input_contract(model.config)
    if stretch == "source" and contract == 2:
        stats = pooled.pooled_statistics(expand_paths(images, "images", RASTER_EXTS),
                                         prefer=preferred, contract=2, **opts)
    elif stretch == "source" and contract >= 3:
        calibration = pooled.pooled_calibration(expand_paths(images, "images", RASTER_EXTS),
                                                prefer=preferred, **opts)
    scenes, classes = load_labelled_scenes(images, labels, classes, class_field, pair_pattern,
                                           prefer_bands=preferred, stats=stats,
                                           calibration=calibration, **opts)
    dev = resolve_device(device)
    model = model.to(dev).eval()
    if hasattr(model.backbone, "reset_expert_counts"):
        model.backbone.reset_expert_counts()
    cache = SceneCache(size=1, prefer=preferred, contract=input_contract(model.config), **opts)
    cm = torch.zeros(k, k, dtype=torch.int64)
    edges = np.zeros(4, np.int64)
    per_image = []
    # the temporary rasters: a write failure there (a full /tmp) names the temporary folder
    with temporary_folder(tempfile.gettempdir(), "evaluate", tempfile.gettempdir()) as tmp:
        for n, ls in enumerate(scenes):
            image = ls.image
            if multilook > 1:
                image = multilook_raster(ls.image, Path(tmp) / f"{n}.tif", multilook)
            pred = predict_classes(model, cache.get(image, ls.options), ls.labels.shape, multilook,
                                   tile=tile, overlap=overlap, batch=batch, device=dev)
            target = ls.labels.astype(np.int64)
            target[pred == NODATA_CLASS] = IGNORE_INDEX
            scene_cm = confusion_matrix(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(target), k)
            scene_edges = boundary_counts(pred, target, target != IGNORE_INDEX, boundary_tolerance)
            cm += scene_cm
            edges += scene_edges
            summary = summarize(scene_cm, classes.names)
            per_image.append({"image": ls.image.name, "pixels": summary["pixels"],
                              "miou": summary["miou"], "per_class_iou": summary["per_class_iou"],
                              "boundary_f": boundary_f(scene_edges, boundary_tolerance)["f_score"],
                              "confusion_matrix": summary["confusion_matrix"]})
            progress("evaluate", n + 1, len(scenes))
            cache.close()
    report = summarize(cm, classes.names)
    report["boundary"] = boundary_f(edges, boundary_tolerance)
    report["multilook"] = int(multilook)
    report["per_image"] = per_image
    counts = model.backbone.expert_counts() if hasattr(model.backbone, "expert_counts") else None
    report["expert_activation"] = expert_report(counts) if counts is not None else {"layers": []}
    report["images"] = len(scenes)
    report["wall_s"] = round(time.perf_counter() - t0, 2)
    return report


def predict_classes(model, scene, shape: tuple[int, int], multilook: int = 1, **window_options) -> np.ndarray:
    """The model's class indices uint8 ``shape`` [H, W] (NODATA_CLASS on nodata) on the labels'
    grid, for ``scene`` on that grid or (``multilook`` f > 1) on the grid f times coarser:
    each coarse pixel repeated f x f, cropped to ``shape``."""
    out = np.full(shape, NODATA_CLASS, np.uint8)
    f = int(multilook)

    def sink(row0, cls, conf):
        if f > 1:
            cls = np.repeat(np.repeat(cls, f, 0), f, 1)
        r0 = row0 * f
        rows = min(cls.shape[0], shape[0] - r0)
        if rows > 0:
            out[r0:r0 + rows] = cls[:rows, :shape[1]]

    predict_scene(model, scene, sink, **window_options)
    return out


def predict_scene(model, scene, sink, *, tile: int = 512, overlap: int = 128, batch: int = 4,
                  device: str | torch.device = "cpu") -> None:
    """The model's class indices over the whole ``scene`` (a core.scene.sar_io.SarScene opened with
    the model's bands and input contract), row bands to ``sink(row0, classes uint8 [h, W],
    confidence float32 [h, W])`` (core.inference.tiler.run_tiled; NODATA_CLASS on nodata): blended
    windows of ``tile`` px when the scene is larger, else one window of the scene's size."""
    side = max(scene.width, scene.height)
    t = tile if side > tile else max(16, side)
    ov = min(overlap, t // 4) if side > tile else 0

    def predict(x, phys, valid):
        return model.predict_proba(x, model.compute_descriptors(phys, valid))

    run_tiled(scene, predict, len(model.classes), sink, tile=t, overlap=ov, batch=batch,
              device=device)
