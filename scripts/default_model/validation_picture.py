"""The model card's picture: scene (VV), hand label and the model's water, side by side.

With ``--scores`` (the ``ces evaluate`` JSON of the 15 calibrated chips): the Spain demo chip
and the four chips where model and label disagree most (lowest mIoU). Without: the Spain chip
and the two c2smsfloods chips with the least labelled water and with the water fraction
nearest one half. Predictions come from ``ces segment``'s own path
(core.inference.pipeline.segment_scene), so the picture shows what a user gets.

    .venv/bin/python scripts/default_model/validation_picture.py MODEL OUT.png [--data ../shared/data]
        [--scores val_calibrated.json]
"""
from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from crossearth_sar.core.inference.pipeline import segment_scene
from crossearth_sar.core.models import checkpoints
from crossearth_sar.core.models.model import input_contract, trained_bands
from crossearth_sar.core.scene import sar_io

WATER, LAND, NODATA = (0.12, 0.47, 0.71), (0.85, 0.85, 0.85), (1.0, 1.0, 1.0)


def worst_chips(data: Path, scores: Path, n: int = 4) -> list[tuple[Path, Path, str]]:
    """The ``n`` chips of a ``ces evaluate`` JSON with the lowest mIoU: (image, label, title)."""
    import json

    per = sorted(json.loads(scores.read_text())["per_image"], key=lambda r: r["miou"] or 0.0)
    out = []
    for r in per:
        for folder, labels, suffix in (("sen1floods11_events/images", "sen1floods11_events/labels", "LabelHand"),
                                       ("c2smsfloods/images", "c2smsfloods/labels", None),
                                       ("sen1floods11_spain", "sen1floods11_spain", "LabelHand")):
            img = data / folder / r["image"]
            if img.is_file() and "Spain_7370579" not in r["image"]:
                name = r["image"].replace("S1Hand", suffix) if suffix else r["image"]
                out.append((img, data / labels / name, f"{img.stem} (mIoU {100 * r['miou']:.1f})"))
                break
        if len(out) == n:
            break
    return out


def c2s_chips(data: Path) -> list[tuple[Path, Path]]:
    """The c2smsfloods chips with the least labelled water and nearest one half."""
    scored = []
    for lab in sorted((data / "c2smsfloods" / "labels").glob("*.tif")):
        with rasterio.open(lab) as src:
            frac = float((src.read(1) == 1).mean())
        scored.append((frac, lab))
    least = min(scored)[1]
    half = min(scored, key=lambda t: abs(t[0] - 0.5))[1]
    return [(data / "c2smsfloods" / "images" / lab.name, lab) for lab in (least, half)]


def colour(mask_water: np.ndarray, valid: np.ndarray) -> np.ndarray:
    rgb = np.empty(mask_water.shape + (3,), np.float32)
    rgb[:] = LAND
    rgb[mask_water] = WATER
    rgb[~valid] = NODATA
    return rgb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data")
    ap.add_argument("--scores", type=Path, default=None, help="ces evaluate JSON of the 15 chips")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spain = (args.data / "sen1floods11_spain" / "Spain_7370579_S1Hand.tif",
             args.data / "sen1floods11_spain" / "Spain_7370579_LabelHand.tif", "Spain chip (dB)")
    if args.scores is not None:
        rows = [spain] + worst_chips(args.data, args.scores)
    else:
        rows = [spain] + [(i, lab, f"c2smsfloods {i.stem} (dB)") for i, lab in c2s_chips(args.data)]
    config = checkpoints.read_config(args.model)
    bands, contract = trained_bands(config), input_contract(config)
    fig, axes = plt.subplots(len(rows), 3, figsize=(7.5, 2.6 * len(rows)), dpi=72)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for r, (img, lab, title) in enumerate(rows):
            pred_path = Path(tmp) / f"p{r}.tif"
            segment_scene(img, args.model, Path(tmp) / f"p{r}.gpkg", raster=pred_path,
                          tile=512, overlap=64, device="cpu")
            with sar_io.open_scene(img, prefer=bands, contract=contract) as s:
                w = s.read_window(Window(0, 0, s.width, s.height))
            with rasterio.open(lab) as src:
                truth = src.read(1)
            with rasterio.open(pred_path) as src:
                pred = src.read(1)
            lab_valid = (truth >= 0) & (truth != 255) & w.valid
            water_truth = (truth == 1) | (truth == 2)
            both = lab_valid & (pred != 255)
            inter = (both & water_truth & (pred == 1)).sum()
            union = (both & (water_truth | (pred == 1))).sum()
            panels = [(w.x[0], "scene (VV, as the model sees it)", "gray"),
                      (colour(water_truth, lab_valid), "hand label", None),
                      (colour(pred == 1, pred != 255), f"model (water IoU {inter / max(union, 1):.2f})", None)]
            for c, (im, name, cmap) in enumerate(panels):
                ax = axes[r, c]
                ax.imshow(im, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
                ax.set_title(name if c else f"{title}\n{name}", fontsize=8)
                ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(args.out, dpi=72)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
