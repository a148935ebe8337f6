"""Label agreement between models: the mean-agreement measure of the CrossEarth-SAR appendix
(after OpenEarthMap-SAR), used to judge pseudo-labels before training on them.

Every model predicts every image with evaluation's tiled inference
(:func:`train.evaluate.predict_scene`), each image opened with that model's own input bands
and contract; nodata is excluded. The pixels counted for the models' comparisons are those
that every model predicted; against reference labels, those that are also labelled.

* ``pairwise[i][j]``: the fraction of counted pixels where models i and j predict the same
  class (a symmetric matrix, ones on the diagonal); pixel-weighted over all images.
* ``mean_agreement``: the mean of ``pairwise[i][j]`` over the pairs i < j.
* ``per_class[name]``: ``pairwise``, the IoU of two models' masks of that class
  (|A ∩ B| / |A ∪ B|; null when neither predicts it; on the diagonal 1, or null when the
  model never predicts it), and ``mean``, its mean over the pairs that predict it.
* ``reference[model]`` (with labels): the model's pixel agreement with the labels (overall
  accuracy), per-class IoU and mIoU (train.metrics.summarize).

Classes are matched by name: every model must have the same class names (any order); the
report follows the first model's order. Reference labels map to classes as in
``ces evaluate`` (the first model's classes by label value, or a classes file with as many
classes, in the first model's order).
"""
from __future__ import annotations

import os
import time
from itertools import combinations
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from ..core.errors import InputError, ParameterError
from ..core.inference.tiler import NODATA_CLASS, resolve_device
from ..core.models.model import input_contract, trained_bands
from ..core.progress import ensure
from .classes import IGNORE_INDEX, ClassSpec, from_model_classes
from .datasets import SceneCache
from .evaluate import predict_scene
from .file_pairing import RASTER_EXTS, expand_paths
from .labelled_scenes import load_labelled_scenes
from .markdown import pct, table
from .metrics import confusion_matrix, iou_per_class, summarize


def check_class_names(names: Sequence[str], configs: Sequence[dict]) -> list[str]:
    """The first model's class names; InputError (one line naming both models) when another
    model's class names differ. ``names``: the models as given; ``configs``: their configs."""
    first = [c["name"] for c in configs[0].get("classes", [])]
    for name, cfg in zip(names[1:], configs[1:]):
        other = [c["name"] for c in cfg.get("classes", [])]
        if sorted(other) != sorted(first):
            raise InputError(f"{name}: classes ({', '.join(other)}) differ from those of "
                             f"{names[0]} ({', '.join(first)}); agreement compares models with "
                             f"the same class names", name)
    return first


def class_raster(model, scene, names: Sequence[str], **tiling) -> np.ndarray:
    """The model's classes over the whole scene as indices into ``names`` (uint8 [H, W],
    NODATA_CLASS on nodata)."""
    lookup = np.full(256, NODATA_CLASS, np.uint8)
    for k, c in enumerate(model.classes):
        lookup[k] = names.index(c["name"])
    out = np.full((scene.height, scene.width), NODATA_CLASS, np.uint8)

    def sink(row0, cls, conf):
        out[row0:row0 + cls.shape[0]] = lookup[cls]

    predict_scene(model, scene, sink, **tiling)
    return out


def _counts(pred: np.ndarray, target: np.ndarray, k: int) -> torch.Tensor:
    """Counts [k, k] (rows ``target``, columns ``pred``; target 255 not counted)."""
    return confusion_matrix(torch.from_numpy(pred.astype(np.int64)),
                            torch.from_numpy(target.astype(np.int64)), k)


