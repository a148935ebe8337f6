"""Class raster → polygons: sieve, polygonize, simplification, areas, formats, QGIS style."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import rasterio
import rasterio.features
import shapely
from rasterio.transform import from_origin
from scipy import ndimage

from crossearth_sar.core.errors import InputError
from crossearth_sar.core.products import class_raster, vectorize

from _helpers_segment import raster_class_areas_m2

CLASSES = [{"name": "land", "value": 0, "color": "#a0a060"},
           {"name": "water", "value": 1, "color": "#1f4fff"},
           {"name": "urban", "value": 3, "color": "#d62728"}]


def class_array(height: int = 120, width: int = 150, seed: int = 0) -> np.ndarray:
    """Blobs of classes 0/1/3 with salt-and-pepper noise and a nodata (255) corner."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    field = np.sin(xx / 9.0) + np.cos(yy / 7.0) + 0.3 * np.sin((xx * yy) / 300.0)
    arr = np.where(field > 0.6, 1, np.where(field < -0.7, 3, 0)).astype(np.uint8)
    noise = rng.random(arr.shape) < 0.02
    arr[noise] = rng.choice([0, 1, 3], size=noise.sum()).astype(np.uint8)
    arr[:15, :25] = 255
    return arr


def write_classes(path: Path, arr: np.ndarray, crs="EPSG:32630",
                  transform=from_origin(400000.0, 4500000.0, 10.0, 10.0)) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=arr.shape[1], height=arr.shape[0],
                       count=1, dtype="uint8", nodata=255, crs=crs, transform=transform) as dst:
        dst.write(arr, 1)
    return path


def write_confidence(path: Path, like: Path, seed: int = 1) -> np.ndarray:
    with rasterio.open(like) as src:
        profile = {**src.profile, "dtype": "float32", "nodata": float("nan")}
        classes = src.read(1)
    conf = np.random.default_rng(seed).uniform(0.4, 1.0, classes.shape).astype(np.float32)
    conf[classes == 255] = np.nan
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(conf, 1)
    return conf


def small_regions(arr: np.ndarray, min_pixels: int) -> int:
    """Number of 4-connected class regions (not nodata) with fewer than min_pixels pixels."""
    n = 0
    for v in np.unique(arr):
        if v == 255:
            continue
        lab, k = ndimage.label(arr == v)
        sizes = np.bincount(lab.ravel())[1:]
        n += int((sizes < min_pixels).sum())
    return n


def test_banded_sieve_equals_whole_raster_sieve(tmp_path):
    arr = class_array()
    src = write_classes(tmp_path / "c.tif", arr)
    vectorize.sieve_raster(src, tmp_path / "s.tif", 6, band_rows=23)
    with rasterio.open(tmp_path / "s.tif") as ds:
        banded = ds.read(1)
        assert ds.nodata == 255 and ds.compression is not None
    whole = rasterio.features.sieve(arr, 6, mask=arr != 255, connectivity=4)
    np.testing.assert_array_equal(banded, whole)
    assert small_regions(arr, 6) > 20 and small_regions(banded, 6) < small_regions(arr, 6) / 5
    assert (banded == 255).sum() == (arr == 255).sum()


def _check_polygons(frame: gpd.GeoDataFrame, raster: Path, tolerance: float = 0.005):
    """Valid, non-overlapping, per-class areas equal to the raster's within ``tolerance``."""
    assert frame.geometry.is_valid.all()
    geoms = frame.geometry.values
    tree = shapely.STRtree(geoms)
    left, right = tree.query(geoms, predicate="intersects")
    pairs = left < right
    overlap = shapely.area(shapely.intersection(geoms[left[pairs]], geoms[right[pairs]]))
    assert overlap.sum() <= 1e-9 * shapely.area(geoms).sum()
    expected = raster_class_areas_m2(raster)
    names = {c["value"]: c["name"] for c in CLASSES}
    for value, area in expected.items():
        got = frame.loc[frame.class_id == value, "area_m2"].sum()
        assert got == pytest.approx(area, rel=tolerance), names[value]
        assert set(frame.loc[frame.class_id == value, "class_name"]) == {names[value]}


