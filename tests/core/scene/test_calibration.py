"""Input contract 3: calibration is kept where the input has it.

On real files written from the Sen1Floods11 chip (sigma0 dB, VV + VH) in each value domain:
* detection: float dB, float linear power and float linear amplitude are calibrated (and the
  linear kind is told apart); an 8-bit quicklook and uint16 DN are not;
* the same chip as dB, power and amplitude reaches the model as the same tensor (tolerance:
  max |Δx| <= 1e-4 on valid pixels, float32 round-off of 10^(dB/10) and back);
* a dry calibrated crop gets the same input values alone and inside a wet scene (exactly: no
  per-scene statistics), where contract 2's per-scene stretch moved them;
* ``calibrated`` / ``--calibrated`` override the detection both ways;
* uncalibrated tiles cut from one scene get one pooled estimated calibration (a data file's
  ``stretch: source``), so a dry tile stays as bright as it is in its scene.
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from crossearth_sar.core.scene import contracts, pooled, sar_io

CHIP = "examples/Spain_7370579_S1Hand.tif"


def _write(path, bands, dtype, profile, nodata, names=("VV", "VH")):
    p = dict(profile, dtype=dtype, count=len(bands), nodata=nodata)
    with rasterio.open(path, "w", **p) as dst:
        dst.write(np.stack(bands).astype(dtype))
        dst.descriptions = names[: len(bands)]
    return path


@pytest.fixture(scope="module")
def chip(repo_root):
    with rasterio.open(repo_root / CHIP) as src:
        db = src.read().astype(np.float64)           # [2, H, W], NaN nodata
        profile = {k: src.profile[k] for k in ("driver", "width", "height", "crs", "transform")}
    return db, profile


@pytest.fixture(scope="module")
def domains(tmp_path_factory, chip):
    """{name: path} of the chip written in five value domains."""
    db, profile = chip
    d = tmp_path_factory.mktemp("calibration")
    nan = ~np.isfinite(db)
    power = 10 ** (db / 10)
    amplitude = 10 ** (db / 20)
    dn = np.clip(np.round(amplitude * 10000), 1, 65535)
    ql = np.clip(np.round((np.clip(db, -48, 12) + 48) / 60 * 254) + 1, 1, 255)
    dn[nan], ql[nan] = 0, 0
    return {
        "db": _write(d / "db.tif", list(db), "float32", profile, float("nan")),
        "power": _write(d / "power.tif", list(power), "float32", profile, float("nan")),
        "amplitude": _write(d / "amplitude.tif", list(amplitude), "float32", profile, float("nan")),
        "quicklook": _write(d / "quicklook.tif", list(ql), "uint8", profile, 0),
        "dn": _write(d / "dn.tif", list(dn), "uint16", profile, 0),
    }


def _whole(path, **kw):
    with sar_io.open_scene(path, **kw) as s:
        return s, s.read_window(Window(0, 0, s.width, s.height))


def test_detection_on_each_domain(domains):
    found = {}
    for name, path in domains.items():
        with sar_io.open_scene(path) as s:
            info = s.info()
        found[name] = (info["domain"], info["linear_kind"], info["calibrated"])
        assert info["calibration_reason"], name
    assert found == {
        "db": ("db", None, True),
        "power": ("linear", "power", True),
        "amplitude": ("linear", "amplitude", True),
        "quicklook": ("quicklook", None, False),
        "dn": ("linear", "power", False),
    }


def test_detection_single_band_and_named_amplitude(tmp_path, chip):
    """A VV-only scene decides power / amplitude by its co-pol level alone."""
    db, profile = chip
    for kind, values in (("power", 10 ** (db[0] / 10)), ("amplitude", 10 ** (db[0] / 20))):
        path = _write(tmp_path / f"{kind}.tif", [values], "float32", profile, float("nan"))
        with sar_io.open_scene(path) as s:
            assert (s.calibrated, s.linear_kind) == (True, kind)


def test_calibrated_domains_reach_the_model_as_the_same_tensor(domains):
    ref_scene, ref = _whole(domains["db"])
    np.testing.assert_array_equal(ref_scene.stats, np.float32(
        [contracts.DB_MAPPING["co"], contracts.DB_MAPPING["cross"], contracts.DB_MAPPING["ratio"]]))
    for name in ("power", "amplitude"):
        _, w = _whole(domains[name])
        np.testing.assert_array_equal(w.valid, ref.valid)
        diff = np.abs(w.x[:, ref.valid] - ref.x[:, ref.valid])
        assert diff.max() <= 1e-4, (name, diff.max())
    # the mapping is the fixed one: x = (dB - lo) / (hi - lo), VH at its own absolute level
    lo, hi = contracts.DB_MAPPING["cross"]
    vh = np.clip((np.nan_to_num(_db_of(domains["db"])[1]) - lo) / (hi - lo), 0, 1)
    np.testing.assert_allclose(ref.x[1][ref.valid], vh[ref.valid], atol=1e-6)


def _db_of(path):
    with rasterio.open(path) as src:
        return src.read().astype(np.float64)


def test_dry_crop_alone_and_inside_a_wet_scene_get_the_same_input(tmp_path, chip):
    """The crop's values do not depend on what else the scene holds (contract 3), where
    contract 2 stretched them with the scene's own percentiles."""
    db, profile = chip
    crop = db[:, :128, 384:512].copy()           # a corner of the chip without labelled water
    wet = np.empty((2, 384, 384))
    wet[0], wet[1] = -24.0, -31.0                # open water around it
    rng = np.random.default_rng(0)
    wet += rng.normal(0, 1.5, wet.shape)
    wet[:, 128:256, 128:256] = crop
    prof = dict(profile, width=128, height=128)
    alone = _write(tmp_path / "alone.tif", list(crop), "float32", prof, float("nan"))
    prof = dict(profile, width=384, height=384)
    inside = _write(tmp_path / "inside.tif", list(wet), "float32", prof, float("nan"))
    a = _whole(alone)[1]
    with sar_io.open_scene(inside) as s:
        b = s.read_window(Window(128, 128, 128, 128))
    np.testing.assert_array_equal(a.valid, b.valid)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.phys, b.phys)
    # contract 2 (per-scene stretch) moved the same pixels
    with sar_io.open_scene(alone, contract=2) as s2a, sar_io.open_scene(inside, contract=2) as s2b:
        xa = s2a.read_window(Window(0, 0, 128, 128)).x
        xb = s2b.read_window(Window(128, 128, 128, 128)).x
    assert np.abs(xa - xb)[:, a.valid].mean() > 0.05


