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

#: the file dialog's filter of a product
PRODUCT_FILTER = "Sentinel-1 products (*.zip *.ZIP manifest.safe);;All files (*)"
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
