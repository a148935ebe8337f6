"""Print the default model's validation table from the JSON files that
scripts/default_model/validate.py writes into its work folder (Markdown, IoU in %).

    python scripts/default_model/validation_table.py runs/default-model
"""
import json
import sys
from pathlib import Path

ROWS = [("OMBRIA test", "val_ombria.json", "OMBRIA test (70 tiles, 8-bit VV)"),
        ("ETCI nebraska", "val_nebraska.json", "ETCI 2021 nebraska (151 tiles, 8-bit VV + VH)"),
        ("Sen1Floods11 Spain chip", "val_spain.json", "Sen1Floods11 Spain chip (dB VV + VH)"),
        ("c2smsfloods (3 chips)", "val_c2s.json", "c2smsfloods (3 chips, dB VV + VH)"),
        ("calibrated chips (Spain + c2smsfloods)", "val_calibrated.json",
         "**calibrated chips (Spain + c2smsfloods)**")]


def _pair(r: dict) -> str:
    return f"{100 * r['water_iou']:.1f} / {100 * r['miou']:.1f}"


def main(work: Path) -> None:
    thresholds = json.loads((work / "val_thresholds.json").read_text())
    print("| validation set | model water IoU | model mIoU | per-image Otsu water / mIoU "
          "| set Otsu water / mIoU | VV < −17 dB water / mIoU |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, fname, label in ROWS:
        path = work / fname
        if not path.is_file():
            continue
        m = json.loads(path.read_text())
        t = thresholds[name]
        iou = m["per_class_iou"]
        water = iou["water"] if isinstance(iou, dict) else iou[1]
        fixed = _pair(t["fixed_db"]) if "fixed_db" in t else "–"
        print(f"| {label} | {100 * water:.2f} | {100 * m['miou']:.2f} | "
              f"{_pair(t['per_image_otsu'])} | {_pair(t['set_otsu'])} "
              f"(at {t['set_otsu'].get('threshold', float('nan')):.1f}) | {fixed} |")
    dry = work / "val_dry.json"
    if dry.is_file():
        d = json.loads(dry.read_text())["pooled"]
        print(f"\nFalse water on dry ground of the calibrated chips ({d['dry_pixels']:,} pixels in "
              f"crops of at least 128 x 128 without labelled water): model "
              f"{100 * d['model']:.2f} %, VV < −17 dB {100 * d['fixed_-17dB']:.2f} %, per-image "
              f"Otsu {100 * d['otsu_per_image']:.2f} %.")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
