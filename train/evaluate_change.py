"""Evaluation of a change product: after images with their reference ("before")
images and flood labels, scored three ways on the same pixels.

* ``single_date``: the after image's own water (what ``ces evaluate`` without references
  scores);
* ``new-water``: the change product's ``flood`` class (water after, not before);
* ``water-after``: ``flood`` and ``permanent water`` together.

Each report is train.metrics.summarize's (per-class IoU, mIoU, accuracy, confusion matrix) over
(background, water). The label set declares which of the two change definitions its water
class means (``meaning`` in the classes file, or ``label_meaning``); the report names it
``declared``. Each pair goes through the product's own path: core.inference.pipeline.classify_scene on
each image's own grid, core.change.detect.combine onto the after grid (nearest), so the figures are
those of ``ces change``, without the sieve.
"""
from __future__ import annotations

import tempfile
import time
from typing import Optional, Sequence

import numpy as np
import rasterio
import torch

from ..core.atomic import temporary_folder
from ..core.change.classes import LABEL_MEANINGS, change_classes, positive_values, water_class
from ..core.change.detect import combine
from ..core.class_colors import is_background
from ..core.errors import InputError, parameter
from ..core.inference.pipeline import classify_scene
from ..core.inference.tiler import resolve_device
from ..core.models.model import input_contract, trained_bands
from ..core.products.class_raster import raster_classes
from ..core.progress import ensure
from ..core.scene import sar_io
from .classes import IGNORE_INDEX, ClassSpec, from_model_classes
from .file_pairing import RASTER_EXTS, expand_paths, pair_files
from .labelled_scenes import load_labelled_scenes
from .markdown import pct, table
from .metrics import confusion_matrix, summarize

DEFINITIONS = ("single_date", *LABEL_MEANINGS)


def window_for(scene: sar_io.SarScene, tile: int, overlap: int) -> tuple[int, int]:
    """(tile, overlap) for a scene: blended windows when it is larger than ``tile``, else one
    window of its size (as train.evaluate.predict_scene)."""
    side = max(scene.width, scene.height)
    if side > tile:
        return tile, min(overlap, tile // 4)
    return max(16, side), 0


def _water_index(classes: ClassSpec, where: str) -> int:
    """The index of the one water class of a two-class label set."""
    shown = [i for i, c in enumerate(classes.classes) if not is_background(c)]
    if len(classes) != 2 or len(shown) != 1:
        raise InputError(f"{where}: a change is scored against labels of two classes, "
                         f"background and water (found: {', '.join(classes.names)})")
    return shown[0]


def evaluate_change(model, images: Sequence[str], befores: Sequence[str], labels: Sequence[str],
                    *, classes: Optional[ClassSpec] = None, label_meaning: Optional[str] = None,
                    class_field: Optional[str] = None, pair_pattern: Optional[str] = None,
                    tile: int = 512, overlap: int = 128, batch: int = 4, device: str = "auto",
                    domain: Optional[str] = None, bands: Optional[Sequence] = None,
                    calibrated: Optional[bool] = None, progress=None) -> dict:
    """{"declared": meaning, "single_date": report, "new-water": report, "water-after":
    report, "images": n, "pixels": n, "wall_s": s} (module doc). The before image of each
    after image is found by the same pairing rule as its labels."""
    progress = ensure(progress)
    t0 = time.perf_counter()
    model_classes = raster_classes(model.classes)
    water = water_class(model_classes)
    if water is None:
        raise InputError(f"{parameter('before')}: scoring a change needs a water model (one class that is "
                         f"not background); this model has {', '.join(c['name'] for c in model_classes)}")
    meaning = label_meaning or (classes.meaning if classes is not None else None)
    if meaning is None:
        raise InputError(f"{parameter('label_meaning')}: say what the labels' water class means, new-water "
                         "or water-after (or put 'meaning:' in the classes file)")
    if classes is None:
        classes = from_model_classes(model.classes)
    opts = dict(domain=domain, bands=bands, calibrated=calibrated)
    preferred = trained_bands(model.config)
    scenes, classes = load_labelled_scenes(images, labels, classes, class_field, pair_pattern,
                                           prefer_bands=preferred, **opts)
    label_water = _water_index(classes, classes.source)
    before_of = dict(pair_files([s.image for s in scenes],
                                expand_paths(befores, "before", RASTER_EXTS), pair_pattern))
    change = change_classes(model_classes)
    positives = {m: positive_values(change, m) for m in LABEL_MEANINGS}
    dev = resolve_device(device)
    model = model.to(dev).eval()
    open_opts = dict(opts, prefer=preferred, contract=input_contract(model.config))
    cms = {d: torch.zeros(2, 2, dtype=torch.int64) for d in DEFINITIONS}
    # the temporary rasters: a write failure there (a full /tmp) names the temporary folder
    with temporary_folder(tempfile.gettempdir(), "evaluate-change", tempfile.gettempdir()) as tmp:
        for n, ls in enumerate(scenes):
            rasters = []
            for k, path in enumerate((before_of[ls.image], ls.image)):
                pair = (tmp / f"classes_{k}.tif", tmp / f"confidence_{k}.tif")
                with sar_io.open_scene(path, **open_opts) as scene:
                    t, ov = window_for(scene, tile, overlap)
                    classify_scene(scene, model, *pair, tile=t, overlap=ov, batch=batch, device=dev)
                rasters.append(pair)
            combine(*rasters[1], rasters[:1], model_classes, tmp / "change.tif", tmp / "conf.tif")
            with rasterio.open(rasters[1][0]) as a, rasterio.open(tmp / "change.tif") as c:
                after, changed = a.read(1), c.read(1)
            target = torch.from_numpy(np.where(ls.labels == IGNORE_INDEX, IGNORE_INDEX,
                                               ls.labels == label_water).astype(np.int64))
            target[torch.from_numpy(changed == 255)] = IGNORE_INDEX
            preds = {"single_date": after == int(water["value"]),
                     **{m: np.isin(changed, v) for m, v in positives.items()}}
            for d, pred in preds.items():
                cms[d] += confusion_matrix(torch.from_numpy(pred.astype(np.int64)), target, 2)
            progress("evaluate", n + 1, len(scenes))
    names = ["background", "water"]
    out = {"declared": meaning, **{d: summarize(cm, names) for d, cm in cms.items()}}
    out["images"] = len(scenes)
    out["pixels"] = out["single_date"].get("pixels")
    out["wall_s"] = round(time.perf_counter() - t0, 2)
    return out


def markdown_table(report: dict) -> str:
    """The three definitions side by side: water IoU, background IoU, mIoU (%)."""
    labels = {"single_date": "water after (single date)",
              "new-water": "change: flood (new water)",
              "water-after": "change: flood + permanent water"}
    rows = []
    for d in DEFINITIONS:
        r, mark = report[d], " (the labels' meaning)" if d == report["declared"] else ""
        rows.append([labels[d] + mark, pct(r["per_class_iou"]["water"]),
                     pct(r["per_class_iou"]["background"]), pct(r["miou"])])
    return "\n".join(table(["scored as", "water IoU", "background IoU", "mIoU"], rows))
