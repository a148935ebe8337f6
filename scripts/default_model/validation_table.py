"""Print the default model's validation table from the JSON files that
scripts/train_default_model.sh writes into its work folder (Markdown, IoU in %).

    python scripts/default_model/validation_table.py runs/default-model
"""
import json
import sys
from pathlib import Path

ROWS = [("OMBRIA test", "val_ombria.json"), ("ETCI nebraska", "val_nebraska.json"),
        ("Sen1Floods11 Spain chip", "val_spain.json")]


def main(work: Path) -> None:
    thresholds = json.loads((work / "val_thresholds.json").read_text())
    print("| validation set | model water IoU | model mIoU | per-image Otsu water / mIoU "
          "| set Otsu water / mIoU |")
    print("|---|---:|---:|---:|---:|")
    for name, fname in ROWS:
        m = json.loads((work / fname).read_text())
        t = thresholds[name]
        water = m["per_class_iou"]["water"] if isinstance(m["per_class_iou"], dict) else m["per_class_iou"][1]
        p, s = t["per_image_otsu"], t["set_otsu"]
        print(f"| {name} | {100 * water:.2f} | {100 * m['miou']:.2f} | "
              f"{100 * p['water_iou']:.1f} / {100 * p['miou']:.1f} | "
              f"{100 * s['water_iou']:.1f} / {100 * s['miou']:.1f} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