def test_override_both_ways(domains, tmp_path, chip):
    with sar_io.open_scene(domains["db"], calibrated=False) as s:
        assert not s.calibrated and "set by the user" in s.calibration_reason
        assert not np.allclose(s.calibration, [[1, 0], [1, 0]])   # an estimated calibration
    with sar_io.open_scene(domains["quicklook"], calibrated=True) as s:
        assert s.calibrated
        np.testing.assert_array_equal(s.calibration, [[1, 0], [1, 0]])
    # float values far outside sigma0 (e.g. DN stored as float) are not calibrated, unless told
    db, profile = chip
    dn = _write(tmp_path / "dn_float.tif", list(np.nan_to_num(10 ** (db / 20)) * 10000 + 1),
                "float32", profile, None)
    with sar_io.open_scene(dn) as s:
        assert not s.calibrated and "outside a plausible sigma0" in s.calibration_reason
    with sar_io.open_scene(dn, calibrated=True) as s:
        assert s.calibrated


@pytest.mark.parametrize("flag, expected", [("no", False), ("yes", True), ("auto", True)])
def test_cli_info_calibrated_flag(domains, flag, expected):
    out = subprocess.run([sys.executable, "-m", "crossearth_sar.crossearth_cli.main", "info",
                          "--json", "--calibrated", flag, str(domains["db"])],
                         capture_output=True, text=True, check=True).stdout
    info = json.loads(out)
    assert info["calibrated"] is expected
    assert info["input_contract"] == contracts.INPUT_CONTRACT == 3
    text = subprocess.run([sys.executable, "-m", "crossearth_sar.crossearth_cli.main", "info",
                           str(domains["quicklook"])], capture_output=True, text=True,
                          check=True).stdout
    assert "calibrated:      no: 8-bit display values" in text


def test_bad_calibrated_value_is_a_usage_error(domains):
    r = subprocess.run([sys.executable, "-m", "crossearth_sar.crossearth_cli.main", "info",
                        "--calibrated", "maybe", str(domains["db"])], capture_output=True, text=True)
    assert r.returncode == 2
    assert "--calibrated" in r.stderr and "Traceback" not in r.stderr


def test_pooled_calibration_keeps_a_dry_tile_bright(tmp_path, domains):
    """Tiles of one 8-bit scene: each tile's own estimate maps its own quantiles onto the
    reference, the pooled one maps the whole scene's, as the scene read whole would be."""
    with rasterio.open(domains["quicklook"]) as src:
        ql, prof = src.read(), src.profile
    tiles = []
    for i, (r, c) in enumerate(((0, 0), (0, 256), (256, 0), (256, 256))):
        p = dict(prof, width=256, height=256,
                 transform=rasterio.windows.transform(Window(c, r, 256, 256), prof["transform"]))
        tiles.append(_write(tmp_path / f"t{i}.tif", list(ql[:, r:r + 256, c:c + 256]), "uint8", p, 0))
    pooled_cal = pooled.pooled_calibration(tiles)
    with sar_io.open_scene(domains["quicklook"]) as whole:
        np.testing.assert_allclose(pooled_cal, whole.calibration, rtol=0.05, atol=0.5)
        x_whole = whole.read_window(Window(256, 0, 256, 256)).x
    with sar_io.open_scene(tiles[1], calibration=pooled_cal) as t:
        x_tile = t.read_window(Window(0, 0, 256, 256)).x
    assert np.abs(x_tile - x_whole).mean() < 0.01
    # calibrated rasters have nothing to estimate
    assert pooled.pooled_calibration([domains["db"]]) is None


def test_estimated_calibration_lands_near_the_truth_for_a_quicklook(domains):
    """An 8-bit quicklook of a calibrated chip: its estimated dB lies within a few dB of the
    true sigma0 (the estimate assumes a land-dominated scene; the chip is)."""
    _, ref = _whole(domains["db"])
    _, est = _whole(domains["quicklook"])
    both = ref.valid & est.valid
    err_db = (est.x[0] - ref.x[0])[both] * 30.0          # co-pol mapping: 30 dB per unit
    assert abs(float(np.median(err_db))) < 3.0, np.median(err_db)


def test_nodata_values_and_empty_rasters(tmp_path, chip):
    db, profile = chip
    fill = np.full((1, 32, 32), 255, np.uint8)
    prof = dict(profile, width=32, height=32)
    path = _write(tmp_path / "fill.tif", list(fill), "uint8", prof, 0, names=("VV",))
    with sar_io.open_scene(path) as s:            # 255 is a value like any other...
        assert s.nodata_fraction == 0
    with pytest.raises(sar_io.EmptyRasterError, match="no valid pixel"):
        sar_io.open_scene(path, nodata_values=[255])   # ...unless the source says it is fill
