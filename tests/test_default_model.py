"""The embedded default model ces-s1-water: shipped, described, and doing real work."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio

from crossearth_sar.core import checkpoints

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "ces-s1-water.safetensors"
CHIP = REPO / "examples" / "Spain_7370579_S1Hand.tif"
LABEL = REPO / "examples" / "Spain_7370579_LabelHand.tif"
OTSU_CHIP_WATER_IOU = 0.567      # benchmarks/threshold_baselines.py on the same chip (VV)
CES = [sys.executable, "-m", "crossearth_sar.crossearth_cli.main"]


def test_model_file_is_small_fp16_and_self_describing():
    assert MODEL.stat().st_size <= 25 * 1024 * 1024
    config = checkpoints.read_config(MODEL)
    assert config["variant"] == "ti" and config["experts"] == 6 and config["top_k"] == 1
    assert [c["name"] for c in config["classes"]] == ["background", "water"]
    stats = config["descriptors"]["train_stats"]
    assert stats and all(k in stats for k in ("H_DE", "ENL", "R_LR"))
    assert config["input"]["bands"] == ["VV", "VH"] and config["input"]["contract"] == 2
    described = checkpoints.describe(MODEL)
    assert described["stored_dtype"] in ("fp16", "float16", "F16")


def test_segment_without_model_uses_the_default(tmp_path):
    out = tmp_path / "demo.gpkg"
    r = subprocess.run(CES + ["segment", str(CHIP), "-o", str(out), "--raster",
                              str(tmp_path / "classes.tif"), "--summary", "--progress", "json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout.strip().splitlines()[-1])
    assert done["event"] == "done"
    # a plain Sentinel-1 GRD chip in dB is what the model was made for: no domain-shift warning
    assert "unlike the model's training data" not in r.stderr, r.stderr
    assert not [w for w in done.get("warnings", []) if "unlike" in w]
    with fiona.open(out, layer="landcover") as layer:
        assert layer.crs.to_epsg() == 4326
        names = {f["properties"]["class_name"] for f in layer}
    assert "water" in names
    water_km2 = done["class_area_m2"]["water"] / 1e6
    assert 0.1 < water_km2 < 26.0  # the chip covers about 26 km²

    # the water it finds beats Otsu thresholding of the same chip
    with rasterio.open(tmp_path / "classes.tif") as pred, rasterio.open(LABEL) as lab:
        p, t = pred.read(1), lab.read(1)
    keep = (t >= 0) & (p != 255)
    pw, tw = p[keep] == 1, t[keep] == 1
    iou = (pw & tw).sum() / max((pw | tw).sum(), 1)
    assert iou > OTSU_CHIP_WATER_IOU, iou


def test_default_model_reads_vv_vh_and_vv_only_scenes(tmp_path):
    """VV + VH scenes are read dual-pol and VV-only scenes single-pol, without flags, as the
    model was trained; ``ces evaluate`` gives the same figures as naming the bands."""
    from crossearth_sar.core import sar_io
    from crossearth_sar.core.model import trained_bands

    bands = trained_bands(checkpoints.read_config(MODEL))
    vv_only = tmp_path / "vv_only.tif"
    with rasterio.open(CHIP) as src:
        profile = dict(src.profile, count=1)
        vv = src.read(1)
    with rasterio.open(vv_only, "w", **profile) as dst:
        dst.write(vv, 1)
        dst.set_band_description(1, "VV")
    with sar_io.open_scene(CHIP, prefer=bands) as s:
        assert s.composition == "dualpol" and s.channel_names() == ["VV", "VH", "VV-VH"]
    with sar_io.open_scene(vv_only, prefer=bands) as s:
        assert s.composition == "single" and s.channel_names() == ["VV", "VV", "VV"]

    classes = tmp_path / "s1f.yaml"
    classes.write_text('classes:\n  - {name: background, value: 0, color: "#d9d9d9"}\n'
                       '  - {name: water, value: 1, color: "#1f78b4"}\nignore: [-1]\n')
    reports = {}
    for name, image, extra in (("default", CHIP, []), ("named", CHIP, ["--bands", "VV,VH"]),
                               ("vv_only", vv_only, [])):
        r = subprocess.run(CES + ["evaluate", "--images", str(image), "--labels", str(LABEL),
                                  "--classes", str(classes), "--json", str(tmp_path / f"{name}.json"),
                                  "--progress", "none"] + extra,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
    assert reports["default"]["confusion_matrix"] == reports["named"]["confusion_matrix"]
    assert reports["default"]["per_class_iou"]["water"] > OTSU_CHIP_WATER_IOU
    assert reports["vv_only"]["per_class_iou"]["water"] > 0.3   # VV alone still maps water
