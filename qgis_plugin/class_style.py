"""Styles of the result layers, read from a model file without torch.

A CrossEarth-SAR ``.safetensors`` file starts with an 8-byte little-endian header length and
a JSON header whose ``__metadata__["crossearth_sar"]`` is the model config (docs/contracts.md §4), with
``classes`` [{"name", "value", "color": "#rrggbb"}]. The class raster of ``ces segment`` holds
the values of core.products.class_raster.raster_classes (the label values when they fit 0..254, else the
class indices 0..K-1; 255 = no data); it gets a paletted style saved beside it (``NAME.qml``,
which QGIS applies whenever it opens the raster), background class transparent. The
confidence raster (float32 0..1) gets a 0..1 colour ramp; a vector format without stored
styles (GeoJSON, FlatGeobuf, Shapefile) gets the categorized style of the GeoPackage.
"""
from __future__ import annotations

import math
import os
from typing import Optional

from qgis.core import (
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsGradientColorRamp,
    QgsGradientStop,
    QgsMapLayer,
    QgsPalettedRasterRenderer,
    QgsRasterBandStats,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandGrayRenderer,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtXml import QDomDocument

from ..core.class_colors import is_background
from ..core.errors import InputError
from ..core.models import model_header
from ..core.products.class_raster import raster_classes
from ..core.products.layer_style import categorized_qml

METADATA_KEY = model_header.METADATA_KEY
# Confidence 0..1: red (unsure) through pale yellow to green (sure).
CONFIDENCE_STOPS = ((0.0, "#d7191c"), (0.5, "#ffffbf"), (1.0, "#1a9641"))
# Descriptor maps: band 1 (H_DE) from its minimum to its maximum, viridis-like.
DESCRIPTOR_STOPS = ((0.0, "#440154"), (0.5, "#21918c"), (1.0, "#fde725"))


def model_config(path: str) -> Optional[dict]:
    """The CrossEarth-SAR config in a model file's header; None when it has none
    (core/models/model_header.py: read without torch)."""
    try:
        return model_header.read_config(path)
    except (InputError, OSError):
        return None


def model_classes(path: str) -> list[dict]:
    """The classes [{"name", "value", "color"}] of a model file; [] when unreadable."""
    classes = (model_config(path) or {}).get("classes")
    return [c for c in classes or [] if isinstance(c, dict) and "value" in c]


def _save_default_style(layer: QgsRasterLayer, raster_path: str) -> Optional[str]:
    message, ok = layer.saveDefaultStyle()
    qml = os.path.splitext(raster_path)[0] + ".qml"
    return qml if ok and os.path.isfile(qml) else None


def class_palette(classes: list[dict]) -> list[QgsPalettedRasterRenderer.Class]:
    """One palette entry per class at its class-raster value; background fully transparent."""
    palette = []
    for c in raster_classes(classes):
        color = QColor(str(c.get("color") or "#808080"))
        if is_background(c):
            color.setAlpha(0)
        palette.append(QgsPalettedRasterRenderer.Class(int(c["value"]), color,
                                                       str(c.get("name", c["value"]))))
    return palette


def style_class_raster(raster_path: str, classes: list[dict]) -> Optional[str]:
    """Save a paletted style (one colour per class, no data and background transparent) as
    the raster's default style (``NAME.qml`` beside it); the .qml path, None when not possible."""
    if not classes or not os.path.isfile(raster_path):
        return None
    layer = QgsRasterLayer(raster_path, "classes", "gdal")
    if not layer.isValid():
        return None
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, class_palette(classes)))
    return _save_default_style(layer, raster_path)


def ramp_renderer(layer: QgsRasterLayer, band: int, low: float, high: float,
                  stops=CONFIDENCE_STOPS) -> QgsSingleBandPseudoColorRenderer:
    """A continuous colour ramp on ``band`` from ``low`` to ``high``; ``stops``: (fraction
    0..1, "#rrggbb") pairs, each one a legend entry labelled with its value."""
    first, last = stops[0], stops[-1]
    ramp = QgsGradientColorRamp(QColor(first[1]), QColor(last[1]), False,
                                [QgsGradientStop(f, QColor(c)) for f, c in stops[1:-1]])
    values = [low + f * (high - low) for f, _ in stops]
    items = [QgsColorRampShader.ColorRampItem(v, QColor(c), f"{v:.3g}")
             for v, (_, c) in zip(values, stops)]
    shader_function = QgsColorRampShader(low, high, ramp, QgsColorRampShader.Interpolated)
    shader_function.setColorRampItemList(items)
    shader = QgsRasterShader(low, high)
    shader.setRasterShaderFunction(shader_function)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(low)
    renderer.setClassificationMax(high)
    return renderer


def confidence_renderer(layer: QgsRasterLayer) -> QgsSingleBandPseudoColorRenderer:
    """A continuous 0..1 ramp (red: unsure, green: sure) on band 1, legend 0 .. 1."""
    return ramp_renderer(layer, 1, 0.0, 1.0, CONFIDENCE_STOPS)


def style_descriptor_raster(raster_path: str) -> Optional[str]:
    """Save a colour ramp of band 1 (H_DE, its minimum to maximum) as the default style of a
    descriptor map (not the RGB composite of three unrelated measures); .qml path or None."""
    if not os.path.isfile(raster_path):
        return None
    layer = QgsRasterLayer(raster_path, "descriptors", "gdal")
    if not layer.isValid():
        return None
    stats = layer.dataProvider().bandStatistics(1, QgsRasterBandStats.Min | QgsRasterBandStats.Max)
    low, high = float(stats.minimumValue), float(stats.maximumValue)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    if high <= low:
        high = low + 1.0
    layer.setRenderer(ramp_renderer(layer, 1, low, high, DESCRIPTOR_STOPS))
    return _save_default_style(layer, raster_path)


def style_confidence_raster(raster_path: str) -> Optional[str]:
    """Save the 0..1 confidence ramp as the raster's default style; the .qml path or None."""
    if not os.path.isfile(raster_path):
        return None
    layer = QgsRasterLayer(raster_path, "confidence", "gdal")
    if not layer.isValid():
        return None
    layer.setRenderer(confidence_renderer(layer))
    return _save_default_style(layer, raster_path)


def apply_class_style(layer: QgsMapLayer, classes: list[dict]) -> bool:
    """Give a polygon layer the categorized class style (as stored in ces's GeoPackages)."""
    if not classes:
        return False
    document = QDomDocument()
    if not document.setContent(categorized_qml(raster_classes(classes))):
        return False
    ok, _message = layer.importNamedStyle(document)
    return bool(ok)


#: the grey range a prepared Sentinel-1 scene opens with (dB): water dark, land and towns bright
DB_GREY_RANGE = (-25.0, 0.0)


def style_db_raster(raster_path: str) -> Optional[str]:
    """Save band 1 in grey from DB_GREY_RANGE as the default style of a dB scene (a prepared
    Sentinel-1 product); the .qml path or None."""
    if not os.path.isfile(raster_path):
        return None
    layer = QgsRasterLayer(raster_path, "scene", "gdal")
    if not layer.isValid():
        return None
    renderer = QgsSingleBandGrayRenderer(layer.dataProvider(), 1)
    enhancement = QgsContrastEnhancement(layer.dataProvider().dataType(1))
    enhancement.setMinimumValue(DB_GREY_RANGE[0])
    enhancement.setMaximumValue(DB_GREY_RANGE[1])
    enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
    renderer.setContrastEnhancement(enhancement)
    layer.setRenderer(renderer)
    return _save_default_style(layer, raster_path)
