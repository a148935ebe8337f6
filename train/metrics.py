"""Segmentation metrics: confusion matrix, per-class IoU, mIoU, overall accuracy (paper §5).

Confusion matrix rows are the ground truth, columns the prediction; pixels whose target is
the ignore index (255) are not counted. A class absent from both ground truth and prediction
has IoU NaN and is left out of the mean (the mmsegmentation convention).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .classes import IGNORE_INDEX
from .markdown import pct, table


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Counts [K, K] int64 (rows: target, cols: prediction) of ``pred``/``target`` [...] ints."""
    pred = pred.reshape(-1).long()
    target = target.reshape(-1).long()
    keep = (target != ignore_index) & (target >= 0) & (target < num_classes)
    idx = target[keep] * num_classes + pred[keep].clamp(0, num_classes - 1)
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(cm: np.ndarray | torch.Tensor) -> np.ndarray:
    """IoU [K] = TP / (TP + FP + FN); NaN where the class never occurs nor is predicted."""
    cm = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def mean_iou(cm) -> float:
    """Mean IoU over the classes that occur (NaN if none)."""
    iou = iou_per_class(cm)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def overall_accuracy(cm) -> float:
    """Correct pixels over all pixels of a confusion matrix [K, K]; NaN when empty."""
    cm = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm, dtype=np.float64)
    total = cm.sum()
    return float(np.trace(cm) / total) if total > 0 else float("nan")


def summarize(cm, names: Sequence[str]) -> dict:
    """The JSON report: miou, per_class_iou {name: value|None}, overall_accuracy,
    confusion_matrix (list of lists, rows ground truth), classes, pixels."""
    cm_np = np.asarray(cm.cpu() if isinstance(cm, torch.Tensor) else cm, dtype=np.int64)
    iou = iou_per_class(cm_np)
    return {
        "miou": _num(mean_iou(cm_np)),
        "per_class_iou": {n: _num(v) for n, v in zip(names, iou)},
        "overall_accuracy": _num(overall_accuracy(cm_np)),
        "confusion_matrix": cm_np.tolist(),
        "classes": list(names),
        "pixels": int(cm_np.sum()),
    }


def _num(v: float):
    return None if not np.isfinite(v) else round(float(v), 6)


def markdown(report: dict) -> str:
    """Per-class IoU, mIoU, OA and the confusion matrix as Markdown tables."""
    names = report["classes"]
    lines = table(["class", "IoU (%)"],
                  [[n, pct(report["per_class_iou"][n])] for n in names]
                  + [["**mIoU**", f"**{pct(report['miou'])}**"],
                     ["**OA**", f"**{pct(report['overall_accuracy'])}**"]]
                  + ([[f"**boundary F ({report['boundary']['tolerance_px']:g} px)**",
                       f"**{pct(report['boundary']['f_score'])}**"]] if report.get("boundary") else []))
    lines += ["", "Confusion matrix (rows: ground truth, columns: prediction, pixels)", ""]
    lines += table(["", *names], [[n, *row] for n, row in zip(names, report["confusion_matrix"])])
    return "\n".join(lines)
