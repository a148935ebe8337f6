"""Otsu thresholding baselines for water, the reference the embedded model must beat.

Prints water IoU, background IoU and mIoU of per-tile Otsu thresholding on OMBRIA test
(AFTER tiles) and of Otsu on the VV band of the Sen1Floods11 chip. Needs ../shared/data.

    .venv/bin/python benchmarks/otsu_baseline.py [--data ../shared/data]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import rasterio
import torch

from crossearth_sar.train import metrics


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1-D array: maximizes the between-class variance."""
    hist, edges = np.histogram(values, bins=bins)
    centers = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centers)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(centers[int(np.argmax(between))])


def confusion(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """[2, 2] counts (rows: truth, cols: prediction); truth 255 is ignored."""
    return metrics.confusion_matrix(torch.from_numpy(pred), torch.from_numpy(truth), 2).numpy()


def ombria(data: Path) -> np.ndarray:
    cm = np.zeros((2, 2), np.int64)
    for img_path in sorted((data / "ombria" / "test" / "AFTER").glob("*.png")):
        mask_path = data / "ombria" / "test" / "MASK" / img_path.name.replace("after", "mask")
        with rasterio.open(img_path) as s, rasterio.open(mask_path) as m:
            img, truth = s.read(1).astype(float), (m.read(1) > 127).astype(np.int64)
        pred = (img < otsu_threshold(img.ravel())).astype(np.int64)
        cm += confusion(pred, truth)
    return cm


def sen1floods11(data: Path) -> np.ndarray:
    folder = data / "sen1floods11_spain"
    with rasterio.open(folder / "Spain_7370579_S1Hand.tif") as s, \
            rasterio.open(folder / "Spain_7370579_LabelHand.tif") as m:
        vv, label = s.read(1), m.read(1).astype(np.int64)
    valid = np.isfinite(vv) & (label >= 0)
    t = otsu_threshold(vv[valid])
    pred = (vv < t).astype(np.int64)
    truth = np.where(valid, label, 255)
    return confusion(pred, truth)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = ap.parse_args()
    for name, cm in (("OMBRIA test (70 AFTER tiles)", ombria(args.data)),
                     ("Sen1Floods11 Spain_7370579 (VV)", sen1floods11(args.data))):
        iou = metrics.iou_per_class(cm)
        print(f"Otsu on {name}: water IoU {iou[1]:.3f}, background IoU {iou[0]:.3f}, "
              f"mIoU {iou.mean():.3f}")


if __name__ == "__main__":
    main()
