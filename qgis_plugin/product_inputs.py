"""Sentinel-1 product files as scene inputs of the map algorithms (Segment, Flood extent).

A scene parameter (a raster layer) may be left empty when its product alternative, a file
parameter, names a Sentinel-1 GRD product as downloaded: the ``.zip``, or the
``manifest.safe`` of an unzipped ``.SAFE`` folder. ``ces`` prepares the product itself
(calibration, thermal noise removal, geocoding; docs/contracts.md §3), so the product file goes
on its command line as a scene; when both are given, the product file is used.
"""
from __future__ import annotations

import os
from typing import Optional

from qgis.core import QgsProcessingException, QgsProcessingParameterFile

from ..core.scene.sentinel1.product import is_product

#: the file dialog's filter of a product
PRODUCT_FILTER = "Sentinel-1 products (*.zip *.ZIP manifest.safe);;All files (*)"
#: the progress-bar weights of a product's preparation, before the map algorithm's own stages
PREPARATION_STAGE_WEIGHTS = {"calibrate": 25.0, "geocode": 15.0}
PRODUCT_HINT = ("Choose the .zip of a Sentinel-1 GRD product as downloaded, or the manifest.safe "
                "in its unzipped .SAFE folder.")


def product_parameter(name: str, label: str) -> QgsProcessingParameterFile:
    """An optional file parameter for a product (.zip / manifest.safe)."""
    return QgsProcessingParameterFile(name, label, behavior=QgsProcessingParameterFile.File,
                                      fileFilter=PRODUCT_FILTER, optional=True)


def product_file(path: Optional[str], label: str) -> Optional[str]:
    """The product path of a product parameter's value, None when empty; an actionable
    QgsProcessingException when the file does not exist."""
    path = (path or "").strip()
    if not path:
        return None
    if not os.path.exists(path):
        raise QgsProcessingException(f"{label}: '{path}' does not exist. {PRODUCT_HINT}")
    return path


def _products(args: list[str]) -> int:
    return sum(1 for a in args if not a.startswith("-") and is_product(a))


def preparation_weights(args: list[str], weights: dict[str, float]) -> dict[str, float]:
    """``weights`` (a command's progress stages) after the preparation's stages when a scene of
    the command line ``args`` is a Sentinel-1 product (ces prepares it first)."""
    if weights and _products(args):
        return {**PREPARATION_STAGE_WEIGHTS, **weights}
    return weights


def preparation_passes(args: list[str]) -> dict[str, int]:
    """How often each preparation stage runs when ``args`` name several products."""
    n = _products(args)
    return {stage: n for stage in PREPARATION_STAGE_WEIGHTS} if n > 1 else {}
