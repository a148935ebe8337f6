"""The class raster: the uint8 value each class is written as (NODATA_CLASS = 255 is nodata),
and each class's colour as (r, g, b).

One home for every writer and reader of class rasters (the tiler, the polygons, the preview,
change products, training's label checks, the QGIS plugin); torch- and qgis-free.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..class_colors import PALETTE, is_background  # noqa: F401 (is_background: also this module's API)

NODATA_CLASS = 255   # nodata of the uint8 class raster
#: colours of classes without a usable colour: core/class_colors.py's palette, as (r, g, b)
FALLBACK_COLORS = [tuple(int(c[i:i + 2], 16) for i in (1, 3, 5)) for c in PALETTE]


def rgb(color: Any, index: int = 0) -> tuple[int, int, int]:
    """A colour as (r, g, b) 0..255 from "#rrggbb", [r, g, b] (0..255 or 0..1) or None."""
    if isinstance(color, str):
        text = color.strip().lstrip("#")
        if len(text) in (6, 8):
            return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)
    elif isinstance(color, (list, tuple)) and len(color) >= 3:
        vals = [float(v) for v in color[:3]]
        if all(0.0 <= v <= 1.0 for v in vals) and any(0.0 < v < 1.0 for v in vals):
            vals = [v * 255.0 for v in vals]
        return tuple(int(round(min(max(v, 0.0), 255.0))) for v in vals)  # type: ignore[return-value]
    return FALLBACK_COLORS[index % len(FALLBACK_COLORS)]


def raster_classes(classes: Sequence[dict]) -> list[dict]:
    """The model's classes with the value each one gets in the uint8 class raster.

    A class keeps its label value when every value fits 0..254 (255 is nodata), so a model
    trained on labels coded 10/20/30 writes 10/20/30; otherwise (e.g. water labelled 255)
    every class is written as its index 0..K-1. ``class_id`` of the polygons is that value.
    """
    values = [int(c["value"]) for c in classes]
    fits = all(0 <= v < NODATA_CLASS for v in values) and len(set(values)) == len(values)
    return [{**c, "value": v if fits else i} for i, (c, v) in enumerate(zip(classes, values))]
