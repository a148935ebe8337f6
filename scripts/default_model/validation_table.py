"""Print the default model's validation tables from the JSON files that
scripts/default_model/validate.py writes into its work folder (Markdown, IoU and F in %).

    python scripts/default_model/validation_table.py runs/default-model
"""
import json
import sys
from pathlib import Path

import numpy as np

CAL = "calibrated chips (15)"
#: labels drawn on optical imagery that VV does not show as water (../shared/data/README.md)
LABEL_DEFINITION = ("Pakistan_849790", "Sri-Lanka_534068")


def _load(work: Path, name: str):
    path = work / name
    return json.loads(path.read_text()) if path.is_file() else None


def _stem(image: str) -> str:
    return Path(image).stem.replace("_S1Hand", "")


def _pooled_miou(per_image: dict, keep) -> float:
    cm = sum(np.asarray(v["confusion_matrix"]) for k, v in per_image.items() if keep(k))
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    return float(np.nanmean(np.where(union > 0, tp / np.maximum(union, 1), np.nan)))


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def summary_table(work: Path) -> None:
    print("| 15 calibrated chips, VV | model mIoU | model water IoU | model boundary F (2 px) "
          "| set Otsu mIoU / F | VV < −17 dB mIoU / F | per-image Otsu mIoU / F |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, model_file, thr_file, keep in (
            ("at 10 m", "val_calibrated.json", "val_thresholds.json", None),
            ("at 20 m (2 x 2 multilook in power)", "val_calibrated_20m.json", "val_thresholds_20m.json", None),
            ("at 10 m, without Pakistan and Sri Lanka", "val_calibrated.json", "val_thresholds.json",
             lambda k: k not in LABEL_DEFINITION)):
        m, t = _load(work, model_file), _load(work, thr_file)
        if m is None or t is None:
            continue
        t = t[CAL]
        if keep is None:
            cells = [m["miou"], m["per_class_iou"]["water"], m["boundary"]["f_score"]]
            base = [f"{_pct(t[k]['miou'])} / {_pct(t[k]['boundary_f'])}" for k in ("set_otsu", "fixed_db", "per_image_otsu")]
        else:
            per = {_stem(r["image"]): r for r in m["per_image"]}
            cells = [_pooled_miou(per, keep), None, None]
            base = [_pct(_pooled_miou(t[k]["per_image"], keep)) for k in ("set_otsu", "fixed_db", "per_image_otsu")]
        print(f"| {label} | {' | '.join(_pct(c) for c in cells)} | {' | '.join(base)} |")


def chip_table(work: Path) -> None:
    m, m20, t = (_load(work, n) for n in ("val_calibrated.json", "val_calibrated_20m.json", "val_thresholds.json"))
    if m is None or t is None:
        return
    per20 = {_stem(r["image"]): r for r in (m20 or {}).get("per_image", [])}
    otsu = t[CAL]["set_otsu"]["per_image"]
    print("\n| chip (event) | model mIoU 10 m | model mIoU 20 m | set Otsu mIoU | model boundary F | set Otsu boundary F |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in m["per_image"]:
        k = _stem(r["image"])
        note = " (label definition)" if k in LABEL_DEFINITION else ""
        o = otsu.get(k, {})
        print(f"| {k}{note} | {_pct(r['miou'])} | {_pct(per20.get(k, {}).get('miou'))} | "
              f"{_pct(o.get('miou'))} | {_pct(r['boundary_f'])} | {_pct(o.get('boundary_f'))} |")


def other_rows(work: Path) -> None:
    om, t = _load(work, "val_ombria.json"), _load(work, "val_thresholds.json")
    if om is not None and t is not None:
        o = t["OMBRIA test"]
        print(f"\nOMBRIA test (70 tiles, 8-bit VV): model mIoU {_pct(om['miou'])} (water IoU "
              f"{_pct(om['per_class_iou']['water'])}, boundary F {_pct(om['boundary']['f_score'])}); "
              f"per-image Otsu {_pct(o['per_image_otsu']['miou'])}, set Otsu {_pct(o['set_otsu']['miou'])}.")
    dry = _load(work, "val_dry.json")
    if dry is not None:
        d, g = dry["pooled"], dry.get("ghana_53713")
        print(f"\nFalse water on dry ground of the four older calibrated chips ({d['dry_pixels']:,} pixels "
              f"in crops of at least 128 x 128 without labelled water): model {100 * d['model']:.2f} %, "
              f"VV < −17 dB {100 * d['fixed_-17dB']:.2f} %, per-image Otsu {100 * d['otsu_per_image']:.2f} %.")
        if g:
            print(f"On Ghana_53713, a chip labelled without water ({g['dry_pixels']:,} pixels): model "
                  f"{100 * g['model']:.2f} %, VV < −17 dB {100 * g['fixed_-17dB']:.2f} %, per-image Otsu "
                  f"{100 * g['otsu_per_image']:.2f} %.")


def main(work: Path) -> None:
    summary_table(work)
    chip_table(work)
    other_rows(work)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
