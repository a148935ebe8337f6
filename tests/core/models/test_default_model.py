"""The embedded default model ces-s1-water: shipped, described, and doing real work."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fiona
import numpy as np
import rasterio

from crossearth_sar.core.models import checkpoints
from crossearth_sar.crossearth_cli import model_description

REPO = Path(__file__).resolve().parents[3]
MODEL = REPO / "models" / "ces-s1-water.safetensors"
CHIP = REPO / "examples" / "Spain_7370579_S1Hand.tif"
LABEL = REPO / "examples" / "Spain_7370579_LabelHand.tif"
#: one fixed physical threshold on the same chip, VV < -17 dB (benchmarks/threshold_baselines.py):
#: what the previous default lost to on calibrated scenes
FIXED_DB_CHIP_WATER_IOU = 0.501
CES = [sys.executable, "-m", "crossearth_sar.crossearth_cli.main"]


def test_model_file_is_small_fp16_and_self_describing():
    assert MODEL.stat().st_size <= 25 * 1024 * 1024
    config = checkpoints.read_config(MODEL)
    assert config["variant"] == "ti" and config["experts"] == 6 and config["top_k"] == 1
    assert [c["name"] for c in config["classes"]] == ["background", "water"]
    stats = config["descriptors"]["train_stats"]
    assert stats and all(k in stats for k in ("H_DE", "ENL", "R_LR"))
    described = model_description.describe(MODEL)
    assert described["stored_dtype"] in ("fp16", "float16", "F16")


def test_segment_without_model_uses_the_default(tmp_path):
    out = tmp_path / "demo.gpkg"
    r = subprocess.run(CES + ["segment", str(CHIP), "-o", str(out), "--raster",
                              str(tmp_path / "classes.tif"), "--summary", "--progress", "json"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout.strip().splitlines()[-1])
    assert done["event"] == "done"
    with fiona.open(out, layer="landcover") as layer:
        assert layer.crs.to_epsg() == 4326
        names = {f["properties"]["class_name"] for f in layer}
    assert "water" in names
    water_km2 = done["class_area_m2"]["water"] / 1e6
    assert 0.1 < water_km2 < 26.0  # the chip covers about 26 km²

    # the water it finds beats one fixed physical threshold on the same chip
    with rasterio.open(tmp_path / "classes.tif") as pred, rasterio.open(LABEL) as lab:
        p, t = pred.read(1), lab.read(1)
    keep = (t >= 0) & (p != 255)
    pw, tw = p[keep] == 1, t[keep] == 1
    iou = (pw & tw).sum() / max((pw | tw).sum(), 1)
    assert iou > FIXED_DB_CHIP_WATER_IOU, iou


def test_evaluate_reads_the_band_the_model_was_trained_on(tmp_path):
    """The model was trained on VV: ``ces evaluate`` on the dual-pol chip feeds it VV, as
    ``ces segment`` does, so its figures are those of --bands VV and beat the fixed threshold's."""
    classes = tmp_path / "s1f.yaml"
    classes.write_text('classes:\n  - {name: background, value: 0, color: "#d9d9d9"}\n'
                       '  - {name: water, value: 1, color: "#1f78b4"}\nignore: [-1]\n')
    reports = []
    for extra, name in (([], "default.json"), (["--bands", "VV"], "vv.json")):
        r = subprocess.run(CES + ["evaluate", "--images", str(CHIP), "--labels", str(LABEL),
                                  "--classes", str(classes), "--json", str(tmp_path / name),
                                  "--progress", "none"] + extra,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr
        reports.append(json.loads((tmp_path / name).read_text()))
    assert reports[0]["confusion_matrix"] == reports[1]["confusion_matrix"]
    assert reports[0]["per_class_iou"]["water"] > FIXED_DB_CHIP_WATER_IOU


def test_the_default_model_reads_calibrated_scenes_as_calibrated(tmp_path):
    """ces-s1-water is a model of input contract 3 trained on VV: it reads the VV band of a
    VV + VH scene and the only band of a VV-only one, and a calibrated dB scene reaches it
    through the fixed dB mapping (x = (VV + 28) / 30, clipped), with no per-scene statistics."""
    from rasterio.windows import Window

    from crossearth_sar.core.models.model import input_contract, trained_bands
    from crossearth_sar.core.scene import contracts, sar_io

    config = checkpoints.read_config(MODEL)
    assert input_contract(config) == 3 and trained_bands(config) == ["VV"]
    vv_only = tmp_path / "vv_only.tif"
    with rasterio.open(CHIP) as src:
        profile = dict(src.profile, count=1)
        vv = src.read(1)
    with rasterio.open(vv_only, "w", **profile) as dst:
        dst.write(vv, 1)
    lo, hi = contracts.DB_MAPPING["co"]
    for path in (CHIP, vv_only):
        with sar_io.open_scene(path, prefer=trained_bands(config), contract=3) as s:
            assert s.composition == "single" and s.band_indexes == [1] and s.calibrated
            w = s.read_window(Window(100, 100, 8, 8))
            ok = w.valid
            want = np.clip((vv[100:108, 100:108][ok] - lo) / (hi - lo), 0, 1)
            np.testing.assert_allclose(w.x[0][ok], want, rtol=1e-5, atol=1e-6)
