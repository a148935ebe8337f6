"""Augmentations keep image, physical values, mask and labels aligned, and act in dB."""
from __future__ import annotations

import numpy as np
from rasterio.windows import Window

from crossearth_sar.core import sar_io
from crossearth_sar.train import augment

from _helpers_train import write_scene


def _sample(tmp_path):
    truth = write_scene(tmp_path / "s.tif", size=48, water_box=(4, 20, 10, 44))
    scene = sar_io.open_scene(tmp_path / "s.tif")
    d = scene.read_window(Window(0, 0, 48, 48))
    return scene, truth, {"x": d.x, "phys": d.phys, "valid": d.valid, "target": truth.copy()}


def test_flips_and_rotations_keep_labels_aligned(tmp_path):
    scene, truth, s = _sample(tmp_path)
    dark = s["x"][0] < s["x"][0].mean()  # the water box is the dark part
    assert (dark == (truth == 1)).mean() > 0.97
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(12):
        a = augment.Augment(p_speckle=0, p_jitter=0)(dict(s), rng, scene)
        d = a["x"][0] < a["x"][0].mean()
        assert (d == (a["target"] == 1)).mean() > 0.97
        assert (d == (a["phys"] < np.log1p(10 ** -1.5))).mean() > 0.97  # -15 dB
        seen.add(a["target"].tobytes())
    assert len(seen) >= 4  # several of the 8 symmetries occurred


def test_speckle_is_multiplicative_gamma_and_offset_in_db(tmp_path):
    scene, _, s = _sample(tmp_path)
    rng = np.random.default_rng(1)
    sp = augment.speckle(s, rng, looks=4.0, scene=scene)
    ratio = np.expm1(sp["phys"].astype(np.float64))[s["valid"]] / np.expm1(s["phys"].astype(np.float64))[s["valid"]]
    assert abs(ratio.mean() - 1.0) < 0.05          # Gamma(L, 1/L): mean 1
    assert abs(ratio.var() - 1 / 4.0) < 0.06        # variance 1/L
    assert (sp["target"] == s["target"]).all()
    # a +3 dB offset moves x by 3 dB / stretch span and doubles the linear power
    span = float(scene.stats[0, 1] - scene.stats[0, 0])
    go = augment.gain_offset(s, 1.0, 3.0, scene)
    inner = (s["x"][0] > 0.05) & (s["x"][0] < 0.8)
    np.testing.assert_allclose((go["x"][0] - s["x"][0])[inner], 3.0 / span, atol=1e-5)
    p = np.expm1(go["phys"].astype(np.float64)) / np.expm1(s["phys"].astype(np.float64))
    np.testing.assert_allclose(p[s["valid"]], 10 ** 0.3, rtol=1e-3)
