"""Threshold baselines for water on the default model's validation sets, on the pixels
``ces evaluate`` scores (valid image pixels with a label that is not ignored).

Baselines per set, all "darker than the threshold is water" on the first band's log
representation as input contract 2 reads it (core/scene/sar_io.py: dB for dB scenes, display
values for quicklooks; VV), so no estimated calibration enters them:

* per-image Otsu: each image's own Otsu threshold;
* one Otsu threshold over the whole set (all its pixels pooled);
* calibrated sets only: one fixed threshold, VV < −17 dB (not fitted to anything).

Scored as ``ces evaluate`` scores a model: water IoU, background IoU, mIoU, the boundary
F-score at 2 px (train/boundary_metrics.py), pooled and per image. ``--multilook 2`` reads
the calibrated sets 2 x 2-multilooked in power (core/scene/multilook.py; 10 m chips as 20 m)
and brings the thresholded map back to the labels' grid, as ``ces evaluate --multilook 2``.

    .venv/bin/python benchmarks/threshold_baselines.py [--data ../shared/data] [--multilook 2]
        [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from crossearth_sar.core.scene import sar_io
from crossearth_sar.core.scene.multilook import multilook_array
from crossearth_sar.train import metrics
from crossearth_sar.train.boundary_metrics import boundary_counts, boundary_f
from crossearth_sar.train.classes import IGNORE_INDEX, load_classes
from crossearth_sar.train.file_pairing import RASTER_EXTS, expand_paths, pair_files
from crossearth_sar.train.label_rasters import read_label_raster

HERE = Path(__file__).resolve().parents[1] / "scripts" / "default_model"
SPAIN = ("sen1floods11_spain/Spain_7370579_S1Hand.tif", "sen1floods11_spain/Spain_7370579_LabelHand.tif")
C2S = ("c2smsfloods/images", "c2smsfloods/labels")
EVENTS = ("sen1floods11_events/images", "sen1floods11_events/labels")
#: the 15 calibrated chips from 13 events (validation only): 11 Sen1Floods11 events, the Spain
#: demo chip, 3 C2S-MS Floods chips
CALIBRATED = ([EVENTS[0], SPAIN[0], C2S[0]], [EVENTS[1], SPAIN[1], C2S[1]])
#: chips whose labels hold water that VV does not show as dark (drawn on optical imagery;
#: ../shared/data/README.md): reported apart, never tuned towards
LABEL_DEFINITION = ("Pakistan_849790", "Sri-Lanka_534068")
SETS = {  # name: (images, labels, classes file, calibrated) relative to the data folder
    "OMBRIA test": (["ombria/test/AFTER"], ["ombria/test/MASK"], "ombria_classes.yaml", False),
    "Sen1Floods11 events (11 chips)": ([EVENTS[0]], [EVENTS[1]], "s1f_classes.yaml", True),
    "Sen1Floods11 Spain chip": ([SPAIN[0]], [SPAIN[1]], "s1f_classes.yaml", True),
    "c2smsfloods (3 chips)": ([C2S[0]], [C2S[1]], "s1f_classes.yaml", True),
    "calibrated chips (15)": (*CALIBRATED, "s1f_classes.yaml", True),
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


def read_set(data: Path, images: list, labels: list, classes_file: str, multilook: int = 1):
    """[(name, first-band log representation [H, W] (NaN where not valid), truth [H, W]
    (0 / 1, 255 not scored))] per image; with ``multilook`` f > 1 the representation is
    multilooked in power and repeated back onto the labels' grid (calibrated dB only)."""
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
        band = rep[0].astype(np.float64)
        if multilook > 1:
            f = multilook
            coarse = multilook_array(band[None], valid[None], f, "db")[0]
            band = np.repeat(np.repeat(coarse, f, 0), f, 1)[:valid.shape[0], :valid.shape[1]]
            valid = np.isfinite(band)
        band = np.where(valid, band, np.nan)
        truth = classes.map_labels(lab_raw, lab_valid & valid).astype(np.int64)
        out.append((img.stem.replace("_S1Hand", ""), band, truth))
    return out


def scores(parts, threshold_of) -> dict:
    """Pooled and per-image figures of "value < threshold_of(scored values) is water"."""
    cm = np.zeros((2, 2), np.int64)
    edges = np.zeros(4, np.int64)
    per_image = {}
    for name, band, truth in parts:
        keep = truth != IGNORE_INDEX
        if not keep.any():
            continue
        pred = (np.nan_to_num(band, nan=np.inf) < threshold_of(band[keep])).astype(np.int64)
        c = metrics.confusion_matrix(torch.from_numpy(pred), torch.from_numpy(truth), 2).numpy()
        e = boundary_counts(pred, truth, keep)
        cm += c
        edges += e
        per_image[name] = {"miou": round(metrics.mean_iou(c), 4), "boundary_f": boundary_f(e)["f_score"],
                           "confusion_matrix": c.tolist()}
    iou = metrics.iou_per_class(cm)
    return {"water_iou": round(float(iou[1]), 4), "background_iou": round(float(iou[0]), 4),
            "miou": round(float(np.nanmean(iou)), 4), "boundary_f": boundary_f(edges)["f_score"],
            "per_image": per_image}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--multilook", type=int, default=1, help="multilook the calibrated sets NxN")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    report = {}
    for name, (images, labels, classes_file, calibrated) in SETS.items():
        if args.multilook > 1 and not calibrated:
            continue
        parts = read_set(args.data, images, labels, classes_file, args.multilook)
        values = np.concatenate([b[t != IGNORE_INDEX] for _, b, t in parts])
        pooled = otsu_threshold(values)
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
                  f"{r['water_iou']:.3f}, background IoU {r['background_iou']:.3f}, mIoU "
                  f"{r['miou']:.3f}, boundary F {r['boundary_f']:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"multilook": args.multilook, **report}, indent=2))


if __name__ == "__main__":
    main()
