"""The Sentinel-1 fixture builder (tests/_helpers_s1.py) checked on its own, before any reader
relies on it: the reduced products' sizes, GCPs, XML consistency and manifest, the sigma0 map
recovered from the DN with the fixture's LUTs, the DN-0 border, the lake's place, and GDAL's SAFE
driver opening the result. Skipped where ../shared/data/s1_safe is absent."""
from __future__ import annotations

import hashlib
import math
import re
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from _helpers_s1 import (
    LAKE,
    LAND,
    PRODUCTS,
    expected_sigma0,
    gcp_lonlat,
    grid_points,
    image_size,
    interpolated_luts,
    lake_centre,
    lake_map,
    lake_radius,
    measurement_path,
    reduce_product,
)
from scipy.interpolate import RegularGridInterpolator

pytestmark = pytest.mark.skipif(not all(p.is_file() for p in PRODUCTS.values()),
                                reason=f"Sentinel-1 products not present at {PRODUCTS['old_noise'].parent}")

FACTOR = 8
BORDER = 5                                       # the folder variant's DN-0 border
# (lines, samples) of the full products, and at 1/8
FULL = {"old_noise": (16712, 25560), "new_noise": (16854, 25931)}
REDUCED = {"old_noise": (2089, 3195), "new_noise": (2107, 3242)}
EDITED = {"line", "pixel", "sigmaNought", "betaNought", "gamma", "dn", "noiseLut", "noiseRangeLut", "noiseAzimuthLut"}
VARIANTS = ["old_noise", "new_noise", "folder"]  # folder: new_noise as a .SAFE folder with a border


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    out = {k: reduce_product(p, tmp_path_factory.mktemp(k), factor=FACTOR) for k, p in PRODUCTS.items()}
    out["folder"] = reduce_product(PRODUCTS["new_noise"], tmp_path_factory.mktemp("folder"), factor=FACTOR,
                                   as_zip=False, dn0_border=BORDER)
    return out


def _source(variant: str) -> str:
    return "new_noise" if variant == "folder" else variant


def _border(variant: str) -> int:
    return BORDER if variant == "folder" else 0


def _files(product: Path) -> dict[str, str]:
    """{path inside the .SAFE: GDAL path} of every file of a reduced product."""
    if product.is_dir():
        return {p.relative_to(product).as_posix(): str(p) for p in product.rglob("*") if p.is_file()}
    with zipfile.ZipFile(product) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/")]
    return {n.split("/", 1)[1]: f"/vsizip/{product}/{n}" for n in names}


def _read(product: Path, rel: str) -> bytes:
    if product.is_dir():
        return (product / rel).read_bytes()
    with zipfile.ZipFile(product) as zf:
        return zf.read(f"{product.stem}.SAFE/{rel}")


def _measurements(product: Path) -> dict[str, str]:
    """{pol: GDAL path of the measurement TIFF}."""
    return {re.search(r"-(vv|vh|hh|hv)-", rel)[1].upper(): path
            for rel, path in _files(product).items() if rel.startswith("measurement/") and rel.endswith(".tiff")}


def _manifest_path(product: Path) -> str:
    return str(product / "manifest.safe") if product.is_dir() else f"/vsizip/{product}/{product.stem}.SAFE/manifest.safe"


def _ints(s: str) -> np.ndarray:
    return np.array(s.split(), dtype=np.int64)


def _floats(s: str) -> np.ndarray:
    return np.array(s.split(), dtype=np.float64)


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANTS)
def test_measurement_tiffs_match_the_annotation(built, variant):
    product = built[variant]
    h, w = image_size(product)
    assert (h, w) == REDUCED[_source(variant)]
    assert (h, w) == tuple(math.ceil(n / FACTOR) for n in FULL[_source(variant)])
    grid = grid_points(product)
    assert len(grid) == 210
    tiffs = _measurements(product)
    assert set(tiffs) == {"VV", "VH"}
    assert all(measurement_path(product, pol) == path for pol, path in tiffs.items())
    for pol, path in tiffs.items():
        with rasterio.open(path) as ds:
            assert (ds.height, ds.width, ds.count, ds.dtypes[0]) == (h, w, 1, "uint16")
            assert ds.driver == "GTiff" and ds.transform.is_identity and ds.crs is None
            assert ds.block_shapes[0] == (256, 256) and ds.compression.name.lower() == "deflate"
            gcps, crs = ds.gcps
            assert crs.to_epsg() == 4326
            assert len(gcps) == len(grid_points(product, pol))
            for g, p in zip(gcps, grid_points(product, pol)):
                assert (g.row, g.col) == (p["line"], p["pixel"])
                assert (g.x, g.y, g.z) == pytest.approx((p["longitude"], p["latitude"], p["height"]), abs=1e-9)


