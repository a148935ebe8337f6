"""The SAR input layer on real rasters written through GDAL, for every value domain."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.windows import Window

from crossearth_sar.core.errors import InputError
from crossearth_sar.core.scene import contracts, sar_io

RNG = np.random.default_rng(0)
UTM = CRS.from_epsg(32630)
GEO = CRS.from_epsg(4326)


def write(path, data, crs=UTM, transform=None, nodata=None, descriptions=None, driver="GTiff"):
    """Write [bands, h, w] data through rasterio and return the path."""
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    if transform is None:
        transform = from_origin(500000, 4400000, 10, 10) if crs == UTM else \
            from_origin(-3.0, 40.0, 1e-4, 1e-4)
    kw = dict(driver=driver, width=data.shape[2], height=data.shape[1], count=data.shape[0],
              dtype=data.dtype.name if data.dtype.name != "complex64" else "complex64")
    if crs is not None:
        kw.update(crs=crs, transform=transform)
    if nodata is not None:
        kw["nodata"] = nodata
    with rasterio.open(path, "w", **kw) as dst:
        dst.write(data)
        if descriptions:
            for i, d in enumerate(descriptions, 1):
                dst.set_band_description(i, d)
    return path


def speckle(h=64, w=80, looks=4):
    """Linear intensity with Gamma speckle: a dark 'water' half and a bright half."""
    mean = np.where(np.arange(w)[None, :] < w // 2, 0.01, 0.2) * np.ones((h, 1))
    return (mean * RNG.gamma(looks, 1.0 / looks, size=(h, w))).astype(np.float32)


def test_uint8_quicklook(tmp_path):
    data = (RNG.random((50, 70)) * 255).astype(np.uint8)
    p = write(tmp_path / "q.tif", data)
    with sar_io.open_scene(p) as s:   # contract 3: an estimated calibration, fixed mapping
        assert not s.calibrated and s.fixed_mapping
        q_lo, q_hi = np.percentile(data.astype(np.float32), contracts.REFERENCE_QUANTILES)
        gain, offset = s.calibration[0]
        np.testing.assert_allclose([gain * q_lo + offset, gain * q_hi + offset],
                                   contracts.REFERENCE_DB["co"], atol=1e-3)
        wd = s.read_window(Window(0, 0, 70, 50))
        lo, hi = contracts.DB_MAPPING["co"]
        np.testing.assert_allclose(wd.x[0], np.clip((gain * data + offset - lo) / (hi - lo), 0, 1),
                                   atol=1e-5)
    with sar_io.open_scene(p, contract=2) as s:
        assert s.domain == "quicklook" and s.composition == "single"
        # contract 2: quicklooks are stretched to their 1-99 % percentiles like every domain
        lo, hi = np.percentile(data.astype(np.float32), [1, 99])
        np.testing.assert_allclose(s.stats[0], [lo, hi], rtol=1e-5)
        wd = s.read_window(Window(0, 0, 70, 50))
        np.testing.assert_allclose(wd.x[0], np.clip((data - lo) / (hi - lo), 0, 1), atol=1e-6)
        np.testing.assert_array_equal(wd.x[0], wd.x[2])
        np.testing.assert_array_equal(wd.phys, wd.x[0])   # descriptors see the model input
        assert wd.valid.all()


def test_uint16_dn_is_linear(tmp_path):
    data = (speckle() * 10000).astype(np.uint16)
    p = write(tmp_path / "dn.tif", data, nodata=0)
    data[:5] = 0  # nodata rows
    with rasterio.open(p, "r+") as dst:
        dst.write(data[None])
    with sar_io.open_scene(p) as s:
        assert s.domain == "linear"
        assert s.nodata_fraction == pytest.approx(5 / 64, abs=0.01)
        wd = s.read_window(Window(0, 0, 80, 64))
        assert not wd.valid[:5].any() and wd.valid[5:].all()
        assert (wd.x[:, :5] == 0).all()
        # the dark half is darker than the bright half after the dB stretch
        assert wd.x[0, 5:, :40].mean() < wd.x[0, 5:, 40:].mean()


def test_float_linear_statistics_are_robust_percentiles(tmp_path):
    data = speckle()
    p = write(tmp_path / "lin.tif", data)
    with sar_io.open_scene(p, contract=2) as s:
        assert s.domain == "linear"
        db = 10 * np.log10(data)
        np.testing.assert_allclose(s.stats[0], np.percentile(db, [1, 99]), rtol=1e-4)
        wd = s.read_window(Window(0, 0, 80, 64))
        assert 0 <= wd.x.min() and wd.x.max() <= 1
        assert np.mean(wd.x[0] == 0) < 0.03 and np.mean(wd.x[0] == 1) < 0.03


def test_float_db_with_nan_nodata(tmp_path):
    db = 10 * np.log10(speckle())
    db[10:20, 10:20] = np.nan
    db[0, 0] = np.inf
    p = write(tmp_path / "db.tif", db, nodata=float("nan"))
    with sar_io.open_scene(p) as s:
        assert s.domain == "db"
        wd = s.read_window(Window(0, 0, 80, 64))
        assert not wd.valid[10:20, 10:20].any() and not wd.valid[0, 0]
        assert wd.valid.sum() == 64 * 80 - 101
        assert np.isfinite(wd.x).all() and np.isfinite(wd.phys).all()
        # phys is the stretched first channel; nodata is 0
        np.testing.assert_array_equal(wd.phys, wd.x[0])
        assert (wd.phys[10:20, 10:20] == 0).all()


def test_domain_override(tmp_path):
    db = 10 * np.log10(speckle())
    p = write(tmp_path / "db.tif", db)
    with sar_io.open_scene(p, domain="linear") as s:
        assert s.domain == "linear"
    with pytest.raises(InputError, match="unknown domain"):
        sar_io.open_scene(p, domain="decibel")


def test_complex_slc(tmp_path):
    amp = np.sqrt(speckle())
    phase = RNG.uniform(-np.pi, np.pi, amp.shape)
    z = (amp * np.exp(1j * phase)).astype(np.complex64)
    p = write(tmp_path / "slc.tif", z)
    with sar_io.open_scene(p, contract=2) as s:
        assert s.domain == "complex"
        wd = s.read_window(Window(0, 0, 80, 64))
        r = 20 * np.log10(np.abs(z))       # amplitude in dB, stretched 1-99 %
        lo, hi = np.percentile(r, [1, 99])
        np.testing.assert_allclose(wd.phys, np.clip((r - lo) / (hi - lo), 0, 1), atol=1e-4)
    with sar_io.open_scene(p, complex_part="real") as s:
        wd = s.read_window(Window(0, 0, 80, 64))
        np.testing.assert_array_equal(wd.phys, wd.x[0])
        assert wd.x.std() > 0


def test_dualpol_by_description_and_composition(tmp_path):
    vv, vh = 10 * np.log10(speckle()), 10 * np.log10(speckle()) - 7
    p = write(tmp_path / "vvvh.tif", np.stack([vh, vv]).astype(np.float32),
              descriptions=["VH", "VV"])
    with sar_io.open_scene(p, contract=2) as s:
        # picked by description: VV first even though it is band 2
        assert s.band_indexes == [2, 1] and s.composition == "dualpol"
        assert s.channel_names() == ["VV", "VH", "VV-VH"]
        wd = s.read_window(Window(0, 0, 80, 64))
        diff = vv - vh
        lo, hi = s.stats[2]
        np.testing.assert_allclose(wd.x[2], np.clip((diff - lo) / (hi - lo), 0, 1), atol=1e-5)
    with sar_io.open_scene(p, bands=["vh"]) as s:   # case-insensitive
        assert s.band_indexes == [1] and s.composition == "single"
    with sar_io.open_scene(p, bands=contracts.parse_bands("2")) as s:
        assert s.band_indexes == [2]
    with pytest.raises(InputError, match="no band described 'HH'"):
        sar_io.open_scene(p, bands=["HH"])
    with pytest.raises(InputError, match="band 5 does not exist"):
        sar_io.open_scene(p, bands=[5])


def test_no_crs_warns_and_geographic_pixel_size(tmp_path):
    p = write(tmp_path / "nocrs.tif", speckle(), crs=None)
    with sar_io.open_scene(p) as s:
        assert s.crs is None and s.pixel_size_m is None
        assert any("no coordinate reference system" in w for w in s.warnings)
        assert s.info()["crs"] is None
    p = write(tmp_path / "geo.tif", speckle(), crs=GEO)
    with sar_io.open_scene(p) as s:
        px, py = s.pixel_size_m
        # 1e-4 degree: ~11.1 m north-south, ~8.5 m east-west at 40 N
        assert px == pytest.approx(8.54, abs=0.05) and py == pytest.approx(11.1, abs=0.05)
        assert s.info()["crs"] == "EPSG:4326"
    p = write(tmp_path / "utm.tif", speckle(), crs=UTM)
    with sar_io.open_scene(p) as s:
        assert s.pixel_size_m == (10.0, 10.0)


def test_window_past_the_edge_is_reflect_padded_and_masked(tmp_path):
    data = (np.arange(30 * 40).reshape(30, 40) % 251).astype(np.uint8)
    p = write(tmp_path / "edge.tif", data)
    with sar_io.open_scene(p, contract=2) as s:
        wd = s.read_window(Window(32, 24, 16, 16))
        assert wd.x.shape == (3, 16, 16) and wd.valid.shape == (16, 16)
        assert wd.valid[:6, :8].all() and not wd.valid[6:].any() and not wd.valid[:, 8:].any()
        lo, hi = s.stats[0]
        np.testing.assert_allclose(wd.x[0, :6, :8], np.clip((data[24:, 32:] - lo) / (hi - lo), 0, 1),
                                   atol=1e-6)
        assert (wd.x[:, ~wd.valid] == 0).all()
        # a window entirely outside the scene is empty and invalid
        far = s.read_window(Window(100, 100, 8, 8))
        assert not far.valid.any()


def test_gcp_only_raster_is_refused(tmp_path):
    from rasterio.control import GroundControlPoint

    p = tmp_path / "gcp.tif"
    gcps = [GroundControlPoint(0, 0, -3.0, 40.0), GroundControlPoint(0, 80, -2.99, 40.0),
            GroundControlPoint(64, 0, -3.0, 39.99)]
    with rasterio.open(p, "w", driver="GTiff", width=80, height=64, count=1, dtype="float32",
                       gcps=gcps, crs=GEO) as dst:
        dst.write(speckle()[None])
    with rasterio.open(p) as src:
        if src.crs is not None:  # this GDAL reports the GCP CRS as the dataset CRS
            pytest.skip("GDAL exposes the GCP CRS as the dataset CRS here")
    with pytest.raises(InputError, match="ground control points"):
        sar_io.open_scene(p)


def test_large_scene_statistics_use_a_decimated_read(tmp_path, monkeypatch):
    """Statistics of a 3000x2500 scene come from at most 1024 px a side."""
    data = (speckle(2500, 3000) * 1000).astype(np.uint16)
    p = write(tmp_path / "big.tif", data)
    shapes = []
    real_read = rasterio.io.DatasetReader.read

    def spy(self, *a, **kw):
        out = real_read(self, *a, **kw)
        shapes.append(out.shape)
        return out

    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    with sar_io.open_scene(p) as s:
        assert s.domain == "linear"
    assert shapes and all(max(sh[-2:]) <= 1024 for sh in shapes)


@pytest.mark.parametrize("name", ["png", "bmp", "vrt"])
def test_other_gdal_formats(tmp_path, name):
    data = (RNG.random((40, 40)) * 255).astype(np.uint8)
    tif = write(tmp_path / "base.tif", data)
    if name == "vrt":
        from osgeo import gdal  # Debian's GDAL bindings are visible in the venv

        p = tmp_path / "x.vrt"
        gdal.Translate(str(p), str(tif), format="VRT")
    else:
        p = write(tmp_path / f"x.{name}", data, crs=None, driver=name.upper())
    with sar_io.open_scene(p, contract=2) as s:   # contract 2: the 1-99 % stretch
        assert s.domain == "quicklook"
        lo, hi = np.percentile(data.astype(np.float32), [1, 99])
        np.testing.assert_allclose(s.read_window(Window(0, 0, 40, 40)).x[0],
                                   np.clip((data - lo) / (hi - lo), 0, 1), atol=1e-5)


def test_bad_inputs(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        sar_io.open_scene(tmp_path / "missing.tif")
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(InputError, match="not a raster"):
        sar_io.open_scene(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="is a folder"):
        sar_io.open_scene(tmp_path)
    p = write(tmp_path / "i64.tif", np.ones((8, 8), np.int64))
    with pytest.raises(InputError, match="unsupported data type int64"):
        sar_io.open_scene(p)
    p = write(tmp_path / "empty.tif", np.full((8, 8), np.nan, np.float32), nodata=float("nan"))
    with pytest.raises(InputError, match="entirely nodata"):
        sar_io.open_scene(p)


def test_real_data_sets(shared_data):
    chip = shared_data / "sen1floods11_spain" / "Spain_7370579_S1Hand.tif"
    with sar_io.open_scene(chip) as s:
        assert s.domain == "db" and s.composition == "dualpol"
        assert s.channel_names() == ["VV", "VH", "VV-VH"]
        assert s.crs.to_epsg() == 4326
        assert 5 < s.pixel_size_m[0] < 15 and 5 < s.pixel_size_m[1] < 15
        wd = s.read_window(Window(448, 448, 128, 128))
        assert wd.valid[:64, :64].any() and not wd.valid[64:].any()
    tile = shared_data / "ombria" / "test" / "AFTER"
    first = sorted(tile.glob("*.png"))[0]
    with sar_io.open_scene(first) as s:
        assert s.domain == "quicklook" and s.width == 256
    with sar_io.open_scene(shared_data / "polsf_airsar" / "SF-AIRSAR-Pauli.bmp") as s:
        assert s.composition == "rgb" and (s.width, s.height) == (1024, 900)


def test_preferred_bands_of_a_model(tmp_path):
    vv, vh = 10 * np.log10(speckle()), 10 * np.log10(speckle()) - 7
    p = write(tmp_path / "vvvh.tif", np.stack([vv, vh]).astype(np.float32),
              descriptions=["VV", "VH"])
    with sar_io.open_scene(p, prefer=["VV"]) as s:
        assert s.band_indexes == [1] and s.composition == "single"
    with sar_io.open_scene(p, prefer=["HH"]) as s:   # absent: the default selection
        assert s.band_indexes == [1, 2]
    with sar_io.open_scene(p, bands=["VH"], prefer=["VV"]) as s:   # explicit bands win
        assert s.band_indexes == [2]
