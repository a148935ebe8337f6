"""False water on dry ground: the share of pixels called water where the calibrated
validation chips hold no labelled water (the dry-ground row of the model card).

Dry ground of a chip: every pixel covered by at least one ``--crop`` x ``--crop`` window
(default 128) whose pixels are all labelled and none of them water. On those pixels, the
share predicted water by the model (as ``ces evaluate`` predicts: the model's bands and input
contract, one window of the chip's size), by one fixed threshold (VV < −17 dB) and by the
chip's own Otsu threshold (VV dB). Pooled over the chips, and per chip.

Then a dry scene from a new event: Sen1Floods11's Ghana_53713 chip, labelled without any
water: the share of its labelled pixels called water (``ghana_53713`` in the JSON).

    .venv/bin/python benchmarks/dry_ground.py --model models/ces-s1-water.safetensors \\
        [--data ../shared/data] [--json dry.json]
"""
from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage
from threshold_baselines import C2S, EVENTS, FIXED_DB, SPAIN, otsu_threshold  # benchmarks/ (a script)

from crossearth_sar.core.models import checkpoints
from crossearth_sar.core.models.model import input_contract, trained_bands
from crossearth_sar.core.scene import sar_io
from crossearth_sar.train.classes import IGNORE_INDEX, load_classes
from crossearth_sar.train.evaluate import predict_scene
from crossearth_sar.train.file_pairing import RASTER_EXTS, expand_paths, pair_files
from crossearth_sar.train.label_rasters import read_label_raster

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ROOT / "scripts" / "default_model" / "s1f_classes.yaml"
CHIPS = (SPAIN, C2S)   # the calibrated validation chips: (images, labels) under --data
DRY_SCENE = "Ghana_53713"   # a Sen1Floods11 chip without labelled water


def dry_ground(truth: np.ndarray, crop: int) -> np.ndarray:
    """bool [H, W]: pixels inside some crop x crop window that is all labelled dry (truth 0;
    truth 1 water, 255 unlabelled or nodata): the morphological opening of the dry pixels."""
    return ndimage.binary_opening(truth == 0, structure=np.ones((crop, crop), bool))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    model = checkpoints.load(args.model).eval()
    classes = load_classes(CLASSES)
    water_index = [c["name"] for c in model.classes].index("water")
    pairs = pair_files(expand_paths([args.data / i for i, _ in CHIPS], "images", RASTER_EXTS),
                       expand_paths([args.data / lab for _, lab in CHIPS], "labels"))
    rows, totals = [], np.zeros(4, np.int64)   # dry pixels, model, fixed, otsu
    ghana = [(i, lab) for i, lab in pair_files(
        expand_paths([args.data / EVENTS[0]], "images", RASTER_EXTS),
        expand_paths([args.data / EVENTS[1]], "labels")) if i.name.startswith(DRY_SCENE)]
    dry_scene = None
    for k, (img, lab) in enumerate(pairs + ghana):
        whole = k >= len(pairs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with sar_io.open_scene(img, prefer=trained_bands(model.config),
                                   contract=input_contract(model.config)) as scene:
                pred = np.full((scene.height, scene.width), 255, np.uint8)

                def sink(row0, cls, conf, _pred=pred):
                    _pred[row0:row0 + cls.shape[0]] = cls

                predict_scene(model, scene, sink, tile=512, overlap=128, batch=2)
                raw, valid = read_label_raster(lab, scene)
            with sar_io.open_scene(img, bands=[1], contract=2) as vv:
                rep, vvalid = vv.read_representation()
        truth = classes.map_labels(raw, valid & vvalid)
        dry = (truth == 0) if whole else dry_ground(truth, args.crop)
        db = rep[0]
        scored = truth != IGNORE_INDEX
        t_otsu = otsu_threshold(db[scored])
        n = int(dry.sum())
        counts = np.array([n, int((pred[dry] == water_index).sum()), int((db[dry] < FIXED_DB).sum()),
                           int((db[dry] < t_otsu).sum())])
        row = {"image": img.name, "dry_pixels": n,
               **{key: round(float(c) / max(n, 1), 4) for key, c in
                  zip(("model", "fixed_-17dB", "otsu_per_image"), counts[1:])}}
        if whole:
            dry_scene = row
            continue
        totals += counts
        rows.append(row)
    pooled = {"dry_pixels": int(totals[0]),
              **{k: round(float(c) / max(int(totals[0]), 1), 4) for k, c in
                 zip(("model", "fixed_-17dB", "otsu_per_image"), totals[1:])}}
    for r in rows + [{"image": "all chips", **pooled}] + ([dry_scene] if dry_scene else []):
        print(f"{r['image']:<36} dry px {r['dry_pixels']:>7}  water called: model "
              f"{100 * r['model']:.2f} %, VV < -17 dB {100 * r['fixed_-17dB']:.2f} %, "
              f"per-image Otsu {100 * r['otsu_per_image']:.2f} %")
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "crop": args.crop,
                                         "chips": rows, "pooled": pooled,
                                         "ghana_53713": dry_scene}, indent=2))


if __name__ == "__main__":
    main()
