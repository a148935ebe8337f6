"""Prepare a Sentinel-1 GRD product as a calibrated dB GeoTIFF (``ces prepare``)."""
from __future__ import annotations

import os

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterDestination,
)

from .algorithm_base import CesAlgorithm
from .ces_arguments import RESOLUTION_OPTIONS, prepare_arguments
from .class_style import style_db_raster
from .product_inputs import PRODUCT_FILTER

HELP = """<p>Turns a Sentinel-1 GRD product as it is downloaded from the Copernicus Browser
(the <i>.zip</i>, or the <i>manifest.safe</i> of the unzipped <i>.SAFE</i> folder) into a
radar image that every CrossEarth-SAR tool reads as calibrated backscatter: no ESA SNAP
needed.</p>
<p>What it does: calibration to sigma0 with the product's own tables, removal of the thermal
noise (which decides water in VH), border noise as no data, a multilook to the chosen
<b>pixel size</b> (20 m: about the resolution of IW GRD, four times fewer pixels than the
10 m grid), and geocoding from the product's ground control points onto the UTM zone of the
scene. The result has one band per polarization (VV, VH) in dB and opens in grey from
&minus;25 to 0 dB.</p>
<p>The geocoding is on the ellipsoid, not a terrain correction: flat floodplains are placed
within a pixel, but in mountains positions shift by about the height difference divided by
the tangent of the incidence angle. <i>Segment</i> and <i>Flood extent</i> take products
directly and prepare them themselves.</p>
<p>Cancel stops within seconds and leaves no partial file.</p>
"""


class PrepareAlgorithm(CesAlgorithm):
    """``ces prepare PRODUCT -o OUT.tif --resolution R``."""
    NAME = "prepare"
    DISPLAY_NAME = "Prepare Sentinel-1 product (calibrate, denoise, geocode)"
    SHORT = "Turns a downloaded Sentinel-1 GRD product into a calibrated, noise-free, geocoded dB GeoTIFF."
    README_SECTION = "Prepare Sentinel-1 product"
    GROUP = "Land cover"
    GROUP_ID = "landcover"
    HELP = HELP
    TAGS = ("sar", "radar", "sentinel-1", "grd", "safe", "calibration", "sigma0", "noise", "geocode",
            "copernicus", "crossearth")

    COMMAND = "prepare"
    INPUT, RESOLUTION, OUTPUT = "INPUT", "RESOLUTION", "OUTPUT"
    STAGE_WEIGHTS = {"calibrate": 60.0, "geocode": 40.0}
    PARAMETERS = {"resolution": RESOLUTION}

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(
            self.INPUT, self.tr("Sentinel-1 product (zip or SAFE)"),
            behavior=QgsProcessingParameterFile.File, fileFilter=PRODUCT_FILTER))
        self.addParameter(QgsProcessingParameterEnum(
            self.RESOLUTION, self.tr("Pixel size"), options=[self.tr(o) for o in RESOLUTION_OPTIONS.values()],
            defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Prepared scene (dB)")))

    def product_path(self, parameters, context) -> str:
        """The product file of the INPUT parameter (actionable error when it is not one)."""
        path = (self.parameterAsFile(parameters, self.INPUT, context) or "").strip()
        if not path or not os.path.exists(path):
            raise QgsProcessingException(
                f"{self._label(self.INPUT)}: '{path}' does not exist. Choose the .zip of a Sentinel-1 GRD "
                "product, or the manifest.safe in its unzipped .SAFE folder.")
        return path

    def check_extra(self, parameters, context) -> None:
        self.product_path(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        product = self.product_path(parameters, context)
        out = self.output_path(parameters, self.OUTPUT, context)
        resolution = list(RESOLUTION_OPTIONS)[self.parameterAsEnum(parameters, self.RESOLUTION, context)]
        self.run_command(prepare_arguments(product, out, resolution=resolution), feedback, [out])
        if style_db_raster(out):
            self.style_on_load(context, out)
        return {self.OUTPUT: out}