def test_vectorize_projected_gpkg(tmp_path):
    arr = class_array()
    raw = write_classes(tmp_path / "c.tif", arr)
    vectorize.sieve_raster(raw, tmp_path / "s.tif", 4)
    conf = write_confidence(tmp_path / "conf.tif", tmp_path / "s.tif")
    out = tmp_path / "out.gpkg"
    summary = vectorize.vectorize(tmp_path / "s.tif", out, CLASSES,
                                  confidence_raster=tmp_path / "conf.tif", simplify=10.0)
    frame = gpd.read_file(out, layer=vectorize.LAYER)
    assert list(frame.columns[:4]) == ["class_id", "class_name", "area_m2", "mean_confidence"]
    assert len(frame) == summary["polygons"] > 10
    assert pyproj.CRS(frame.crs) == pyproj.CRS("EPSG:32630")
    _check_polygons(frame, tmp_path / "s.tif")
    # mean confidence of the biggest polygon = mean of the raster under its exact pixels
    geoms, values = vectorize.polygonize(tmp_path / "s.tif")
    means, counts = vectorize.zonal_mean(geoms, tmp_path / "conf.tif", band_rows=17)
    with rasterio.open(tmp_path / "s.tif") as ds:
        big = int(np.argmax(counts))
        mask = rasterio.features.geometry_mask([geoms[big]], arr.shape, ds.transform, invert=True)
    assert counts[big] == mask.sum()
    assert means[big] == pytest.approx(float(np.nanmean(conf[mask].astype(np.float64))), rel=1e-9)
    assert frame.mean_confidence.between(0.4, 1.0).all()
    # the QGIS style is stored as the layer's default
    with sqlite3.connect(out) as con:
        rows = con.execute("SELECT f_table_name, f_geometry_column, useAsDefault, styleQML "
                           "FROM layer_styles").fetchall()
    assert len(rows) == 1 and rows[0][0] == "landcover" and rows[0][2] == 1
    qml = rows[0][3]
    assert 'type="categorizedSymbol"' in qml and 'attr="class_name"' in qml
    for c in CLASSES:
        r, g, b = class_raster.rgb(c["color"])
        assert f'value="{c["name"]}"' in qml and f'value="{r},{g},{b},255"' in qml


def test_geodesic_areas_on_a_geographic_crs(tmp_path):
    arr = class_array(60, 80, seed=3)
    transform = from_origin(-0.78, 38.13, 9e-5, 9e-5)
    raw = write_classes(tmp_path / "g.tif", arr, crs="EPSG:4326", transform=transform)
    vectorize.sieve_raster(raw, tmp_path / "s.tif", 3)
    out = tmp_path / "g.gpkg"
    vectorize.vectorize(tmp_path / "s.tif", out, CLASSES, simplify=0.0)
    frame = gpd.read_file(out, layer="landcover")
    assert pyproj.CRS(frame.crs).is_geographic
    # independent expectation: each pixel row's geodesic area times its class counts
    # (graticule pixel edges vs geodesic edges differ by ~1e-6)
    geod = pyproj.Geod(ellps="WGS84")
    with rasterio.open(tmp_path / "s.tif") as ds:
        sieved = ds.read(1)
    expected = {}
    for r in range(sieved.shape[0]):
        y0, y1 = 38.13 - r * 9e-5, 38.13 - (r + 1) * 9e-5
        px = abs(geod.polygon_area_perimeter([0, 9e-5, 9e-5, 0], [y0, y0, y1, y1])[0])
        for v in (0, 1, 3):
            expected[v] = expected.get(v, 0.0) + px * (sieved[r] == v).sum()
    for v, area in expected.items():
        assert frame.loc[frame.class_id == v, "area_m2"].sum() == pytest.approx(area, rel=1e-5)
    assert 70 < frame.area_m2.sum() / (sieved != 255).sum() < 90  # ~7.9 m × 10 m pixels, in m²


@pytest.mark.parametrize("ext", [".geojson", ".fgb", ".shp"])
def test_other_vector_formats(tmp_path, ext):
    raw = write_classes(tmp_path / "c.tif", class_array(50, 60, seed=5))
    out = tmp_path / f"out{ext}"
    summary = vectorize.vectorize(raw, out, CLASSES, simplify=0.0)
    frame = gpd.read_file(out)
    assert len(frame) == summary["polygons"] > 0
    assert {"class_id", "class_name", "area_m2"} <= set(frame.columns)
    assert pyproj.CRS(frame.crs) == pyproj.CRS("EPSG:32630")


def test_unknown_extension_and_parquet(tmp_path):
    with pytest.raises(InputError, match="unknown vector format"):
        vectorize.vector_format(tmp_path / "x.kml")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="pyarrow"):
            vectorize.vector_format(tmp_path / "x.parquet")
    else:
        assert vectorize.vector_format(tmp_path / "x.parquet") == "Parquet"


def test_colours_accept_common_forms():
    assert class_raster.rgb("#1f4fff") == (31, 79, 255)
    assert class_raster.rgb([31, 79, 255]) == (31, 79, 255)
    assert class_raster.rgb([0.0, 0.5, 1.0]) == (0, 128, 255)
    assert class_raster.rgb(None, 1) == class_raster.FALLBACK_COLORS[1]
