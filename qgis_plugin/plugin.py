"""The QGIS plugin object: registers the CrossEarth-SAR Processing provider."""
from __future__ import annotations

from qgis.core import QgsApplication

from .provider import CrossEarthSARProvider


class CrossEarthSARPlugin:
    """Created by ``classFactory(iface)``; QGIS calls initProcessing/initGui/unload."""

    def __init__(self, iface=None):
        self.iface = iface
        self.provider: CrossEarthSARProvider | None = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS's name)
        """Register the provider (also called by qgis_process, which has no GUI)."""
        if self.provider is None:
            self.provider = CrossEarthSARProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()

    def unload(self) -> None:
        if self.provider is not None:
            try:
                QgsApplication.processingRegistry().removeProvider(self.provider)
            except RuntimeError:  # already deleted by QGIS (e.g. at exit)
                pass
            self.provider = None