def agreement(models: Sequence, names: Sequence[str], images: Sequence[os.PathLike | str],
              labels: Optional[Sequence[os.PathLike | str]] = None, *,
              classes: Optional[ClassSpec] = None, class_field: Optional[str] = None,
              pair_pattern: Optional[str] = None, tile: int = 512, overlap: int = 128,
              batch: int = 4, device: str = "auto", domain: Optional[str] = None,
              bands: Optional[Sequence] = None, calibrated: Optional[bool] = None,
              progress=None) -> dict:
    """The agreement report (module doc) of ``models`` (CrossEarthSAR, at least 2, named by
    ``names``) over ``images``, and against ``labels`` when given. JSON-able dict with
    ``models``, ``classes``, ``pairwise``, ``mean_agreement``, ``per_class``, ``reference``
    (or None), ``images`` (per image: path, pixels, mean_agreement), ``pixels``, ``wall_s``."""
    progress = ensure(progress)
    t0 = time.perf_counter()
    if len(models) < 2:
        raise ParameterError("models", None, f"agreement needs at least 2 models (got {len(models)})")
    cls_names = check_class_names(names, [m.config for m in models])
    k = len(cls_names)
    opts = dict(domain=domain, bands=bands, calibrated=calibrated)
    first = models[0]
    if labels:
        if classes is None:
            classes = from_model_classes(first.classes)
        elif len(classes) != k:
            raise InputError(f"{classes.source}: {len(classes)} classes but the models have {k} "
                             f"({', '.join(cls_names)})")
        labelled, classes = load_labelled_scenes(images, labels, classes, class_field,
                                                 pair_pattern, prefer_bands=trained_bands(first.config),
                                                 **opts)
        items = [(s.image, s.labels) for s in labelled]
    else:
        items = [(p, None) for p in expand_paths(images, "images", RASTER_EXTS)]
    dev = resolve_device(device)
    models = [m.to(dev).eval() for m in models]
    caches = [SceneCache(size=1, prefer=trained_bands(m.config), contract=input_contract(m.config),
                         **opts) for m in models]
    pairs = list(combinations(range(len(models)), 2))
    pair_cm = {p: torch.zeros(k, k, dtype=torch.int64) for p in pairs}
    ref_cm = [torch.zeros(k, k, dtype=torch.int64) for _ in models]
    per_image = []
    tiling = dict(tile=tile, overlap=overlap, batch=batch, device=dev)
    try:
        for n, (image, lab) in enumerate(items):
            preds = [class_raster(m, c.get(Path(image)), cls_names, **tiling)
                     for m, c in zip(models, caches)]
            common = np.logical_and.reduce([p != NODATA_CLASS for p in preds])
            flat = [p[common] for p in preds]
            same = []
            for i, j in pairs:
                pair_cm[(i, j)] += _counts(flat[i], flat[j], k)
                same.append(float((flat[i] == flat[j]).mean()) if flat[i].size else None)
            if lab is not None:
                target = np.where(common, lab, IGNORE_INDEX).astype(np.uint8)
                for i, p in enumerate(preds):
                    ref_cm[i] += _counts(p, target, k)   # rows: the labels
            per_image.append({"image": str(image), "pixels": int(common.sum()),
                              "mean_agreement": _mean([v for v in same if v is not None])})
            progress("agreement", n + 1, len(items))
    finally:
        for c in caches:
            c.close()
    pixels = int(pair_cm[pairs[0]].sum())
    if pixels == 0:
        raise InputError(f"{items[0][0]}: no pixel predicted by every model in the "
                         f"{len(items)} image(s) (all nodata)")
    m = len(models)
    matrix = np.eye(m)
    class_iou = np.full((k, m, m), np.nan)     # [class, model, model]
    for (i, j), cm in pair_cm.items():         # rows: model j, columns: model i
        matrix[i, j] = matrix[j, i] = np.trace(cm.numpy()) / pixels
        class_iou[:, i, j] = class_iou[:, j, i] = iou_per_class(cm)
        for model, counts in ((i, cm.sum(0)), (j, cm.sum(1))):
            class_iou[:, model, model] = np.where(counts.numpy() > 0, 1.0, np.nan)
    per_class = {c: {"pairwise": [[_num(v) for v in row] for row in class_iou[n]],
                     "mean": _mean([class_iou[n, i, j] for i, j in pairs])}
                 for n, c in enumerate(cls_names)}
    reference = None
    if labels:
        reference = {}
        for name, cm in zip(names, ref_cm):
            rep = summarize(cm, cls_names)
            reference[name] = {"agreement": rep["overall_accuracy"], "miou": rep["miou"],
                               "per_class_iou": rep["per_class_iou"], "pixels": rep["pixels"]}
    return {
        "models": list(names),
        "classes": cls_names,
        "pairwise": [[_num(v) for v in row] for row in matrix],
        "mean_agreement": _mean([matrix[i, j] for i, j in pairs]),
        "per_class": per_class,
        "reference": reference,
        "images": per_image,
        "pixels": pixels,
        "wall_s": round(time.perf_counter() - t0, 2),
    }


def _num(v) -> Optional[float]:
    return None if v is None or not np.isfinite(v) else round(float(v), 6)


def _mean(values) -> Optional[float]:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return _num(float(np.mean(values))) if values else None


def markdown(report: dict) -> str:
    """The pairwise matrix, the mean agreement, per-class agreement and the reference
    comparison as Markdown tables (percentages)."""
    names = [Path(m).name for m in report["models"]]
    lines = ["Pixel agreement (%) of each pair of models", ""]
    lines += table(["", *names], [[n, *map(pct, row)] for n, row in zip(names, report["pairwise"])])
    lines += ["", f"**Mean agreement: {pct(report['mean_agreement'])} %** over "
              f"{len(names) * (len(names) - 1) // 2} pairs, {report['pixels']} pixels", ""]
    lines += table(["class", "agreement IoU (%), mean over pairs"],
                   [[c, pct(v["mean"])] for c, v in report["per_class"].items()])
    if report.get("reference"):
        classes = report["classes"]
        lines += ["", "Against the reference labels (%)", ""]
        rows = []
        for model, n in zip(report["models"], names):
            r = report["reference"][model]
            rows.append([n, pct(r["agreement"]), pct(r["miou"]),
                         *(pct(r["per_class_iou"][c]) for c in classes)])
        lines += table(["model", "agreement", "mIoU", *(f"{c} IoU" for c in classes)], rows)
    return "\n".join(lines)
