"""The size of a scene's pixels on the ground: one home for every face (``ces info``, areas of
polygons and classes, the sieve's and the simplification's lengths).

Sizes in metres of the pixel at the scene centre: geodesic on the CRS's own ellipsoid for
geographic CRSs, the CRS's linear unit times the transform's column / row vector lengths
otherwise (so a rotated grid is measured along its own axes); CRS units when there is no CRS.
"""
from __future__ import annotations

import math


def is_geographic(crs) -> bool:
    """True for a geographic (longitude / latitude) CRS; False for projected or no CRS."""
    return crs is not None and bool(getattr(crs, "is_geographic", False))


def geod_of(crs):
    """The pyproj Geod of a geographic CRS's own ellipsoid."""
    import pyproj

    return pyproj.CRS.from_user_input(crs.to_wkt()).get_geod()


def unit_factor(crs) -> float:
    """Metres per CRS linear unit (1 when unknown or no CRS)."""
    if crs is None:
        return 1.0
    try:
        return float(crs.linear_units_factor[1])
    except Exception:
        return 1.0


def pixel_size_m(crs, transform, width: int, height: int) -> tuple[float, float]:
    """(x, y) size in metres of the pixel at the centre of a ``width`` × ``height`` grid."""
    if is_geographic(crs):
        geod = geod_of(crs)
        cx, cy = transform @ (width / 2.0, height / 2.0)
        ex, ey = transform @ (width / 2.0 + 1, height / 2.0)
        sx, sy = transform @ (width / 2.0, height / 2.0 + 1)
        cy, ey, sy = (max(min(v, 89.9), -89.9) for v in (cy, ey, sy))
        return (geod.inv(cx, cy, ex, ey)[2], geod.inv(cx, cy, sx, sy)[2])
    f = unit_factor(crs)
    return (math.hypot(transform.a, transform.d) * f, math.hypot(transform.b, transform.e) * f)


def pixel_area_m2(crs, transform, width: int, height: int) -> float:
    """Area in m² of the pixel at the scene centre."""
    sx, sy = pixel_size_m(crs, transform, width, height)
    return sx * sy


def metres_to_crs_units(metres: float, crs, transform, width: int, height: int) -> float:
    """A length in metres as CRS units (degrees on geographic CRSs, at the scene centre)."""
    if is_geographic(crs):
        sx, _ = pixel_size_m(crs, transform, width, height)
        return metres / max(sx, 1e-12) * math.hypot(transform.a, transform.d)
    return metres / unit_factor(crs)
