"""SAR descriptors H_DE, ENL, R_LR: against independent numpy/scipy computations, nodata
exclusion, scaling, and the ``ces descriptors`` map written and read through GDAL."""
from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.windows import Window
from scipy import ndimage

from crossearth_sar.core.scene import descriptors as D, sar_io
from crossearth_sar.crossearth_cli.main import main


def numpy_descriptors(img: np.ndarray, valid: np.ndarray, bins=36, block=16) -> np.ndarray:
    """Independent reference: scipy Sobel on interior pixels, numpy histogram and statistics."""
    img = np.where(valid, img, 0.0).astype(np.float64)
    gx = ndimage.sobel(img, axis=1)[1:-1, 1:-1]
    gy = ndimage.sobel(img, axis=0)[1:-1, 1:-1]
    inner = ndimage.binary_erosion(valid, np.ones((3, 3)), border_value=0)[1:-1, 1:-1]
    keep = inner & ((gx != 0) | (gy != 0))
    hist, _ = np.histogram(np.arctan2(gy[keep], gx[keep]), bins=bins, range=(-math.pi, math.pi))
    p = hist[hist > 0] / hist.sum()
    h_de = float(-(p * np.log(p)).sum()) if hist.sum() else np.nan
    v = img[valid]
    enl = v.mean() ** 2 / v.var()
    means = []
    for r in range(0, img.shape[0], block):
        for c in range(0, img.shape[1], block):
            m = valid[r:r + block, c:c + block]
            if m.any():
                means.append(img[r:r + block, c:c + block][m].mean())
    return np.array([h_de, enl, np.var(means)])


def speckled(shape, seed=0, looks=4.0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    mean = 0.05 + 0.2 * (np.sin(xx / 9.0) > 0) + 0.1 * (yy / shape[0])
    return (mean * rng.gamma(looks, 1.0 / looks, shape)).astype(np.float32)


def test_matches_independent_reference_with_nodata():
    sigma0 = speckled((70, 53))
    valid = np.ones(sigma0.shape, bool)
    valid[:, :9] = False
    valid[40:47, 20:30] = False
    phys = np.log1p(np.abs(sigma0) * 1000)  # a linear scene brought to O(1) log values
    ours = D.raw_descriptors(torch.from_numpy(phys), torch.from_numpy(valid))[0].numpy()
    ref = numpy_descriptors(phys, valid)
    np.testing.assert_allclose(ours, ref, rtol=2e-4)
    # garbage (huge values, NaN) under the nodata mask changes nothing
    dirty = phys.copy()
    dirty[~valid] = 1e6
    dirty[0, 0] = np.nan
    again = D.raw_descriptors(torch.from_numpy(dirty), torch.from_numpy(valid))[0].numpy()
    np.testing.assert_allclose(again, ours, rtol=1e-6)


def test_meaning_of_each_descriptor():
    yy, xx = np.mgrid[:64, :64].astype(np.float32)
    ramp = torch.from_numpy(xx * 0.1)  # one gradient direction everywhere
    noise = torch.from_numpy(np.random.default_rng(1).random((64, 64), dtype=np.float32))
    h = D.raw_descriptors(torch.stack([ramp, noise]))[:, 0]
    assert h[0].item() == pytest.approx(0.0, abs=1e-6)
    assert h[1].item() > 0.9 * math.log(36)
    # strong speckle (1 look) has a lower ENL than weak speckle (16 looks)
    weak = np.log1p(1000 * speckled((64, 64), seed=2, looks=16.0))
    strong = np.log1p(1000 * speckled((64, 64), seed=2, looks=1.0))
    enl = D.raw_descriptors(torch.from_numpy(np.stack([weak, strong])))[:, 1]
    assert enl[0] > enl[1]
    # flat blocks: R_LR 0; blocks of different brightness: R_LR = variance of their levels
    levels = np.kron(np.array([[1.0, 2.0], [3.0, 4.0]]), np.ones((16, 16))).astype(np.float32)
    r = D.raw_descriptors(torch.from_numpy(np.stack([np.ones_like(levels), levels])))[:, 2]
    assert r[0].item() == pytest.approx(0.0, abs=1e-7)
    assert r[1].item() == pytest.approx(np.var([1.0, 2.0, 3.0, 4.0]), rel=1e-6)


def test_batched_equals_one_by_one_and_empty_tiles_are_nan():
    tiles = np.stack([np.log1p(1000 * speckled((48, 48), seed=s)) for s in range(3)])
    valid = np.ones_like(tiles, bool)
    valid[1, 10:30] = False
    valid[2] = False
    batched = D.raw_descriptors(torch.from_numpy(tiles), torch.from_numpy(valid))
    for i in range(2):
        single = D.raw_descriptors(torch.from_numpy(tiles[i]), torch.from_numpy(valid[i]))[0]
        assert torch.allclose(batched[i], single, rtol=1e-5)
    assert torch.isnan(batched[2]).all()
    scaled = D.scale_descriptors(batched)
    assert torch.isfinite(scaled).all() and (scaled[2] == 0).all()
    assert (scaled[:2].abs() < 3).all()  # O(1) for the router
    assert torch.allclose(D.compute_descriptors(torch.from_numpy(tiles), torch.from_numpy(valid)),
                          scaled)
    bins8 = D.raw_descriptors(torch.from_numpy(tiles[:1]), bins=8, block=4)
    assert bins8[0, 0] <= math.log(8) + 1e-6


@pytest.fixture
def scene_tif(tmp_path):
    """A linear sigma0 GeoTIFF (UTM) with a nodata strip wider than one tile."""
    data = speckled((150, 200), seed=5)
    data[:, 160:] = -9999.0
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", width=200, height=150, count=1,
                       dtype="float32", crs="EPSG:32631", nodata=-9999.0,
                       transform=from_origin(500000, 4600000, 10, 10)) as dst:
        dst.write(data, 1)
        dst.set_band_description(1, "VV")
    return path


