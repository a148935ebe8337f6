"""Threshold baselines for water on the default model's validation sets, on the pixels
``ces evaluate`` scores (valid image pixels with a label that is not ignored).

Baselines per set, all "darker than the threshold is water" on the first band's log
representation as input contract 2 reads it (core/scene/sar_io.py: dB for dB scenes, display
values for quicklooks; VV), so no estimated calibration enters them:

* per-image Otsu: each image's own Otsu threshold;
* one Otsu threshold over the whole set (all its pixels pooled);
* calibrated sets only: one fixed threshold, VV < −17 dB (not fitted to anything).

Prints water IoU, background IoU and mIoU of each; ``--json`` writes them.

    .venv/bin/python benchmarks/threshold_baselines.py [--data ../shared/data] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from crossearth_sar.core.scene import sar_io
from crossearth_sar.train import metrics
from crossearth_sar.train.classes import IGNORE_INDEX, load_classes
from crossearth_sar.train.file_pairing import RASTER_EXTS, expand_paths, pair_files
from crossearth_sar.train.label_rasters import read_label_raster

HERE = Path(__file__).resolve().parents[1] / "scripts" / "default_model"
SPAIN = ("sen1floods11_spain/Spain_7370579_S1Hand.tif", "sen1floods11_spain/Spain_7370579_LabelHand.tif")
C2S = ("c2smsfloods/images", "c2smsfloods/labels")
SETS = {  # name: (images, labels, classes file, calibrated) relative to the data folder
    "OMBRIA test": (["ombria/test/AFTER"], ["ombria/test/MASK"], "ombria_classes.yaml", False),
    "ETCI nebraska": (["etci2021/nebraska/images"], ["etci2021/nebraska/labels"],
                      "etci_classes.yaml", False),
    "Sen1Floods11 Spain chip": ([SPAIN[0]], [SPAIN[1]], "s1f_classes.yaml", True),
    "c2smsfloods (3 chips)": ([C2S[0]], [C2S[1]], "s1f_classes.yaml", True),
    "calibrated chips (Spain + c2smsfloods)": ([SPAIN[0], C2S[0]], [SPAIN[1], C2S[1]],
                                               "s1f_classes.yaml", True),
}
FIXED_DB = -17.0   # dB: calm open water in calibrated VV lies below about -15 to -18 dB


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


def read_set(data: Path, images: list, labels: list, classes_file: str):
    """[(first-band log representation of the scored pixels [n], truth 0/1 [n])] per image."""
    classes = load_classes(HERE / classes_file)
    pairs = pair_files(expand_paths([data / i for i in images], "images", RASTER_EXTS),
                       expand_paths([data / lab for lab in labels], "labels"))
    out = []
    for img, lab in pairs:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with sar_io.open_scene(img, bands=[1], contract=2) as scene:
                rep, valid = scene.read_representation()
                lab_raw, lab_valid = read_label_raster(lab, scene)
        truth = classes.map_labels(lab_raw, lab_valid & valid)
        keep = truth != IGNORE_INDEX
        out.append((rep[0][keep], (truth[keep] == 1).astype(np.int64)))
    return out


def scores(parts, threshold_of) -> dict:
    cm = np.zeros((2, 2), np.int64)
    for values, truth in parts:
        if values.size == 0:
            continue
        pred = (values < threshold_of(values)).astype(np.int64)
        cm += metrics.confusion_matrix(torch.from_numpy(pred), torch.from_numpy(truth), 2).numpy()
    iou = metrics.iou_per_class(cm)
    return {"water_iou": round(float(iou[1]), 4), "background_iou": round(float(iou[0]), 4),
            "miou": round(float(iou.mean()), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    report = {}
    for name, (images, labels, classes_file, calibrated) in SETS.items():
        parts = read_set(args.data, images, labels, classes_file)
        pooled = otsu_threshold(np.concatenate([v for v, _ in parts]))
        report[name] = {"per_image_otsu": scores(parts, otsu_threshold),
                        "set_otsu": {**scores(parts, lambda v: pooled), "threshold": round(pooled, 3)},
                        "images": len(parts)}
        kinds = ["per_image_otsu", "set_otsu"]
        if calibrated:
            report[name]["fixed_db"] = {**scores(parts, lambda v: FIXED_DB), "threshold": FIXED_DB}
            kinds.append("fixed_db")
        for kind in kinds:
            r = report[name][kind]
            print(f"{name} ({len(parts)} images), {kind.replace('_', ' ')}: water IoU "
                  f"{r['water_iou']:.3f}, background IoU {r['background_iou']:.3f}, mIoU {r['miou']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
