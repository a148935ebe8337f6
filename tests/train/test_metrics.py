"""Segmentation metrics (train/metrics.py) against counts worked out by hand and by numpy:
confusion matrix (rows ground truth, ignored pixels left out), IoU, mIoU over the classes that
occur, overall accuracy, the JSON report and its Markdown tables."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from crossearth_sar.train import metrics
from crossearth_sar.train.classes import IGNORE_INDEX

# 3 classes; one ignored pixel. (target, prediction) pairs, row by row:
# (0,0) (0,1) (1,1) (1,1) | (0,0) (2,2) (1,0) (255,2) | (2,2) (2,0) (1,1) (0,0)
TARGET = np.array([[0, 0, 1, 1],
                   [0, 2, 1, IGNORE_INDEX],
                   [2, 2, 1, 0]])
PRED = np.array([[0, 1, 1, 1],
                 [0, 2, 0, 2],
                 [2, 0, 1, 0]])
# class 0: TP 3, FN 1 (predicted 1), FP 2 (a 1 and a 2 predicted 0) -> IoU 3/6
# class 1: TP 3, FN 1, FP 1 -> IoU 3/5;  class 2: TP 2, FN 1, FP 0 -> IoU 2/3
CM = [[3, 1, 0],
      [1, 3, 0],
      [1, 0, 2]]
IOU = [3 / 6, 3 / 5, 2 / 3]


def _cm(pred=PRED, target=TARGET, k=3) -> torch.Tensor:
    return metrics.confusion_matrix(torch.from_numpy(np.asarray(pred)), torch.from_numpy(np.asarray(target)), k)


def test_confusion_matrix_of_a_known_pair():
    cm = _cm()
    assert cm.dtype == torch.int64 and cm.shape == (3, 3)
    assert cm.tolist() == CM
    assert int(cm.sum()) == 11                       # 12 pixels, one ignored


def test_confusion_matrix_leaves_out_targets_outside_the_classes():
    """The ignore index, negative values and values >= K in the target are not counted; a
    prediction >= K counts as the last class."""
    target = np.array([0, 1, IGNORE_INDEX, -1, 3, 1])
    pred = np.array([0, 1, 0, 0, 0, 7])
    assert _cm(pred, target, 2).tolist() == [[1, 0], [0, 2]]


def test_iou_miou_and_accuracy_of_a_known_pair():
    cm = _cm()
    np.testing.assert_allclose(metrics.iou_per_class(cm), IOU)
    np.testing.assert_allclose(metrics.iou_per_class(cm.numpy()), IOU)   # numpy in, same result
    assert metrics.mean_iou(cm) == pytest.approx(sum(IOU) / 3)
    assert metrics.overall_accuracy(cm) == pytest.approx(8 / 11)


def test_a_class_never_seen_nor_predicted_is_nan_and_left_out_of_the_mean():
    cm = _cm(k=4)                                     # class 3 occurs nowhere
    iou = metrics.iou_per_class(cm)
    np.testing.assert_allclose(iou[:3], IOU)
    assert math.isnan(iou[3])
    assert metrics.mean_iou(cm) == pytest.approx(sum(IOU) / 3)
    # predicted but never in the ground truth: IoU 0, and it counts in the mean
    cm = _cm(pred=np.array([0, 1, 1]), target=np.array([0, 0, 0]), k=2)
    np.testing.assert_allclose(metrics.iou_per_class(cm), [1 / 3, 0.0])
    assert metrics.mean_iou(cm) == pytest.approx((1 / 3 + 0.0) / 2)


def test_an_empty_confusion_matrix_gives_nan():
    cm = np.zeros((2, 2), np.int64)
    assert np.isnan(metrics.iou_per_class(cm)).all()
    assert math.isnan(metrics.mean_iou(cm)) and math.isnan(metrics.overall_accuracy(cm))
    rep = metrics.summarize(cm, ["a", "b"])
    assert rep["miou"] is None and rep["overall_accuracy"] is None
    assert rep["per_class_iou"] == {"a": None, "b": None} and rep["pixels"] == 0


def test_metrics_agree_with_numpy_on_random_labels():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 4, 2000)
    pred = np.where(rng.random(2000) < 0.7, target, rng.integers(0, 4, 2000))
    target[:150] = IGNORE_INDEX
    keep = target != IGNORE_INDEX
    expected = np.zeros((4, 4), np.int64)
    np.add.at(expected, (target[keep], pred[keep]), 1)
    cm = _cm(pred, target, 4)
    np.testing.assert_array_equal(cm.numpy(), expected)
    for c in range(4):
        tp = np.sum((pred == c) & (target == c) & keep)
        union = np.sum(((pred == c) | (target == c)) & keep)
        assert metrics.iou_per_class(cm)[c] == pytest.approx(tp / union)
    assert metrics.overall_accuracy(cm) == pytest.approx(np.mean(pred[keep] == target[keep]))


def test_summarize_and_markdown_of_a_known_pair():
    rep = metrics.summarize(_cm(), ["land", "water", "urban"])
    assert rep == {
        "miou": round(sum(IOU) / 3, 6),
        "per_class_iou": {"land": 0.5, "water": 0.6, "urban": round(2 / 3, 6)},
        "overall_accuracy": round(8 / 11, 6),
        "confusion_matrix": CM,
        "classes": ["land", "water", "urban"],
        "pixels": 11,
    }
    lines = metrics.markdown(rep).splitlines()
    assert lines[:7] == ["| class | IoU (%) |", "|---|---:|", "| land | 50.00 |", "| water | 60.00 |",
                         "| urban | 66.67 |", "| **mIoU** | **58.89** |", "| **OA** | **72.73** |"]
    assert lines[-5:] == ["| | land | water | urban |", "|---|---:|---:|---:|", "| land | 3 | 1 | 0 |",
                          "| water | 1 | 3 | 0 |", "| urban | 1 | 0 | 2 |"]
    assert metrics.markdown(metrics.summarize(np.zeros((1, 1), np.int64), ["a"])).splitlines()[2] == "| a | n/a |"
