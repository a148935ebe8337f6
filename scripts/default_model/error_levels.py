"""Where a model's water errors lie in VV backscatter: for each calibrated chip the labelled
water it finds, the labelled water it misses and the water it invents, with their median
VV (dB), and what the pooled mIoU of all chips would be if its errors on the chips whose
labels VV can show (all but LABEL_DEFINITION) were cut by a quarter, a half, three quarters
or entirely. Says whether a gap to a target is radiometry the model can see or labels
drawn where VV shows land.

Class maps come from ``ces evaluate``'s own prediction (512-pixel windows overlapping by
128); labels: 1 water, 0 not water, other values ignored; pixels: finite VV and a valid
class. Prints Markdown.

    python scripts/default_model/error_levels.py --model models/ces-s1-water.safetensors
        [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from validate import CALIBRATED  # noqa: E402
from validation_table import LABEL_DEFINITION  # noqa: E402

#: the error cuts of the what-if column (share of the errors on the SAR-visible chips removed)
CUTS = (0.25, 0.5, 0.75, 1.0)
#: VV (dB) below which a missed water pixel counts as dark: open water darker than this is
#: what a radar sees as water; brighter labelled water lies where land lies too
DARK_DB = -15.0


def chip_pairs(data: Path) -> list[tuple[Path, Path]]:
    """(image, label) of the 15 calibrated chips under ``data``, paired by name."""
    pairs = []
    for images, labels in zip(*CALIBRATED):
        image, label = data / images, data / labels
        if image.is_file():
            pairs.append((image, label))
            continue
        for f in sorted(image.glob("*.tif")):
            pairs.append((f, label / f.name.replace("S1Hand", "LabelHand")))
    return pairs


def class_map(net, image: Path) -> np.ndarray:
    """Classes uint8 [H, W] (255 nodata) of ``image``: ``ces evaluate``'s own prediction
    (train/evaluate.py, 512-pixel windows overlapping by 128) on the scene read as
    ``ces segment`` reads it."""
    import torch

    from crossearth_sar.core.models.model import trained_bands
    from crossearth_sar.core.scene import sar_io
    from crossearth_sar.train.evaluate import predict_classes

    with sar_io.open_scene(image, prefer=trained_bands(net.config)) as scene, torch.inference_mode():
        return predict_classes(net, scene, (scene.height, scene.width))


def chip_errors(vv: np.ndarray, label: np.ndarray, classes: np.ndarray) -> dict:
    """Pixel counts and median VV (dB) of found, missed and invented water, and the 2 x 2
    confusion matrix [label, prediction] of one chip (vv, label, classes [H, W]);
    ``missed_dark``: missed water darker than DARK_DB."""
    ok = np.isfinite(vv) & ((label == 0) | (label == 1)) & (classes <= 1)
    truth, said = label[ok] == 1, classes[ok] == 1
    values = vv[ok]
    parts = {"found": truth & said, "missed": truth & ~said, "invented": ~truth & said}
    out = {k: (int(m.sum()), float(np.median(values[m])) if m.any() else float("nan"))
           for k, m in parts.items()}
    out["missed_dark"] = int((values[parts["missed"]] < DARK_DB).sum())
    out["confusion"] = np.array([[int((~truth & ~said).sum()), out["invented"][0]],
                                 [out["missed"][0], out["found"][0]]], np.int64)
    return out


def pooled_miou(cm: np.ndarray) -> float:
    """Mean IoU of a 2 x 2 confusion matrix [label, prediction] (classes without pixels
    left out)."""
    tp = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - tp
    return float(np.nanmean(np.where(union > 0, tp / np.maximum(union, 1), np.nan)))


def with_errors_cut(cm: np.ndarray, share: float) -> np.ndarray:
    """``cm`` with ``share`` of its missed and invented water moved onto the diagonal."""
    cut = cm.astype(float).copy()
    for wrong, right in (((1, 0), (1, 1)), ((0, 1), (0, 0))):
        moved = cut[wrong] * share
        cut[wrong] -= moved
        cut[right] += moved
    return cut


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "ces-s1-water.safetensors")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    args = ap.parse_args(argv)

    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    from crossearth_sar.core.models import checkpoints

    warnings.simplefilter("ignore", NotGeoreferencedWarning)   # c2smsfloods carry no grid
    net = checkpoints.load(args.model, map_location="cpu").eval()
    pairs = chip_pairs(args.data)
    if not pairs:
        print(f"error_levels: error: no calibrated chips under {args.data}", file=sys.stderr)
        return 2
    print(f"# {args.model.name}: water found, missed and invented on {len(pairs)} calibrated "
          f"chips (pixels, median VV dB)\n")
    print("| chip | found | missed | invented |\n|---|---:|---:|---:|")
    visible, hidden = np.zeros((2, 2)), np.zeros((2, 2))
    missed, missed_dark = 0, 0
    for image, label in pairs:
        with rasterio.open(image) as src, rasterio.open(label) as lab:
            vv, truth = src.read(1).astype(np.float32), lab.read(1)
        errors = chip_errors(vv, truth, class_map(net, image))
        stem = image.stem.replace("_S1Hand", "")
        cells = " | ".join(f"{n:,} ({m:.1f})" if n else "0" for n, m in
                           (errors[k] for k in ("found", "missed", "invented")))
        tag = " (label definition)" if stem in LABEL_DEFINITION else ""
        print(f"| {stem}{tag} | {cells} |")
        if stem in LABEL_DEFINITION:
            hidden += errors["confusion"]
        else:
            visible += errors["confusion"]
            missed, missed_dark = missed + errors["missed"][0], missed_dark + errors["missed_dark"]
    print(f"\nmissed water on the chips VV can show: {missed:,} pixels, "
          f"{missed_dark / max(missed, 1):.0%} of them darker than {DARK_DB:g} dB")
    print(f"pooled mIoU of all {len(pairs)} chips: {pooled_miou(visible + hidden):.1%}")
    for share in CUTS:
        print(f"- with {share:.0%} of the errors on the chips VV can show removed: "
              f"{pooled_miou(with_errors_cut(visible, share) + hidden):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
