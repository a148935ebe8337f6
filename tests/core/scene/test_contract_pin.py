"""Pins of input contract 3 (core/scene/contracts.py, docs/contracts.md §3): what the model sees
of two known inputs, as hard-coded numbers.

These numbers are what every contract-3 model was trained on and reads at inference: a change of
DB_MAPPING, REFERENCE_DB, REFERENCE_QUANTILES or of the formulas behind them changes the model's
input, and must not happen silently. If one of these tests fails after such a change, the change
is a new input contract (INPUT_CONTRACT + 1, older models kept on the old one), not a new pin.

(a) a calibrated chip (examples/Spain_7370579_S1Hand.tif, float32 dB): VV only, x = clip((dB + 28)
    / 30, 0, 1) on every channel, checked against the raw dB values and pinned;
(b) an 8-bit quicklook of the same VV band (a linear stretch of dB to 0..255): its estimated
    calibration (gain, offset: dB = gain · v + offset, mapping the scene's 70 / 95 % quantiles
    onto -8.7 / -4.7 dB) and the resulting x, checked against a computation here and pinned.
The last two tests shift the constants by 2 dB and show that the pins then fail.
"""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from crossearth_sar.core.scene import calibration, contracts, sampling, sar_io

CHIP = "examples/Spain_7370579_S1Hand.tif"
TOL = 1e-4
PIXELS = ((0, 0), (100, 200), (511, 511), (37, 444), (300, 5))   # (row, col)

# -- the pins (rounded to 1e-4): what the model sees; they must not change silently -----------------
#: (a) the calibrated chip, x[0] (= x[1] = x[2]) of its 512 x 512 window
PIN_CALIBRATED = {
    "pixels": (0.6354, 0.7297, 0.6066, 0.0443, 0.2773),
    "mean": 0.5534,
    "percentiles": (0.0882, 0.4634, 0.5840, 0.6657, 1.0),   # 1, 25, 50, 75, 99 %
    "clipped_low": 553, "clipped_high": 2975,            # pixels at 0 and at 1
    "stats": ((-28.0, 2.0),) * 3,
}
#: (b) the 8-bit quicklook of the chip's VV band
PIN_QUICKLOOK = {
    "calibration": ((0.1053, -25.1211),),                # (gain, offset) of its one band
    "pixels": (0.6328, 0.7065, 0.6118, 0.1802, 0.3591),
    "mean": 0.5720,
    "percentiles": (0.2153, 0.5030, 0.5942, 0.6574, 0.9275),
    "clipped_low": 0, "clipped_high": 0,
    "stats": ((-28.0, 2.0),) * 3,
}
PERCENTILES = (1, 25, 50, 75, 99)


def _figures(x0: np.ndarray, scene) -> dict:
    """The pinned figures of channel x0 [h, w] (all pixels valid) and of ``scene``."""
    return {
        "pixels": tuple(float(x0[r, c]) for r, c in PIXELS),
        "mean": float(x0.astype(np.float64).mean()),
        "percentiles": tuple(float(v) for v in np.percentile(x0, PERCENTILES)),
        "clipped_low": int((x0 == 0.0).sum()), "clipped_high": int((x0 == 1.0).sum()),
        "stats": tuple(tuple(float(v) for v in row) for row in scene.stats),
        "calibration": tuple(tuple(float(v) for v in row) for row in scene.calibration),
    }


def _differences(figures: dict, pin: dict) -> list[str]:
    """The keys of ``pin`` whose figures differ by more than TOL (counts: at all)."""
    out = []
    for key, want in pin.items():
        got = figures[key]
        if isinstance(want, int):
            same = got == want
        else:
            same = np.allclose(np.asarray(got, np.float64), np.asarray(want, np.float64), rtol=0, atol=TOL)
        if not same:
            out.append(key)
    return out


def _read(path):
    """(scene, x [3, 512, 512], valid) of the whole 512 x 512 raster, VV preferred."""
    with sar_io.open_scene(path, prefer=["VV"]) as scene:
        data = scene.read_window(Window(0, 0, 512, 512))
    return scene, data.x, data.valid


@pytest.fixture(scope="module")
def vv_db(repo_root) -> np.ndarray:
    """The chip's raw VV band (dB), float64, read by rasterio."""
    with rasterio.open(repo_root / CHIP) as src:
        assert src.descriptions == ("VV", "VH") and src.dtypes[0] == "float32"
        vv = src.read(1).astype(np.float64)
    assert vv.shape == (512, 512) and np.isfinite(vv).all()     # the chip has no nodata
    return vv


