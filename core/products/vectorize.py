"""Class raster → clean land-cover polygons → a vector file (docs/contracts.md §6).

Steps, each streaming over the raster in bands of rows (memory O(width × band), never the
whole scene):

1. :func:`sieve_raster`: GDAL's sieve (via rasterio) on row bands with a halo as tall as the
   sieve size, so every region smaller than ``min_pixels`` is complete inside its band and
   merged exactly as a whole-raster sieve would; regions are 4-connected.
2. :func:`polygonize`: GDAL polygonize of the written band (``rasterio.features.shapes`` on
   ``rasterio.band(...)``); nodata (255) regions are dropped.
3. :func:`zonal_mean`: mean confidence per polygon, by rasterizing the polygons band by band.
4. :func:`simplify_coverage`: ``shapely.coverage_simplify`` (neighbours keep shared edges).
5. :func:`polygon_areas_m2`: geodesic areas (pyproj.Geod) on geographic CRSs, planar × the
   unit factor² on projected ones.
6. :func:`write_vector`: layer ``landcover`` with ``class_id``, ``class_name``, ``area_m2``,
   ``mean_confidence``; format by extension; GeoPackages get the QGIS style.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import rasterio
import rasterio.features
import shapely
from rasterio.windows import Window

from ..errors import InputError
from ..progress import ProgressCallback, ensure
from ..scene.pixel_size import geod_of, is_geographic, unit_factor
from . import layer_style
from .class_raster import NODATA_CLASS

LAYER = "landcover"
# GeoPackage 1.2: read without warnings by the GDAL of QGIS 3.22 (GDAL >= 3.3 writes 1.4 by
# default, which older GDALs report as only partially supported).
GPKG_VERSION = "1.2"
VECTOR_FORMATS = {".gpkg": "GPKG", ".geojson": "GeoJSON", ".fgb": "FlatGeobuf",
                  ".shp": "ESRI Shapefile", ".parquet": "Parquet"}
BAND_PIXELS = 1 << 20  # pixels per band of rows read at a time (1 Mpx: O(width) memory)
# temporary rasters: strips of 16 rows (full-width bands are how every step reads them)
TEMP_RASTER_PROFILE = {"driver": "GTiff", "tiled": False, "blockysize": 16,
                       "compress": "deflate", "predictor": 1, "bigtiff": "if_safer"}


def rows_per_band(width: int, band_pixels: int = BAND_PIXELS) -> int:
    """Rows per band so that a band holds about ``band_pixels`` pixels (16..4096 rows)."""
    return int(min(max(band_pixels // max(width, 1), 16), 4096))


# -- formats -------------------------------------------------------------------------------
def vector_format(path: str | os.PathLike) -> str:
    """The OGR driver name for an output path, by extension (InputError if unknown)."""
    ext = Path(path).suffix.lower()
    if ext not in VECTOR_FORMATS:
        raise InputError(f"{path}: unknown vector format {ext or '(no extension)'!r} "
                         f"(use one of {', '.join(VECTOR_FORMATS)})")
    if ext == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise InputError(f"{path}: GeoParquet output needs the pyarrow package "
                             f"(pip install pyarrow), or use .gpkg") from None
    return VECTOR_FORMATS[ext]


# -- raster steps --------------------------------------------------------------------------
def sieve_raster(src_path: str | os.PathLike, dst_path: str | os.PathLike, min_pixels: int,
                 band_rows: Optional[int] = None, progress: Optional[ProgressCallback] = None) -> None:
    """Write ``src`` with 4-connected regions smaller than ``min_pixels`` merged into their
    largest neighbour (GDAL sieve) to ``dst`` (tiled, deflate GeoTIFF, nodata 255)."""
    progress = ensure(progress)
    min_pixels = max(int(min_pixels), 0)
    with rasterio.open(src_path) as src:
        band_rows = band_rows or rows_per_band(src.width)
        profile = {**TEMP_RASTER_PROFILE, "width": src.width, "height": src.height, "count": 1,
                   "dtype": "uint8", "nodata": NODATA_CLASS, "crs": src.crs,
                   "transform": src.transform}
        halo = min(min_pixels, src.height)
        total = math.ceil(src.height / band_rows)
        with rasterio.open(dst_path, "w", **profile) as dst:
            for i, r0 in enumerate(range(0, src.height, band_rows)):
                r1 = min(r0 + band_rows, src.height)
                a0, a1 = max(0, r0 - halo), min(src.height, r1 + halo)
                arr = src.read(1, window=Window(0, a0, src.width, a1 - a0))
                if min_pixels > 1:
                    arr = rasterio.features.sieve(arr, min_pixels, mask=arr != NODATA_CLASS,
                                                  connectivity=4)
                dst.write(arr[r0 - a0:r1 - a0], 1, window=Window(0, r0, src.width, r1 - r0))
                progress("sieve", i + 1, total)


def polygonize(class_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Polygons of the 4-connected regions of a class raster: (geometries, class values).

    Runs GDAL polygonize on the band itself (the raster is never loaded whole); nodata
    regions are dropped.
    """
    geoms, values = [], []
    with rasterio.open(class_path) as src:
        for geom, value in rasterio.features.shapes(rasterio.band(src, 1), connectivity=4,
                                                     transform=src.transform):
            if int(value) == NODATA_CLASS:
                continue
            geoms.append(shapely.geometry.shape(geom))
            values.append(int(value))
    return np.array(geoms, dtype=object), np.array(values, dtype=np.int32)


