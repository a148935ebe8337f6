"""Sentinel-1 GRD products in (core/scene/sentinel1): real product metadata from
../shared/data/s1_safe (both noise layouts), reduced to 1/8 of their size, with measurement
TIFFs that tests/_helpers_s1.py writes by inverting the calibration from a known sigma0 map
(land with a lake). Calibration and noise removal are checked against that map before
geocoding, geocoding against where the product's GCPs put the lake, and every form of the
product path against the others; bad products are refused in one line."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from _helpers_s1 import LAKE, LAND, PRODUCTS, gcp_lonlat, interpolated_luts, lake_centre, lake_map, lake_radius, reduce_product
from rasterio.warp import transform as warp_transform

from crossearth_sar.core.errors import InputError
from crossearth_sar.core.scene.sentinel1 import luts
from crossearth_sar.core.scene.sentinel1.prepare import prepare_product, sigma0_strip
from crossearth_sar.core.scene.sentinel1.product import find_product, is_product

pytestmark = pytest.mark.skipif(not all(p.is_file() for p in PRODUCTS.values()),
                                reason="../shared/data/s1_safe is absent")


@pytest.fixture(scope="module")
def reduced(tmp_path_factory) -> dict[str, Path]:
    """The two products at 1/8 of their size (zips), a 10-pixel DN-0 border on the new one."""
    folder = tmp_path_factory.mktemp("s1")
    return {"old_noise": reduce_product(PRODUCTS["old_noise"], folder / "old"),
            "new_noise": reduce_product(PRODUCTS["new_noise"], folder / "new", dn0_border=10)}


def _radar_sigma0(zip_path: Path, pol: str) -> tuple[np.ndarray, np.ndarray]:
    """(sigma0 dB as the reader computes it in radar geometry, DN) of a whole reduced product."""
    with find_product(zip_path) as product:
        files = product.files[pol]
        gain = luts.read_calibration(product.xml(files.calibration), files.calibration)
        noise = luts.read_noise(product.xml(files.noise), files.noise)
        with rasterio.open(product.gdal_path(files.measurement)) as src:
            dn = src.read(1)
    rows, cols = np.arange(dn.shape[0]), np.arange(dn.shape[1])
    s = sigma0_strip(dn, gain.sample(rows, cols), noise.sample(rows, cols))
    return 10 * np.log10(s), dn


def _regions(zip_path: Path, shape) -> tuple[np.ndarray, np.ndarray]:
    """(lake, land) masks of the known map, a 2-pixel margin left out at the lake's edge."""
    lines, pixels = np.mgrid[0:shape[0], 0:shape[1]]
    cl, cp = lake_centre(zip_path)
    d = np.hypot(lines - cl, pixels - cp)
    r = lake_radius(zip_path)
    return d < r - 2, d > r + 2


@pytest.mark.parametrize("layout", ["old_noise", "new_noise"])
def test_sigma0_recovered_before_geocoding(reduced, layout):
    """VV land and lake, VH land: the median of each region within 0.1 dB of the known map."""
    for pol in ("VV", "VH"):
        db, dn = _radar_sigma0(reduced[layout], pol)
        lake, land = _regions(reduced[layout], db.shape)
        valid = dn > 0
        expected = lake_map(*np.mgrid[0:db.shape[0], 0:db.shape[1]])[pol]
        assert abs(np.median(db[land & valid]) - LAND[pol]) < 0.1
        np.testing.assert_allclose(np.median(db[land & valid] - expected[land & valid]), 0.0, atol=0.1)
        if pol == "VV":
            assert abs(np.median(db[lake & valid]) - LAKE[pol]) < 0.1


