"""Multilooking a calibrated raster in power (core/scene/multilook.py), through GDAL: values,
units kept, nodata, the coarser grid, and the refusal of uncalibrated input."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from crossearth_sar.core.errors import InputError
from crossearth_sar.core.scene.multilook import multilook_raster, resolution_factor


def _write(path, bands, names=("VV", "VH"), nodata=float("nan")):
    with rasterio.open(path, "w", driver="GTiff", width=bands.shape[2], height=bands.shape[1],
                       count=bands.shape[0], dtype=bands.dtype, crs="EPSG:32633", nodata=nodata,
                       transform=from_origin(500000, 5000000, 10, 10)) as dst:
        dst.write(bands)
        dst.descriptions = names[:bands.shape[0]]
    return path


def _scene_db(h=61, w=40, seed=0):
    rng = np.random.default_rng(seed)
    vv = (-10 + 3 * rng.standard_normal((h, w))).astype(np.float32)
    vh = (vv - 7).astype(np.float32)
    vv[:20, :20] = -25.0           # a lake
    return np.stack([vv, vh])


def test_db_raster_is_averaged_in_power_on_a_grid_twice_as_coarse(tmp_path):
    db = _scene_db()
    db[0, 0, 0] = np.nan            # one nodata pixel in the first block: left out of the mean
    db[:, 2:4, 2:4] = np.nan        # a whole block nodata
    src = _write(tmp_path / "s.tif", db)
    out = multilook_raster(src, tmp_path / "m.tif", 2)
    with rasterio.open(out) as m:
        assert (m.width, m.height) == (20, 31)                  # ceil(40 / 2), ceil(61 / 2)
        assert m.transform.a == 20 and m.transform.e == -20 and m.crs.to_epsg() == 32633
        assert m.descriptions == ("VV", "VH") and m.dtypes[0] == "float32"
        got = m.read()
    block = db[0, 2:4, 4:6]
    assert abs(got[0, 1, 2] - 10 * np.log10(np.mean(10 ** (block / 10)))) < 1e-4
    three = db[0, :2, :2].ravel()[1:]
    assert abs(got[0, 0, 0] - 10 * np.log10(np.mean(10 ** (three / 10)))) < 1e-4
    assert np.isnan(got[:, 1, 1]).all()
    # the last row: one input row of the block, half the block: still valid
    assert np.isfinite(got[0, 30]).all()
    assert abs(np.nanmedian(got[0, :10, :10]) + 25.0) < 1e-3


def test_power_and_amplitude_keep_their_unit(tmp_path):
    db = _scene_db(8, 8)
    power = (10 ** (db / 10)).astype(np.float32)
    for unit, arr in (("power", power), ("amplitude", np.sqrt(power))):
        out = multilook_raster(_write(tmp_path / f"{unit}.tif", arr), tmp_path / f"{unit}_m.tif", 4)
        with rasterio.open(out) as m:
            got = m.read(1)
        expect = power[0, :4, :4].mean()
        assert abs((got[0, 0] if unit == "power" else got[0, 0] ** 2) - expect) / expect < 1e-5


def test_uncalibrated_quicklook_is_refused_naming_the_file(tmp_path):
    dn = np.random.default_rng(1).integers(1, 255, (1, 32, 32)).astype(np.uint8)
    src = _write(tmp_path / "quicklook.tif", dn, names=("VV",), nodata=0)
    with pytest.raises(InputError) as e:
        multilook_raster(src, tmp_path / "m.tif", 2)
    assert "quicklook.tif" in str(e.value) and "calibrated" in str(e.value)
    assert not (tmp_path / "m.tif").exists()


def test_resolution_factor():
    assert resolution_factor(10.0, 20) == 2 and resolution_factor(10.2, 40) == 4
    assert resolution_factor(20.0, 10) == 1