def zonal_mean(geoms: np.ndarray, raster_path: str | os.PathLike,
               band_rows: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean of a raster's finite values inside each polygon: (means float64 [N], pixels int64 [N]).

    The polygons are rasterized (pixel centres) band by band; polygons follow pixel edges,
    so each pixel belongs to exactly one of them.
    """
    n = len(geoms)
    sums = np.zeros(n, np.float64)
    counts = np.zeros(n, np.int64)
    if n == 0:
        return sums, counts
    with rasterio.open(raster_path) as src:
        band_rows = band_rows or rows_per_band(src.width)
        inv = ~src.transform
        b = shapely.bounds(geoms)
        corner_rows = np.stack([inv.d * b[:, i] + inv.e * b[:, j] + inv.f
                                for i, j in ((0, 1), (0, 3), (2, 1), (2, 3))])
        rmin, rmax = np.floor(corner_rows.min(0)), np.ceil(corner_rows.max(0))
        for r0 in range(0, src.height, band_rows):
            h = min(band_rows, src.height - r0)
            idx = np.nonzero((rmin < r0 + h) & (rmax > r0))[0]
            if idx.size == 0:
                continue
            win = Window(0, r0, src.width, h)
            ids = rasterio.features.rasterize(
                zip(geoms[idx], idx.tolist()), out_shape=(h, src.width), fill=-1,
                transform=src.window_transform(win), dtype="int32")
            vals = src.read(1, window=win, masked=False).astype(np.float64)
            ok = (ids >= 0) & np.isfinite(vals)
            if src.nodata is not None and np.isfinite(src.nodata):
                ok &= vals != src.nodata
            sums += np.bincount(ids[ok], weights=vals[ok], minlength=n)
            counts += np.bincount(ids[ok], minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan), counts


# -- vector steps --------------------------------------------------------------------------
def _polygons_only(geom):
    """make_valid's result reduced to its (multi)polygon part."""
    geom = shapely.make_valid(geom)
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type in ("Polygon", "MultiPolygon")]
    return shapely.union_all(parts) if parts else shapely.Polygon()


def simplify_coverage(geoms: np.ndarray, tolerance: float) -> np.ndarray:
    """Coverage-preserving simplification (shared edges stay shared); valid polygons out."""
    if tolerance > 0 and len(geoms):
        geoms = shapely.coverage_simplify(geoms, tolerance)
    bad = ~shapely.is_valid(geoms)
    if bad.any():
        geoms = geoms.copy()
        geoms[bad] = [_polygons_only(g) for g in geoms[bad]]
    return geoms