@pytest.mark.parametrize("layout", ["old_noise", "new_noise"])
def test_vh_lake_within_1_db_after_noise_removal_and_far_off_without(reduced, layout):
    db, dn = _radar_sigma0(reduced[layout], "VH")
    lake, _ = _regions(reduced[layout], db.shape)
    lake &= dn > 0
    assert abs(np.median(db[lake]) - LAKE["VH"]) < 1.0
    a, _ = interpolated_luts(reduced[layout], "VH")
    without = 10 * np.log10(dn[lake].astype(np.float64) ** 2 / a[lake] ** 2)
    assert np.median(without) - LAKE["VH"] > 2.0   # the noise floor the lake would read without removal


def test_dn0_borders_are_nodata(reduced):
    db, dn = _radar_sigma0(reduced["new_noise"], "VV")
    assert (dn[:10] == 0).all() and (dn[:, -10:] == 0).all()
    np.testing.assert_array_equal(np.isnan(db), dn == 0)


def _off_centre_lake(lines, pixels):
    """Land with a lake of radius 60 px at (line 1/3, pixel 1/4 of the grid): not symmetric, so
    a flipped or mirrored output puts it elsewhere."""
    h, w = lines.max() + 1, pixels.max() + 1
    lake = np.hypot(lines - h / 3, pixels - w / 4) < 60
    return {pol: np.where(lake, LAKE[pol], LAND[pol]).astype(np.float32) for pol in LAND}


@pytest.mark.parametrize("resolution", [None, 160.0])
def test_geocoded_lake_centre_where_the_gcps_put_it(tmp_path, resolution):
    product = reduce_product(PRODUCTS["new_noise"], tmp_path / "p", sigma0_db=_off_centre_lake)
    out = tmp_path / "prepared.tif"
    result = prepare_product(product, out, resolution_m=resolution)
    assert result["looks"] == (1 if resolution is None else 2)
    with rasterio.open(out) as src:
        assert src.descriptions == ("VV", "VH") and src.crs.to_epsg() == 32736
        assert src.res == (result["resolution_m"],) * 2
        tags = src.tags()
        assert tags["PROCESSING"].startswith("sigma0, thermal noise removed, ellipsoid geocoding")
        assert tags["ORBIT_DIRECTION"] == "DESCENDING" and tags["RELATIVE_ORBIT"] == "79"
        vv = src.read(1)
        rows, cols = np.nonzero(vv < -18)
        x, y = src.transform @ (cols.mean() + 0.5, rows.mean() + 0.5)
        with rasterio.open(_measurement(product)) as m:
            h, w = m.height, m.width
        lon, lat = gcp_lonlat(product, h / 3, w / 4)
        (ex,), (ey,) = warp_transform("EPSG:4326", src.crs, [lon], [lat])
        assert np.hypot(x - ex, y - ey) < src.res[0]
        valid = vv[np.isfinite(vv)]
        assert abs(np.median(valid) - LAND["VV"]) < 0.1


def _measurement(product: Path) -> str:
    with find_product(product) as p:
        return p.gdal_path(p.files["VV"].measurement)


def test_zip_folder_manifest_and_subdataset_give_identical_outputs(reduced, tmp_path):
    z = reduced["old_noise"]
    with zipfile.ZipFile(z) as archive:
        archive.extractall(tmp_path / "unzipped")
    safe = next((tmp_path / "unzipped").glob("*.SAFE"))
    forms = {"zip": z, "folder": safe, "manifest": safe / "manifest.safe",
             "subdataset": f"SENTINEL1_DS:/vsizip/{z}/{safe.name}/manifest.safe:IW_VV",
             "calibrated_subdataset": f"SENTINEL1_CALIB:SIGMA0:{safe / 'manifest.safe'}:IW_VH:AMPLITUDE",
             "qgis_subdataset": f"SENTINEL1_CALIB:UNCALIB:/vsizip/{z}/{safe.name}/manifest.safe:IW_VV:AMPLITUDE"}
    arrays = {}
    for name, form in forms.items():
        assert is_product(form)
        out = tmp_path / f"{name}.tif"
        prepare_product(form, out, resolution_m=160.0)
        with rasterio.open(out) as src:
            arrays[name] = (src.read(), src.transform, src.crs)
    first = arrays["zip"]
    for name, (data, transform, crs) in arrays.items():
        np.testing.assert_array_equal(data, first[0], err_msg=name)
        assert transform == first[1] and crs == first[2], name


