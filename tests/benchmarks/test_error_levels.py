"""scripts/default_model/error_levels.py: the water found, missed and invented by a model on
calibrated chips, and the pooled-mIoU what-if, on the demo chip with the default model."""
from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import rasterio

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "default_model"))

import error_levels  # noqa: E402


def test_chip_errors_counts_and_medians():
    vv = np.float32([[-20, -21, -9, -8], [-19, -10, -16, np.nan]])
    label = np.int16([[1, 1, 1, 0], [0, 0, -1, 1]])
    said = np.uint8([[1, 0, 0, 0], [1, 0, 1, 1]])
    e = error_levels.chip_errors(vv, label, said)
    assert e["found"] == (1, -20.0) and e["missed"][0] == 2 and e["invented"] == (1, -19.0)
    assert e["missed"][1] == -15.0 and e["missed_dark"] == 1          # -21 and -9
    assert e["confusion"].tolist() == [[2, 1], [2, 1]]                 # nodata and NaN left out


def test_cutting_errors_raises_the_pooled_miou_to_one():
    cm = np.array([[80, 20], [30, 70]])
    assert abs(error_levels.pooled_miou(cm) - np.mean([80 / 130, 70 / 120])) < 1e-9
    assert error_levels.with_errors_cut(cm, 0.5).tolist() == [[90, 10], [15, 85]]
    assert error_levels.pooled_miou(error_levels.with_errors_cut(cm, 1.0)) == 1.0


def test_the_demo_chip_with_the_default_model(tmp_path, capsys):
    chips = tmp_path / "sen1floods11_spain"
    chips.mkdir()
    for name in ("Spain_7370579_S1Hand.tif", "Spain_7370579_LabelHand.tif"):
        shutil.copy(ROOT / "examples" / name, chips / name)
    assert error_levels.main(["--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    row = re.search(r"^\| Spain_7370579 \| ([\d,]+) \(-[\d.]+\) \| ([\d,]+) \(-[\d.]+\) \|", out, re.M)
    assert row, out
    with rasterio.open(chips / "Spain_7370579_LabelHand.tif") as src, \
            rasterio.open(chips / "Spain_7370579_S1Hand.tif") as img:
        water = int(((src.read(1) == 1) & np.isfinite(img.read(1))).sum())
    found, missed = (int(g.replace(",", "")) for g in row.groups())
    assert found + missed == water
    assert "pooled mIoU of all 1 chips" in out and "100% of the errors" in out


def test_no_chips_is_one_line_and_exit_2(tmp_path, capsys):
    assert error_levels.main(["--data", str(tmp_path)]) == 2
    assert "no calibrated chips under" in capsys.readouterr().err
