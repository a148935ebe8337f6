"""Maps of the SAR physical descriptors H_DE, ENL and R_LR (``ces descriptors``)."""
from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from .algorithm_base import CALIBRATED, CesAlgorithm
from .ces_arguments import descriptors_arguments
from .class_style import style_descriptor_raster

HELP = """<p>Measures three physical properties of a SAR image, tile by tile, and writes them
as a 3-band raster. They are the signals CrossEarth-SAR uses to pick its experts, and a quick
way to see how different two scenes (or parts of a scene) are.</p>
<ul>
<li><b>Band 1, H_DE (directional entropy)</b>: how random the edge directions are. Low over
man-made structures with dominant directions (fields, streets), high over natural
surfaces.</li>
<li><b>Band 2, ENL (equivalent number of looks)</b>: how smooth the image is, (mean/std)²
of the log intensity. High over homogeneous areas such as calm water, low where speckle or
texture is strong.</li>
<li><b>Band 3, R_LR (local roughness)</b>: how much the brightness varies between small blocks
of pixels. High over mixed landscapes and urban areas.</li>
</ul>
<p>The map opens showing band 1 (H_DE) in colour; pick band 2 (ENL) or 3 (R_LR) under
Layer Properties &gt; Symbology.</p>
<p><b>Tile size</b> (pixels): the square each value describes (0: chosen from the scene,
about 1/16 of its shorter side, 32 to 512 pixels). <b>Stride</b> (pixels): the
step between tiles (0: the tile size, tiles side by side; half the tile size gives a finer,
overlapping map). The output has one pixel per tile, placed on the scene, in its CRS. No-data
pixels are left out of every measure; a tile with no valid pixel is no data. A summary of
the whole scene (minimum, median, maximum of each descriptor) is printed in the log.</p>
"""


class DescriptorsAlgorithm(CesAlgorithm):
    """``ces descriptors SCENE -o OUT.tif --tile T --stride S``."""
    NAME = "descriptors"
    DISPLAY_NAME = "SAR descriptor maps (H_DE, ENL, R_LR)"
    SHORT = "Maps the three SAR physical descriptors (directional entropy, ENL, roughness) of a scene."
    README_SECTION = "SAR descriptor maps"
    GROUP = "Land cover"
    GROUP_ID = "landcover"
    HELP = HELP
    TAGS = ("sar", "radar", "entropy", "enl", "roughness", "texture", "speckle", "crossearth")

    COMMAND = "descriptors"
    INPUT, TILE, STRIDE, OUTPUT = "INPUT", "TILE", "STRIDE", "OUTPUT"
    RASTER_INPUTS = (INPUT,)
    PARAMETERS = {"tile": TILE, "stride": STRIDE, "calibrated": CALIBRATED}

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("SAR scene")))
        self.addParameter(QgsProcessingParameterNumber(
            self.TILE, self.tr("Tile size (pixels, 0: automatic)"), QgsProcessingParameterNumber.Integer,
            defaultValue=0, minValue=0, maxValue=8192))
        self.addParameter(QgsProcessingParameterNumber(
            self.STRIDE, self.tr("Stride (pixels, 0: the tile size)"), QgsProcessingParameterNumber.Integer,
            defaultValue=0, minValue=0, maxValue=8192))
        self.add_calibrated_parameter()
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Descriptor maps")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        scene = self.raster_file(parameters, self.INPUT, context)
        out = self.output_path(parameters, self.OUTPUT, context)
        args = descriptors_arguments(
            scene, out, tile=self.parameterAsInt(parameters, self.TILE, context),
            stride=self.parameterAsInt(parameters, self.STRIDE, context),
            calibrated=self.calibrated_args(parameters, context))
        self.run_command(args, feedback, [out])
        if style_descriptor_raster(out):
            self.style_on_load(context, out)
        return {self.OUTPUT: out}

    def check_extra(self, parameters, context) -> None:
        tile = self.parameterAsInt(parameters, self.TILE, context)
        if 0 < tile < 8:
            raise QgsProcessingException(
                f"Tile size: {tile} px is too small; use at least 8 px, or 0 to let it be "
                "chosen from the scene.")