def polygon_areas_m2(geoms: np.ndarray, crs, geodesic: bool = False) -> np.ndarray:
    """Areas in m²: geodesic (the CRS's ellipsoid) on geographic CRSs, else planar; with
    ``geodesic``, geodesic in projected CRSs too (the polygons taken to the CRS's geodetic
    CRS first)."""
    if crs is not None and geodesic and not is_geographic(crs):
        import pyproj

        projected = pyproj.CRS.from_user_input(crs.to_wkt())
        to_geo = pyproj.Transformer.from_crs(projected, projected.geodetic_crs, always_xy=True)
        geoms = shapely.transform(
            geoms, lambda xy: np.column_stack(to_geo.transform(xy[:, 0], xy[:, 1])))
        crs = projected.geodetic_crs
    if not is_geographic(crs):
        return shapely.area(geoms) * unit_factor(crs) ** 2
    geod = geod_of(crs)
    oriented = shapely.orient_polygons(geoms)  # exterior CCW, holes CW: positive areas
    return np.array([abs(geod.geometry_area_perimeter(g)[0]) for g in oriented], np.float64)


def class_table(classes: Sequence[dict]) -> dict[int, dict]:
    """{raster value: class dict} from the model's classes [{"name", "value", "color"}]."""
    return {int(c.get("value", i)): {**c, "name": str(c.get("name", c.get("value", i)))}
            for i, c in enumerate(classes)}


def write_vector(frame, path: str | os.PathLike, classes: Sequence[dict], driver: str) -> None:
    """Write a GeoDataFrame to ``path`` (no atomicity here: pass a temporary path)."""
    import warnings

    if driver == "Parquet":
        frame.to_parquet(path)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. shapefile field-name truncation
        kwargs: dict[str, Any] = {"driver": driver}
        if driver in ("GPKG", "FlatGeobuf"):
            kwargs["layer"] = LAYER
        if driver == "GPKG":
            kwargs["VERSION"] = GPKG_VERSION
        frame.to_file(path, **kwargs)
    if driver == "GPKG":
        layer_style.write_gpkg_style(path, LAYER, layer_style.categorized_qml(classes))


def vectorize(class_raster: str | os.PathLike, out_path: str | os.PathLike,
              classes: Sequence[dict], *, confidence_raster: Optional[str | os.PathLike] = None,
              simplify: float = 0.0, progress: Optional[ProgressCallback] = None,
              geodesic: bool = False) -> dict:
    """Polygonize an (already sieved) class raster into ``out_path`` (written directly).

    ``simplify``: tolerance in CRS units (0 = exact pixel edges); ``geodesic``: areas geodesic
    in projected CRSs too (:func:`polygon_areas_m2`). Returns a summary:
    {"polygons": N, "class_area_m2": {name: m²}, "crs": wkt or None}.
    """
    import geopandas as gpd

    progress = ensure(progress)
    driver = vector_format(out_path)
    table = class_table(classes)
    with rasterio.open(class_raster) as src:
        crs = src.crs
    progress("vectorize", 0, 4)
    geoms, values = polygonize(class_raster)
    progress("vectorize", 1, 4)
    if confidence_raster is not None:
        mean_conf, _ = zonal_mean(geoms, confidence_raster)
    else:
        mean_conf = np.full(len(geoms), np.nan)
    progress("vectorize", 2, 4)
    geoms = simplify_coverage(geoms, simplify)
    keep = ~shapely.is_empty(geoms)
    geoms, values, mean_conf = geoms[keep], values[keep], mean_conf[keep]
    areas = polygon_areas_m2(geoms, crs, geodesic)
    progress("vectorize", 3, 4)
    names = [table.get(int(v), {"name": str(int(v))})["name"] for v in values]
    frame = gpd.GeoDataFrame(
        {"class_id": values.astype(np.int32), "class_name": names,
         "area_m2": areas.astype(np.float64), "mean_confidence": mean_conf.astype(np.float64)},
        geometry=list(geoms), crs=crs.to_wkt() if crs is not None else None)
    write_vector(frame, out_path, classes, driver)
    progress("vectorize", 4, 4)
    class_area = {}
    for c in table.values():
        class_area[c["name"]] = float(areas[np.array(names, dtype=object) == c["name"]].sum()) \
            if len(names) else 0.0
    return {"polygons": int(len(frame)), "class_area_m2": class_area}