@pytest.mark.parametrize("variant", VARIANTS)
def test_reduced_xml_is_consistent(built, variant):
    """count attributes match their lists, positions increase strictly inside the image, noise
    azimuth blocks are disjoint, spacing x8, and the manifest's sizes and MD5s match the files."""
    product = built[variant]
    h, w = image_size(product)
    files = _files(product)
    for rel in files:
        if not (rel.startswith("annotation/") and rel.endswith(".xml")):
            continue
        root = ET.fromstring(_read(product, rel))
        for e in root.iter():                        # the lists the reduction edits
            if "count" in e.attrib and (e.tag in EDITED or e.tag.endswith("List")):
                n = len(e) if e.tag.endswith("List") else len((e.text or "").split())
                assert n == int(e.get("count")), (rel, e.tag)
        for vector in ("calibrationVector", "noiseVector", "noiseRangeVector"):
            lines = [int(v.findtext("line")) for v in root.iter(vector)]
            if not lines:
                continue
            assert lines[0] == 0 and lines[-1] == h - 1 and np.all(np.diff(lines) > 0), (rel, lines)
            for v in root.iter(vector):
                px = _ints(v.findtext("pixel"))
                assert px[0] == 0 and px[-1] == w - 1 and np.all(np.diff(px) > 0)
        blocks = sorted((int(v.findtext("firstRangeSample")), int(v.findtext("lastRangeSample")), int(v.findtext("firstAzimuthLine")),
                         int(v.findtext("lastAzimuthLine")), _ints(v.findtext("line"))) for v in root.iter("noiseAzimuthVector"))
        if blocks:
            assert blocks[0][0] == 0 and blocks[-1][1] == w - 1
            assert all(b[1] + 1 == c[0] for b, c in zip(blocks, blocks[1:])), "sub-swath blocks not contiguous in range"
            for fp, lp, fl, ll, lines in blocks:
                assert fp <= lp and 0 <= fl <= ll <= h - 1 and np.all(np.diff(lines) > 0)
        info = root.find("imageAnnotation/imageInformation")
        if info is not None:
            assert float(info.findtext("rangePixelSpacing")) == pytest.approx(10.0 * FACTOR)
            assert float(info.findtext("azimuthPixelSpacing")) == pytest.approx(10.0 * FACTOR)
            for p in root.iter("geolocationGridPoint"):
                assert 0 <= int(p.findtext("line")) < h and 0 <= int(p.findtext("pixel")) < w
    manifest = ET.fromstring(_read(product, "manifest.safe"))
    for bs in manifest.iter("byteStream"):
        rel = bs.find("fileLocation").get("href").removeprefix("./")
        data = _read(product, rel)
        assert int(bs.get("size")) == len(data), rel
        assert bs.findtext("checksum") == hashlib.md5(data).hexdigest(), rel


