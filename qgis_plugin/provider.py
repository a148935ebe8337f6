"""The Processing provider "CrossEarth-SAR" (id ``crossearth_sar``) and its one setting."""
from __future__ import annotations

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..version import __version__
from .ces_process import SETTING_CES_EXECUTABLE
from .change_algorithm import ChangeAlgorithm
from .descriptors_algorithm import DescriptorsAlgorithm
from .engine_algorithm import EngineSetupAlgorithm
from .evaluate_algorithm import EvaluateAlgorithm
from .finetune_algorithm import FinetuneAlgorithm
from .prepare_algorithm import PrepareAlgorithm
from .segment_algorithm import SegmentAlgorithm

ICON_PATH = os.path.join(os.path.dirname(__file__), "icon.svg")
ALGORITHMS = (SegmentAlgorithm, ChangeAlgorithm, PrepareAlgorithm, DescriptorsAlgorithm, FinetuneAlgorithm,
              EvaluateAlgorithm, EngineSetupAlgorithm)
PROVIDER_ID = "crossearth_sar"


def _processing_config():
    """ProcessingConfig and Setting of QGIS's processing plugin, or (None, None) without it."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig, Setting
    except ImportError:
        return None, None
    return ProcessingConfig, Setting


class CrossEarthSARProvider(QgsProcessingProvider):
    """Segment SAR scenes, compute SAR descriptors, fine-tune and evaluate, by running ``ces``."""

    def id(self) -> str:  # noqa: A003 (QGIS's name)
        return PROVIDER_ID

    def name(self) -> str:
        return "CrossEarth-SAR"

    def longName(self) -> str:  # noqa: N802
        return f"CrossEarth-SAR {__version__} (SAR land-cover segmentation)"

    def versionInfo(self) -> str:  # noqa: N802
        return __version__

    def icon(self) -> QIcon:
        return QIcon(ICON_PATH)

    def svgIconPath(self) -> str:  # noqa: N802
        return ICON_PATH

    def load(self) -> bool:
        config, setting = _processing_config()
        if config is not None:
            config.settingIcons[self.name()] = self.icon()
            config.addSetting(setting(
                self.name(), SETTING_CES_EXECUTABLE,
                "ces executable (empty: automatic)",
                "", valuetype=setting.FILE))
            config.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        config, _ = _processing_config()
        if config is not None and SETTING_CES_EXECUTABLE in config.settings:
            config.removeSetting(SETTING_CES_EXECUTABLE)

    def loadAlgorithms(self) -> None:  # noqa: N802
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm())

    # ces writes files itself: no "Save to GeoPackage"/PostGIS destinations, only its formats.
    def supportsNonFileBasedOutput(self) -> bool:  # noqa: N802
        return False

    def supportedOutputVectorLayerExtensions(self) -> list[str]:  # noqa: N802
        return ["gpkg", "fgb", "geojson", "shp"]

    def supportedOutputRasterLayerExtensions(self) -> list[str]:  # noqa: N802
        return ["tif"]

    def defaultVectorFileExtension(self, hasGeometry: bool = True) -> str:  # noqa: N802,N803
        return "gpkg"

    def defaultRasterFileExtension(self) -> str:  # noqa: N802
        return "tif"