@pytest.fixture(scope="module")
def quicklook(tmp_path_factory, repo_root, vv_db):
    """The VV band as an 8-bit linear stretch of -30..+5 dB to 0..255 (no nodata), band "VV"."""
    q = np.clip(np.round((vv_db + 30.0) * 255.0 / 35.0), 0, 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("pin") / "quicklook.tif"
    with rasterio.open(repo_root / CHIP) as src:
        profile = {k: src.profile[k] for k in ("driver", "width", "height", "crs", "transform")}
    with rasterio.open(path, "w", count=1, dtype="uint8", **profile) as dst:
        dst.write(q, 1)
        dst.descriptions = ("VV",)
    return path, q


# -- (a) the calibrated chip --------------------------------------------------------------------
def test_calibrated_chip_is_the_documented_mapping_of_its_db(repo_root, vv_db):
    scene, x, valid = _read(repo_root / CHIP)
    assert (scene.domain, scene.calibrated, scene.composition, scene.band_indexes) == ("db", True, "single", [1])
    assert scene.calibration.tolist() == [[1.0, 0.0]]              # calibrated: dB as it is
    assert valid.all()
    expected = np.clip((vv_db + 28.0) / 30.0, 0.0, 1.0)            # co-pol: dB -28..+2 -> 0..1
    np.testing.assert_allclose(x[0], expected, rtol=0, atol=1e-6)
    assert np.array_equal(x[1], x[0]) and np.array_equal(x[2], x[0])   # single band: (co, co, co)
    for r, c in PIXELS:
        assert abs(float(x[0, r, c]) - (vv_db[r, c] + 28.0) / 30.0) < 1e-6
    assert abs(float(x[0].astype(np.float64).mean()) - expected.mean()) < 1e-6
    np.testing.assert_allclose(np.percentile(x[0], PERCENTILES), np.percentile(expected, PERCENTILES),
                               rtol=0, atol=1e-6)
    assert int((x[0] == 0).sum()) == int((vv_db <= -28.0).sum())
    assert int((x[0] == 1).sum()) == int((vv_db >= 2.0).sum())


def test_calibrated_chip_pin(repo_root):
    scene, x, _ = _read(repo_root / CHIP)
    assert _differences(_figures(x[0], scene), PIN_CALIBRATED) == []


# -- (b) the 8-bit quicklook --------------------------------------------------------------------
def test_quicklook_calibration_is_the_documented_estimate(quicklook):
    path, q = quicklook
    scene, x, valid = _read(path)
    assert (scene.domain, scene.calibrated, scene.composition) == ("quicklook", False, "single")
    assert valid.all()
    # the whole 512 px raster is the decimated read: its quantiles are those of every pixel
    q70, q95 = np.percentile(q.astype(np.float64), (70.0, 95.0))
    gain = (-4.7 - -8.7) / (q95 - q70)
    offset = -8.7 - gain * q70
    np.testing.assert_allclose(scene.calibration, [[gain, offset]], rtol=0, atol=1e-5)
    db = gain * q.astype(np.float64) + offset
    expected = np.clip((db + 28.0) / 30.0, 0.0, 1.0)
    np.testing.assert_allclose(x[0], expected, rtol=0, atol=1e-5)
    assert np.array_equal(x[1], x[0]) and np.array_equal(x[2], x[0])


def test_quicklook_pin(quicklook):
    """What the model sees of an 8-bit quicklook: its estimated calibration and x."""
    scene, x, _ = _read(quicklook[0])
    assert _differences(_figures(x[0], scene), PIN_QUICKLOOK) == []


# -- the pins are sensitive: a 2 dB shift of the constants fails them ------------------------------
def test_a_2_db_shift_of_reference_db_fails_the_quicklook_pin(quicklook, monkeypatch):
    shifted = {k: (lo + 2.0, hi + 2.0) for k, (lo, hi) in contracts.REFERENCE_DB.items()}
    monkeypatch.setattr(contracts, "REFERENCE_DB", shifted)
    monkeypatch.setattr(calibration, "REFERENCE_DB", shifted)   # the name calibration.py imported
    scene, x, _ = _read(quicklook[0])
    figures = _figures(x[0], scene)
    gain, offset = PIN_QUICKLOOK["calibration"][0]
    # same spread: same gain, every dB 2 higher, x 2/30 higher where not clipped
    assert abs(figures["calibration"][0][0] - gain) < TOL
    assert abs(figures["calibration"][0][1] - (offset + 2.0)) < TOL
    assert abs(figures["percentiles"][2] - (PIN_QUICKLOOK["percentiles"][2] + 2.0 / 30.0)) < TOL
    assert set(_differences(figures, PIN_QUICKLOOK)) >= {"calibration", "pixels", "mean", "percentiles"}


def test_a_2_db_shift_of_db_mapping_fails_both_pins(repo_root, quicklook, monkeypatch):
    shifted = {k: (lo + 2.0, hi + 2.0) for k, (lo, hi) in contracts.DB_MAPPING.items()}
    monkeypatch.setattr(contracts, "DB_MAPPING", shifted)
    monkeypatch.setattr(sampling, "DB_MAPPING", shifted)        # the name sampling.py imported
    for path, pin in ((repo_root / CHIP, PIN_CALIBRATED), (quicklook[0], PIN_QUICKLOOK)):
        scene, x, _ = _read(path)
        figures = _figures(x[0], scene)
        assert figures["stats"] == ((-26.0, 4.0),) * 3
        # x 2/30 lower where not clipped
        assert abs(figures["percentiles"][2] - (pin["percentiles"][2] - 2.0 / 30.0)) < TOL
        assert set(_differences(figures, pin)) >= {"stats", "pixels", "mean", "percentiles"}
