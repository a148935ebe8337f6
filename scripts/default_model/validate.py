"""The default model's validation, as a user would run it: ``ces evaluate`` on each labelled
set (the 15 calibrated chips at 10 m and, ``--multilook 2``, at 20 m), the threshold baselines
on the same pixels (benchmarks/threshold_baselines.py, at 10 and 20 m), false water on dry
ground (benchmarks/dry_ground.py), then the model card's tables (validation_table.py) and
picture (validation_picture.py). JSON files and the picture go to --work.

    python scripts/default_model/validate.py --model M.safetensors [--data ../shared/data]
        [--work runs/default-model] [--ces .venv/bin/ces]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SPAIN = ("sen1floods11_spain/Spain_7370579_S1Hand.tif", "sen1floods11_spain/Spain_7370579_LabelHand.tif")
C2S = ("c2smsfloods/images", "c2smsfloods/labels")
EVENTS = ("sen1floods11_events/images", "sen1floods11_events/labels")
CALIBRATED = ([EVENTS[0], SPAIN[0], C2S[0]], [EVENTS[1], SPAIN[1], C2S[1]])
#: json name: (images, labels, classes file, extra evaluate options)
SETS = {
    "val_ombria.json": (["ombria/test/AFTER"], ["ombria/test/MASK"], "ombria_classes.yaml", ["--tile", "256"]),
    "val_calibrated.json": (*CALIBRATED, "s1f_classes.yaml", []),
    "val_calibrated_20m.json": (*CALIBRATED, "s1f_classes.yaml", ["--multilook", "2"]),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "default-model")
    ap.add_argument("--ces", default=str(ROOT / ".venv" / "bin" / "ces"))
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    for name, (images, labels, classes, extra) in SETS.items():
        cmd = [args.ces, "evaluate", "--model", str(args.model), "--classes", str(HERE / classes),
               "--json", str(args.work / name), "--overwrite", "--progress", "none", *extra]
        for i in images:
            cmd += ["--images", str(args.data / i)]
        for lab in labels:
            cmd += ["--labels", str(args.data / lab)]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    py = sys.executable
    for suffix, extra in (("", []), ("_20m", ["--multilook", "2"])):
        subprocess.run([py, str(ROOT / "benchmarks" / "threshold_baselines.py"), "--data", str(args.data),
                        "--json", str(args.work / f"val_thresholds{suffix}.json"), *extra],
                       check=True, stdout=subprocess.DEVNULL)
    subprocess.run([py, str(ROOT / "benchmarks" / "dry_ground.py"), "--model", str(args.model),
                    "--data", str(args.data), "--json", str(args.work / "val_dry.json")], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run([py, str(HERE / "validation_picture.py"), str(args.model),
                    str(args.work / "validation.png"), "--data", str(args.data),
                    "--scores", str(args.work / "val_calibrated.json")], check=True)
    subprocess.run([py, str(HERE / "validation_table.py"), str(args.work)], check=True)


if __name__ == "__main__":
    main()