def test_cli_descriptor_map(tmp_path, scene_tif, capsys):
    out = tmp_path / "desc.tif"
    assert main(["descriptors", str(scene_tif), "-o", str(out), "--tile", "64",
                 "--stride", "40"]) == 0
    printed = capsys.readouterr().out
    for name in ("H_DE", "ENL", "R_LR"):
        assert name in printed and "median" in printed
    with rasterio.open(out) as ds:
        assert ds.count == 3 and ds.dtypes == ("float32",) * 3
        assert ds.descriptions == ("H_DE", "ENL", "R_LR")
        assert ds.crs.to_epsg() == 32631
        assert ds.transform == from_origin(500000, 4600000, 400, 400)
        assert (ds.height, ds.width) == (4, 5)
        values = ds.read()
    # tiles starting at column 160 see only nodata
    assert np.isnan(values[:, :, 4]).all() and np.isfinite(values[:, :, :4]).all()
    with sar_io.open_scene(scene_tif) as scene:
        w = scene.read_window(Window(40, 80, 64, 64))
    expected = D.raw_descriptors(torch.from_numpy(w.phys), torch.from_numpy(w.valid))[0].numpy()
    np.testing.assert_allclose(values[:, 2, 1], expected, rtol=1e-6)
    # refuses an existing output (exit 2), leaves it untouched
    before = out.read_bytes()
    assert main(["descriptors", str(scene_tif), "-o", str(out)]) == 2
    assert out.read_bytes() == before
    assert main(["descriptors", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "x.tif")]) == 2
    assert not (tmp_path / "x.tif").exists()


def test_scaled_descriptors_of_real_scenes_are_order_one(shared_data):
    """Real Sentinel-1 (dB, dual-pol) and AIRSAR (Pauli quicklook) tiles: O(1) router inputs
    that still tell the two domains apart."""
    scaled = []
    for path in (shared_data / "sen1floods11_spain" / "Spain_7370579_S1Hand.tif",
                 shared_data / "polsf_airsar" / "SF-AIRSAR-Pauli.bmp"):
        if not path.exists():
            pytest.skip(f"{path} not present")
        with sar_io.open_scene(path) as scene:
            w = scene.read_window(Window(0, 0, 256, 256))
        scaled.append(D.compute_descriptors(torch.from_numpy(w.phys), torch.from_numpy(w.valid))[0])
    scaled = torch.stack(scaled)
    assert (scaled.abs() < 2.5).all()
    assert (scaled[0, 1:] - scaled[1, 1:]).abs().min() > 0.5  # ENL and R_LR differ by domain
