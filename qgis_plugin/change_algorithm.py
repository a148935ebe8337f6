"""Flood extent from a before/after pair (``ces change``).

:class:`ChangeAlgorithm` reads the dialog into the values of
``ces_arguments.change_arguments`` (tested without an engine), runs ``ces``, and styles and
names the layers it loads (core.change.classes: flood red, permanent
water grey-blue, no water transparent).
"""
from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterLayer,
)

from ..core.change.classes import change_classes
from ..core.products.class_raster import raster_classes
from ..core.products.layer_style import layer_name
from .algorithm_base import CALIBRATED, CesAlgorithm
from .ces_arguments import change_arguments
from .class_style import model_classes
from .model_choice import MODEL_HELP, embedded_model_path
from .product_inputs import product_parameter

HELP = """<p>Maps what a flood put under water: a SAR scene from during or after the event is
compared with one or more scenes of the same place from before it.</p>
<p><b>After scene</b>: the SAR image of the flood. <b>Before scenes</b>: one or more images
of the same area from before the event (the same polarization, e.g. VV). With several, a
pixel counts as water before when at least half of them show water there, so one noisy
image does little harm.</p>
<p><b>Or Sentinel-1 product files</b>: the <i>.zip</i> (or <i>manifest.safe</i>) of a GRD
product as downloaded, for the after or the before date, instead of a layer. Each is
calibrated, cleared of thermal noise and geocoded at 20 m first; the dates come from the
products, and products from different relative orbits give a warning in the log.</p>
<p>Each scene is segmented on its own grid; the before result is then brought onto the after
scene's grid (nearest neighbour). Scenes in different coordinate systems or pixel sizes, or
covering only part of each other, work: the result covers the area both dates have data for,
in the after scene's CRS.</p>
<p><b>Classes</b> (for a water model such as the one that comes with CrossEarth-SAR):
<i>flood</i> (water after, not before; drawn red), <i>permanent water</i> (water on both
dates: rivers, lakes; drawn grey-blue), <i>receded</i> (water before, not after) and
<i>no water</i> (left transparent). A model of several land-cover classes gives
from &rarr; to changes instead.</p>
<p><b>Model</b>: %s. <b>Tile size</b>, <b>overlap</b>, <b>minimum area</b> and
<b>simplify tolerance</b> work as in <i>Segment SAR scene into land cover</i>.</p>
<p><b>Outputs</b>: polygons with <i>class_id</i>, <i>class_name</i>, <i>area_m2</i> (square
metres, geodesic) and <i>mean_confidence</i>; optionally the class raster, the confidence
raster (the lower of the two dates' confidence) and a preview picture: before | after |
change, with a legend.</p>
<p>Cancel stops within seconds and leaves no partial files.</p>
""" % MODEL_HELP


class ChangeAlgorithm(CesAlgorithm):
    """``ces change AFTER --before B [--before B ...] -o OUT ...``."""
    NAME = "flood_extent"
    DISPLAY_NAME = "Flood extent (before/after)"
    SHORT = "Maps flood, permanent water and receded water from SAR scenes before and after an event."
    README_SECTION = "Flood extent"
    GROUP = "Land cover"
    GROUP_ID = "landcover"
    HELP = HELP
    TAGS = ("sar", "radar", "sentinel-1", "flood", "change detection", "before after",
            "water", "inundation", "crossearth")

    COMMAND = "change"
    AFTER, BEFORE, MODEL, TILE, OVERLAP, DEVICE = ("AFTER", "BEFORE", "MODEL", "TILE", "OVERLAP",
                                                   "DEVICE")
    BATCH, MIN_AREA, SIMPLIFY = "BATCH", "MIN_AREA", "SIMPLIFY"
    OUTPUT, OUTPUT_RASTER, OUTPUT_CONFIDENCE = "OUTPUT", "OUTPUT_RASTER", "OUTPUT_CONFIDENCE"
    OUTPUT_PREVIEW, PREVIEW_HTML = "OUTPUT_PREVIEW", "PREVIEW_HTML"
    RASTER_INPUTS = (AFTER,)
    MULTI_RASTER_INPUTS = (BEFORE,)
    MODEL_INPUTS = (MODEL,)
    AFTER_PRODUCT, BEFORE_PRODUCT = "AFTER_PRODUCT", "BEFORE_PRODUCT"
    PRODUCTS = {AFTER: AFTER_PRODUCT, BEFORE: BEFORE_PRODUCT}
    STAGE_WEIGHTS = {"segment": 85.0, "compare": 3.0, "sieve": 2.0, "vectorize": 10.0}
    PARAMETERS = {"model": MODEL, "tile": TILE, "overlap": OVERLAP,
                  "batch": BATCH, "device": DEVICE, "min_area": MIN_AREA,
                  "simplify": SIMPLIFY, "raster": OUTPUT_RASTER,
                  "confidence": OUTPUT_CONFIDENCE, "preview": OUTPUT_PREVIEW,
                  "before": BEFORE, "calibrated": CALIBRATED}

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.AFTER, self.tr("After scene"), optional=True))
        self.addParameter(product_parameter(self.AFTER_PRODUCT, self.tr("Or after: Sentinel-1 product")))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.BEFORE, self.tr("Before scenes (one or more)"), QgsProcessing.TypeRaster, optional=True))
        self.addParameter(product_parameter(self.BEFORE_PRODUCT, self.tr("Or before: Sentinel-1 product")))
        self.add_map_parameters(self.tr("Flood extent polygons"))

    def check_extra(self, parameters, context) -> None:
        tile = self.parameterAsInt(parameters, self.TILE, context)
        overlap = self.parameterAsInt(parameters, self.OVERLAP, context)
        if overlap >= tile:
            raise QgsProcessingException(self.tr(
                f"Tile overlap ({overlap} px) must be smaller than the tile size ({tile} px); "
                "a quarter of the tile size is a good choice."))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        [after] = self.scene_files(parameters, self.AFTER, context)
        befores = self.scene_files(parameters, self.BEFORE, context)
        model = self.model_file(parameters, self.MODEL, context)
        self.check_extra(parameters, context)
        v = self.map_values(parameters, context)
        args = change_arguments(after, befores, model=model, **v)
        out, raster, confidence, preview = (v[k] for k in ("output", "raster", "confidence",
                                                           "preview"))
        result = self.run_command(args, feedback, [out, raster, confidence, preview])
        model_path = model or embedded_model_path() or ""
        classes = change_classes(raster_classes(model_classes(model_path))) \
            if model_classes(model_path) else []
        names = {kind: layer_name(after, model_path or "model", classes, kind)
                 for kind in ("flood extent", "flood extent raster", "flood extent confidence")}
        return self.map_results(context, feedback, result, classes, list(names.values()), out,
                                raster, confidence, preview)