def _copy_with(src: Path, dst: Path, edit) -> Path:
    """A copy of the zip ``src`` with every member passed through ``edit(name, data)`` (None drops it)."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as b:
        for info in a.infolist():
            data = edit(info.filename, a.read(info.filename))
            if data is not None:
                b.writestr(info.filename, data)
    return dst


def _ces(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crossearth_sar.crossearth_cli.main", *args],
                          capture_output=True, text=True)


def _refused(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ces: error: "), result.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_products_are_refused_in_one_line_and_nothing_is_written(reduced, tmp_path):
    z = reduced["old_noise"]
    out = tmp_path / "out.tif"
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    cases = {
        "truncated": (truncated, ["truncated or damaged"]),
        "no pixels": (PRODUCTS["old_noise"], ["no measurement TIFF for VV, VH", "incomplete"]),
        "no noise file": (_copy_with(z, tmp_path / "nonoise.zip",
                                     lambda n, d: None if "/calibration/noise-" in n and "-vh-" in n else d),
                          ["noise-s1a-iw-grd-vh", "missing"]),
        "malformed calibration": (_copy_with(z, tmp_path / "badcal.zip",
                                             lambda n, d: d[:5000] if "/calibration/calibration-" in n else d),
                                  ["calibration-s1a-iw-grd", "malformed XML"]),
        "entities": (_copy_with(z, tmp_path / "entities.zip",
                                lambda n, d: d.replace(b"<calibration>", b'<!DOCTYPE c [<!ENTITY x "y">]><calibration>', 1)
                                if "/calibration/calibration-" in n else d), ["DTD or entities"]),
        "unknown mission": (_copy_with(z, tmp_path / "mission.zip",
                                       lambda n, d: d.replace(b">SENTINEL-1<", b">ENVISAT<")
                                       if n.endswith("manifest.safe") else d), ["ENVISAT", "not of Sentinel-1"]),
        "SLC": (_copy_with(z, tmp_path / "slc.zip",
                           lambda n, d: d.replace(b"<s1sarl1:productType>GRD<", b"<s1sarl1:productType>SLC<")
                           if n.endswith("manifest.safe") else d), ["SLC product", "GRD product"]),
        "WV": (_copy_with(z, tmp_path / "wv.zip",
                          lambda n, d: d.replace(b"<s1sarl1:mode>IW<", b"<s1sarl1:mode>WV<")
                          if n.endswith("manifest.safe") else d), ["Wave mode", "IW or EW GRD"]),
        "unknown mode": (_copy_with(z, tmp_path / "sm.zip",
                                    lambda n, d: d.replace(b"<s1sarl1:mode>IW<", b"<s1sarl1:mode>S3<")
                                    if n.endswith("manifest.safe") else d), ["acquisition mode S3"]),
    }
    for name, (product, words) in cases.items():
        _refused(_ces("prepare", str(product), "-o", str(out), "--resolution", "160"), *words)
        assert not out.exists() and not list(tmp_path.glob(".out*")), name


def test_zip_entries_outside_the_product_are_ignored(reduced, tmp_path):
    z = _copy_with(reduced["old_noise"], tmp_path / "evil.zip", lambda n, d: d)
    with zipfile.ZipFile(z, "a") as archive:
        archive.writestr("../evil.txt", b"x")
        archive.writestr("/etc/evil.txt", b"x")
    with find_product(z) as product:
        assert product.polarizations == ["VV", "VH"]
        with pytest.raises(InputError, match="outside the product"):
            product.read("../evil.txt")
    assert not (tmp_path.parent / "evil.txt").exists()


def test_ces_info_describes_a_product_and_what_prepare_would_write(reduced):
    result = _ces("info", str(PRODUCTS["new_noise"]))
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for expected in ("mission:         S1A IW GRD, VV, VH", "acquired:        2021-01-19T03:16:53.799379",
                     "orbit:           descending, relative orbit 79", "lon 32.2231..34.9795, lat -19.2035..-17.1448",
                     "size:            25931 x 16854 px at 10 m", "calibrated:      yes: product LUTs",
                     "prepared as:     14663 x 11436 px, 20 m (2 x 2 looks), EPSG:32736",
                     "no measurement TIFF for VV, VH"):
        assert expected in text, text


def test_ces_segment_on_a_product_zip(reduced, tmp_path, tiny_model):
    out = tmp_path / "flood.gpkg"
    keep = tmp_path / "prepared.tif"
    result = _ces("segment", str(reduced["new_noise"]), "-o", str(out), "--model", str(tiny_model),
                  "--resolution", "160", "--keep-prepared", str(keep), "--tile", "128", "--overlap", "32")
    assert result.returncode == 0, result.stderr
    assert out.is_file() and keep.is_file()
    with rasterio.open(keep) as src:
        assert src.tags()["PRODUCT"].endswith("_8255") and src.res == (160.0, 160.0)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []   # no temporary left


def test_resolution_finer_than_the_pixel_spacing_is_refused(reduced, tmp_path):
    _refused(_ces("prepare", str(reduced["old_noise"]), "-o", str(tmp_path / "o.tif"), "--resolution", "20"),
             "--resolution 20", "pixel spacing (80 m)")


def test_window_reads_match_whole_reads(reduced):
    """The LUTs sampled strip by strip equal the LUTs sampled at once (the reader works in strips)."""
    with find_product(reduced["new_noise"]) as product:
        files = product.files["VH"]
        noise = luts.read_noise(product.xml(files.noise), files.noise)
        width, height = product.image_size()
    cols = np.arange(width)
    whole = noise.sample(np.arange(height), cols)
    strips = np.concatenate([noise.sample(np.arange(r, min(r + 300, height)), cols) for r in range(0, height, 300)])
    np.testing.assert_array_equal(whole, strips)
    a, n = interpolated_luts(reduced["new_noise"], "VH")
    np.testing.assert_allclose(whole, n, rtol=1e-9, atol=1e-9)


def test_ces_change_on_two_products(reduced, tmp_path):
    """Before: the same ground without the lake; after: with it. The default model maps the
    lake as flood; the dates come from the products (equal here: no order warning)."""
    def dry(lines, pixels):
        return {pol: np.full(lines.shape, LAND[pol], np.float32) for pol in LAND}

    before = reduce_product(PRODUCTS["new_noise"], tmp_path / "before", sigma0_db=dry)
    out = tmp_path / "flood.gpkg"
    result = _ces("change", str(reduced["new_noise"]), "--before", str(before), "-o", str(out),
                  "--resolution", "160", "--summary")
    assert result.returncode == 0, result.stderr
    flood_km2 = float(next(line.split()[1] for line in result.stdout.splitlines() if line.strip().startswith("flood")))
    lake_km2 = np.pi * (lake_radius(reduced["new_noise"]) * 80.0) ** 2 / 1e6
    assert 0.8 * lake_km2 < flood_km2 < 1.2 * lake_km2, (flood_km2, lake_km2, result.stdout)
    assert "after the after scene" not in result.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_ces_descriptors_on_a_product(reduced, tmp_path):
    out = tmp_path / "descriptors.tif"
    result = _ces("descriptors", str(reduced["old_noise"]), "-o", str(out), "--tile", "64")
    assert result.returncode == 0, result.stderr
    with rasterio.open(out) as src:
        assert src.count == 3 and src.crs.to_epsg() == 32634 and src.res == (64 * 80.0,) * 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
