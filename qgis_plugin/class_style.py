"""Class colours for raster outputs, read from a model file without torch.

A CrossEarth-SAR ``.safetensors`` file starts with an 8-byte little-endian header length and
a JSON header whose ``__metadata__["crossearth_sar"]`` is the model config (DESIGN §4), with
``classes`` [{"name", "value", "color": "#rrggbb"}]. The class raster of ``ces segment`` holds
those values (255 = no data); it gets a paletted style saved beside it (``NAME.qml``), which
QGIS applies whenever it opens the raster.
"""
from __future__ import annotations

import json
import os
import struct
from typing import Optional

from qgis.core import QgsPalettedRasterRenderer, QgsRasterLayer
from qgis.PyQt.QtGui import QColor

METADATA_KEY = "crossearth_sar"      # as core/checkpoints.py
MAX_HEADER_BYTES = 100 * 1024 * 1024


def model_classes(path: str) -> list[dict]:
    """The classes [{"name", "value", "color"}] of a model file; [] when unreadable."""
    try:
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if not 0 < length <= MAX_HEADER_BYTES:
                return []
            header = json.loads(f.read(length).decode("utf-8"))
        config = json.loads(header.get("__metadata__", {}).get(METADATA_KEY, "{}"))
    except (OSError, ValueError, struct.error, AttributeError):
        return []
    classes = config.get("classes") if isinstance(config, dict) else None
    return [c for c in classes or [] if isinstance(c, dict) and "value" in c]


def style_class_raster(raster_path: str, classes: list[dict]) -> Optional[str]:
    """Save a paletted style (one colour per class, no data transparent) as the raster's
    default style (``NAME.qml`` beside it); returns the .qml path, None when not possible."""
    if not classes or not os.path.isfile(raster_path):
        return None
    layer = QgsRasterLayer(raster_path, "classes", "gdal")
    if not layer.isValid():
        return None
    palette = [QgsPalettedRasterRenderer.Class(int(c["value"]), QColor(str(c.get("color") or "#808080")),
                                               str(c.get("name", c["value"])))
               for c in classes]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, palette))
    message, ok = layer.saveDefaultStyle()
    del layer
    qml = os.path.splitext(raster_path)[0] + ".qml"
    return qml if ok and os.path.isfile(qml) else None
