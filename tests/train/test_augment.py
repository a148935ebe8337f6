"""Augmentations keep image, descriptor input, mask and labels aligned, and act in dB."""
from __future__ import annotations

import numpy as np
from rasterio.windows import Window

from crossearth_sar.core.scene import sar_io
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
        np.testing.assert_array_equal(a["phys"], a["x"][0])  # descriptors follow channel 0
        seen.add(a["target"].tobytes())
    assert len(seen) >= 4  # several of the 8 symmetries occurred


def test_speckle_is_multiplicative_gamma_and_offset_in_db(tmp_path):
    scene, _, s = _sample(tmp_path)
    rng = np.random.default_rng(1)
    sp = augment.speckle(s, rng, looks=4.0, scene=scene)
    span = float(scene.stats[0, 1] - scene.stats[0, 0])
    inner = s["valid"] & (s["x"][0] > 0.2) & (s["x"][0] < 0.8) & (sp["x"][0] > 0) & (sp["x"][0] < 1)
    ratio = 10 ** ((sp["x"][0] - s["x"][0])[inner].astype(np.float64) * span / 10)
    assert abs(ratio.mean() - 1.0) < 0.08          # Gamma(L, 1/L): mean 1 (clipped tails left out)
    assert abs(ratio.var() - 1 / 4.0) < 0.08        # variance 1/L
    assert (sp["target"] == s["target"]).all()
    # a +3 dB offset moves x by 3 dB / stretch span; phys follows
    go = augment.gain_offset(s, 1.0, 3.0, scene)
    inner = (s["x"][0] > 0.05) & (s["x"][0] < 0.8)
    np.testing.assert_allclose((go["x"][0] - s["x"][0])[inner], 3.0 / span, atol=1e-5)
    np.testing.assert_array_equal(go["phys"], go["x"][0])


def test_single_pol_dropout_matches_a_single_pol_read(tmp_path):
    """A dual-pol sample shown single-pol is what sar_io gives for the VV band alone."""
    import rasterio

    rng = np.random.default_rng(3)
    vv = (10 * np.log10(rng.gamma(4, 0.05 / 4, (40, 40)))).astype(np.float32)
    vh = vv - 7 + rng.normal(0, 1, (40, 40)).astype(np.float32)
    p = tmp_path / "vvvh.tif"
    with rasterio.open(p, "w", driver="GTiff", width=40, height=40, count=2, dtype="float32") as dst:
        dst.write(np.stack([vv, vh]))
        dst.descriptions = ("VV", "VH")
    with sar_io.open_scene(p) as dual, sar_io.open_scene(p, bands=["VV"]) as single:
        assert dual.composition == "dualpol" and single.composition == "single"
        d = dual.read_window(Window(0, 0, 40, 40))
        s = {"x": d.x, "phys": d.phys, "valid": d.valid, "target": np.zeros((40, 40), np.uint8)}
        a = augment.Augment(geometric=False, p_speckle=0, p_jitter=0, p_single_pol=1.0)(
            s, np.random.default_rng(0), dual)
        np.testing.assert_allclose(a["x"], single.read_window(Window(0, 0, 40, 40)).x, atol=1e-6)