@pytest.mark.parametrize("variant", ["old_noise", "new_noise"])
def test_interpolated_luts_at_the_nodes(built, variant):
    """The fixture's LUT grids hold the XML values at the vectors' nodes, and A agrees with a
    second interpolation (RegularGridInterpolator, the calibration vectors sharing one pixel
    list)."""
    product = built[variant]
    files = _files(product)
    for pol in ("VV", "VH"):
        a, n = interpolated_luts(product, pol)
        cal = next(r for r in files if r.startswith("annotation/calibration/calibration-") and f"-{pol.lower()}-" in r)
        vecs = list(ET.fromstring(_read(product, cal)).iter("calibrationVector"))
        lines = np.array([int(v.findtext("line")) for v in vecs])
        pix = _ints(vecs[0].findtext("pixel"))
        assert all(np.array_equal(_ints(v.findtext("pixel")), pix) for v in vecs)
        table = np.stack([_floats(v.findtext("sigmaNought")) for v in vecs])
        np.testing.assert_allclose(a[np.ix_(lines, pix)], table, rtol=1e-12)
        rgi = RegularGridInterpolator((lines.astype(float), pix.astype(float)), table)
        yy, xx = np.mgrid[0:a.shape[0]:7, 0:a.shape[1]:5]
        np.testing.assert_allclose(a[yy, xx], rgi(np.stack([yy, xx], axis=-1).astype(float)), rtol=1e-10)

        noise = ET.fromstring(_read(product, cal.replace("/calibration-", "/noise-")))
        blocks = list(noise.iter("noiseAzimuthVector"))
        assert (len(blocks) == 3) == (variant == "new_noise")
        for v in list(noise.iter("noiseVector")) + list(noise.iter("noiseRangeVector")):
            line, px = int(v.findtext("line")), _ints(v.findtext("pixel"))
            lut = _floats(v.findtext("noiseLut") if v.find("noiseLut") is not None else v.findtext("noiseRangeLut"))
            factor = np.ones(len(px))
            for b in blocks:
                if int(b.findtext("firstAzimuthLine")) <= line <= int(b.findtext("lastAzimuthLine")):
                    inside = (px >= int(b.findtext("firstRangeSample"))) & (px <= int(b.findtext("lastRangeSample")))
                    factor[inside] = np.interp(line, _ints(b.findtext("line")), _floats(b.findtext("noiseAzimuthLut")))
            np.testing.assert_allclose(n[line, px], lut * factor, rtol=1e-12)
        assert np.all(a > 0) and np.all(n >= 0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_sigma0_recovered_from_the_dn(built, variant):
    """(DN^2 - N) / A^2 gives back the lake map: every DN is the rounding of sqrt(sigma0 A^2 + N);
    the class means are within 0.05 dB in both polarisations, and so is every pixel whose DN is
    large enough that rounding cannot move it by 0.05 dB."""
    product = built[variant]
    b = _border(variant)
    h, w = image_size(product)
    lines, pixels = np.mgrid[0:h, 0:w].astype(np.float64)
    truth = lake_map(lines, pixels)
    inner = np.zeros((h, w), bool)
    inner[b:h - b, b:w - b] = True
    lake = truth["VV"] == LAKE["VV"]
    assert 0.05 < lake.mean() < 0.2
    for pol, path in _measurements(product).items():
        with rasterio.open(path) as ds:
            dn = ds.read(1).astype(np.float64)
        a, n = interpolated_luts(product, pol)
        exact = np.sqrt(10 ** (truth[pol] / 10) * a * a + n)
        assert np.all(np.abs(dn - exact)[inner] <= 0.5 + 1e-6)
        s0 = (dn * dn - n) / (a * a)
        if variant == "folder" and pol == "VV":      # the same, NaN on the border, from the helper
            expected = expected_sigma0(product, pol)
            assert np.isnan(expected[~inner]).all() and not np.isnan(expected[inner]).any()
            np.testing.assert_array_equal(expected[inner], s0[inner])
        # how far rounding (|dDN| <= 0.5) can move sigma0, relative
        slack = (exact + 0.25) / (10 ** (truth[pol] / 10) * a * a)
        safe = inner & (slack < 0.0114)              # 10 log10(1 -+ 0.0114) within -+0.05 dB
        for cls, db, mask in (("land", LAND[pol], ~lake & inner), ("lake", LAKE[pol], lake & inner)):
            mean_db = 10 * np.log10(s0[mask].mean())
            assert abs(mean_db - db) < 0.05, (pol, cls, mean_db)
            ok = mask & safe
            if ok.any():
                err = np.abs(10 * np.log10(np.maximum(s0[ok], 1e-12)) - db)
                assert err.max() < 0.05, (pol, cls, err.max())
        if pol == "VV":                              # most of the land is safe in VV
            assert (safe & ~lake & inner).sum() > 0.9 * (~lake & inner).sum()


def test_dn0_border(built):
    product = built["folder"]
    for path in _measurements(product).values():
        with rasterio.open(path) as ds:
            dn = ds.read(1)
        b = BORDER
        edge = np.ones(dn.shape, bool)
        edge[b:-b, b:-b] = False
        assert np.all(dn[edge] == 0)
        assert np.all(dn[~edge] >= 1)
    with rasterio.open(_measurements(built["new_noise"])["VV"]) as ds:
        assert ds.read(1).min() >= 1                 # no border asked, no DN 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_lake_place_and_geolocation(built, variant):
    product = built[variant]
    h, w = image_size(product)
    cy, cx = lake_centre(product)
    assert (cy, cx) == (h / 2, w / 2) and lake_radius(product) == min(h, w) / 6
    with rasterio.open(_measurements(product)["VV"]) as ds:
        dn = ds.read(1).astype(np.float64)
    a, n = interpolated_luts(product, "VV")
    dark = (dn > 0) & ((dn * dn - n) / (a * a) < 10 ** (-15 / 10))  # half way (dB) between lake and land
    yy, xx = np.nonzero(dark)
    assert abs(yy.mean() - cy) < 0.05 and abs(xx.mean() - cx) < 0.05     # the centroid, in index coordinates
    assert abs(dark.sum() - math.pi * lake_radius(product) ** 2) < 0.01 * dark.sum()

    grid = grid_points(product)
    for p in grid[::37]:                             # the grid's own nodes come back exactly
        lon, lat = gcp_lonlat(product, p["line"], p["pixel"])
        assert (lon, lat) == pytest.approx((p["longitude"], p["latitude"]), abs=1e-9)
    lon, lat = gcp_lonlat(product, cy, cx)
    lons, lats = [p["longitude"] for p in grid], [p["latitude"] for p in grid]
    assert min(lons) < lon < max(lons) and min(lats) < lat < max(lats)
    # the centre is mid-way between the corner nodes, to the grid's curvature
    corners = {(p["line"], p["pixel"]): (p["longitude"], p["latitude"]) for p in grid}
    ends = [corners[(y, x)] for y in (0, h - 1) for x in (0, w - 1)]
    assert lon == pytest.approx(np.mean([e[0] for e in ends]), abs=0.05)
    assert lat == pytest.approx(np.mean([e[1] for e in ends]), abs=0.05)
    lons_arr, lats_arr = gcp_lonlat(product, np.array([0.0, cy]), np.array([0.0, cx]))
    assert lons_arr.shape == (2,) and lons_arr[1] == pytest.approx(lon)


@pytest.mark.parametrize("variant", VARIANTS)
def test_gdal_safe_driver_opens_it(built, variant):
    product = built[variant]
    h, w = image_size(product)
    manifest = _manifest_path(product)
    with rasterio.open(manifest) as ds:
        assert ds.driver == "SAFE"
        assert (ds.count, ds.height, ds.width) == (2, h, w)
        assert set(ds.dtypes) == {"uint16"}
        gcps, crs = ds.gcps
        assert len(gcps) == len(grid_points(product)) and crs is not None
        subs = ds.subdatasets
        assert subs == [f"SENTINEL1_CALIB:UNCALIB:{manifest}:IW_{p}:AMPLITUDE" for p in ("VH", "VV")] \
            + [f"SENTINEL1_CALIB:UNCALIB:{manifest}:IW:AMPLITUDE"]
        pols = [ds.tags(i + 1).get("POLARIZATION") for i in range(ds.count)]
        window = rasterio.windows.Window(w // 2 - 64, h // 2 - 64, 128, 128)
        for i, pol in enumerate(pols):
            with rasterio.open(_measurements(product)[pol]) as tif:
                np.testing.assert_array_equal(ds.read(i + 1, window=window), tif.read(1, window=window))
    with rasterio.open(subs[1]) as vv:
        assert vv.count == 1 and vv.tags(1).get("POLARIZATION") == "VV"
