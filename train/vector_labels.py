"""Vector labels: labelled polygons rasterized onto a scene's grid as class indices.

One vector file (GPKG, SHP, GeoJSON, FlatGeobuf ...) of polygons with a class field
(given, or found by a usual name: :data:`CLASS_FIELD_CANDIDATES`). The polygons are
reprojected to the scene's CRS when they differ and burnt into a uint8 [H, W] raster of class
indices (through a :class:`~.classes.ClassSpec`); unlabelled pixels are 255 (ignored), and
later polygons win where polygons overlap.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..core.errors import InputError, parameter
from ..core.scene import sar_io
from .classes import IGNORE_INDEX, ClassSpec

CLASS_FIELD_CANDIDATES = ("class", "class_id", "classid", "class_value", "label", "value",
                          "class_name", "classname", "category", "landcover", "type")


def find_class_field(columns: Sequence[str], path: Path, class_field: Optional[str]) -> str:
    """The vector field that holds the class (given, or a usual name); InputError if none."""
    cols = [c for c in columns if c != "geometry"]
    if class_field:
        if class_field not in cols:
            raise InputError(f"{path}: no field {class_field!r} (fields: {', '.join(cols) or 'none'})")
        return class_field
    lower = {c.lower(): c for c in cols}
    for cand in CLASS_FIELD_CANDIDATES:
        if cand in lower:
            return lower[cand]
    raise InputError(f"{path}: no class field found (fields: {', '.join(cols) or 'none'}); "
                     f"name it with {parameter('class_field')}")


def read_vector(path: Path, class_field: Optional[str] = None):
    """(GeoDataFrame of polygons with a non-null class, the class field name)."""
    import geopandas as gpd

    try:
        gdf = gpd.read_file(path)
    except Exception as e:
        raise InputError(f"{path}: not a vector file GDAL can read ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    fld = find_class_field(list(gdf.columns), path, class_field)
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty & gdf[fld].notna()]
    gdf = gdf[gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if len(gdf) == 0:
        raise InputError(f"{path}: contains no labelled polygons (field {fld!r})")
    if gdf.crs is None:
        raise InputError(f"{path}: vector labels have no CRS")
    return gdf, fld


def vector_class_values(gdf, fld: str) -> list[Any]:
    """Distinct class values of the field (ints where integral, else strings)."""
    out = set()
    for v in gdf[fld].unique():
        if isinstance(v, str):
            try:
                out.add(int(v))
            except ValueError:
                out.add(v)
        else:
            out.add(int(v))
    return sorted(out, key=lambda v: (isinstance(v, str), v))


def rasterize_labels(gdf, fld: str, scene: sar_io.SarScene, classes: ClassSpec,
                     vector_path: Path) -> np.ndarray:
    """Class indices uint8 [H, W] of the polygons on the scene's grid (reprojected to the
    scene CRS when it differs), 255 where unlabelled; later polygons win on overlaps."""
    from rasterio import features

    if scene.crs is None:
        raise InputError(f"{scene.path}: has no CRS, so vector labels {vector_path.name} "
                         f"cannot be placed on it")
    if gdf.crs != scene.crs:
        gdf = gdf.to_crs(scene.crs)
    where = f"{vector_path}: "
    shapes = [(geom, classes.index_of(val if isinstance(val, str) else int(val), where))
              for geom, val in zip(gdf.geometry, gdf[fld])]
    shapes = [(g, i) for g, i in shapes if i != IGNORE_INDEX]
    if not shapes:
        return np.full((scene.height, scene.width), IGNORE_INDEX, np.uint8)
    return features.rasterize(shapes, out_shape=(scene.height, scene.width),
                              transform=scene.transform, fill=IGNORE_INDEX, dtype="uint8")
