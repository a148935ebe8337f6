"""Segment a SAR scene into land-cover polygons (``ces segment``)."""
from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterRasterLayer,
)

from ..core.products.layer_style import layer_name
from .algorithm_base import CALIBRATED, CesAlgorithm
from .ces_arguments import segment_arguments
from .class_style import model_classes
from .model_choice import MODEL_HELP, embedded_model_path
from .product_inputs import product_parameter

HELP = """<p>Turns a SAR image into a land-cover map: polygons of the classes the model knows
(for the model that comes with CrossEarth-SAR: water and not water), written to a GeoPackage
that opens coloured by class.</p>
<p><b>SAR scene</b>: a radar image file (for example a Sentinel-1 GRD GeoTIFF, in dB,
linear intensity, amplitude or an 8-bit quicklook; complex SLC works too), or a Sentinel-1
product opened in QGIS. Any size: the scene is processed tile by tile, so memory stays flat.</p>
<p><b>Or a Sentinel-1 product file</b>: the <i>.zip</i> of a GRD product as downloaded from
the Copernicus Browser, or the <i>manifest.safe</i> of its unzipped <i>.SAFE</i> folder. It
is calibrated, cleared of thermal noise and geocoded at 20 m first (as <i>Prepare Sentinel-1
product</i> does; one progress bar covers both), into a temporary file that is removed
afterwards. When given, it is used instead of the SAR scene layer.</p>
<p><b>Model</b>: %s.</p>
<p><b>Tile size</b> and <b>tile overlap</b> (pixels): the scene is cut into overlapping tiles
whose predictions are blended, so there are no seams. Bigger tiles see more context and need
more memory.</p>
<p><b>Device</b>: <i>auto</i> uses an NVIDIA GPU when one is available, else the CPU.</p>
<p><b>Minimum area</b> (m&sup2;): patches smaller than this are merged into their
largest neighbour before polygons are made (empty: 4 pixels; 0 keeps every pixel).
<b>Simplify tolerance</b> (m): polygon outlines are simplified by up to this distance while
neighbours keep sharing their boundaries exactly (empty: 3/4 of a pixel; 0 keeps the exact
pixel edges).</p>
<p><b>Outputs</b>: polygons with the fields <i>class_id</i>, <i>class_name</i>,
<i>area_m2</i> (square metres, geodesic for latitude/longitude data) and
<i>mean_confidence</i> (0 to 1), in the CRS of the scene. Optionally also the class raster
(one class value per pixel, 255 = no data; drawn in the class colours, the background class
transparent) and a confidence raster (the model's probability of the chosen class, drawn
from red at 0 to green at 1). The background class is drawn as an outline only, so the scene
shows through it. The preview picture (PNG) shows the scene in grey with the classes in
their colours over it and a legend, to share or check at a glance.</p>
<p><b>Calibrated backscatter</b> (advanced): <i>auto</i> detects whether the scene holds
calibrated sigma0 or gamma0 (in dB, linear power or amplitude; the log says why). The model
then reads its absolute backscatter, so dark dry fields are not taken for water. Choose
<i>no</i> for a scene whose values were rescaled; a calibration is then estimated from
the scene.</p>
<p>If the scene looks very different from what the model was trained on, a warning says
so in the log: check the result, or fine-tune on a few labelled areas of your own.</p>
<p>Cancel stops the computation within seconds and leaves no partial files.</p>
""" % MODEL_HELP


class SegmentAlgorithm(CesAlgorithm):
    """``ces segment SCENE -o OUT [--model M] [--tile] [--overlap] ...``."""
    NAME = "segment"
    DISPLAY_NAME = "Segment SAR scene into land cover"
    SHORT = "Maps land cover (water and the model's other classes) from a SAR scene or a Sentinel-1 product, as styled polygons."
    README_SECTION = "Segment SAR scene into land cover"
    GROUP = "Land cover"
    GROUP_ID = "landcover"
    HELP = HELP
    TAGS = ("sar", "radar", "sentinel-1", "segmentation", "land cover", "classification",
            "water", "flood", "deep learning", "crossearth")

    COMMAND = "segment"
    INPUT, MODEL, TILE, OVERLAP, DEVICE = "INPUT", "MODEL", "TILE", "OVERLAP", "DEVICE"
    BATCH, MIN_AREA, SIMPLIFY = "BATCH", "MIN_AREA", "SIMPLIFY"
    OUTPUT, OUTPUT_RASTER, OUTPUT_CONFIDENCE = "OUTPUT", "OUTPUT_RASTER", "OUTPUT_CONFIDENCE"
    OUTPUT_PREVIEW, PREVIEW_HTML = "OUTPUT_PREVIEW", "PREVIEW_HTML"
    RASTER_INPUTS = (INPUT,)
    MODEL_INPUTS = (MODEL,)
    PRODUCT = "PRODUCT"
    PRODUCTS = {INPUT: PRODUCT}
    STAGE_WEIGHTS = {"segment": 85.0, "sieve": 3.0, "vectorize": 12.0}
    PARAMETERS = {"model": MODEL, "tile": TILE, "overlap": OVERLAP,
                  "batch": BATCH, "device": DEVICE, "min_area": MIN_AREA,
                  "simplify": SIMPLIFY, "raster": OUTPUT_RASTER,
                  "confidence": OUTPUT_CONFIDENCE, "preview": OUTPUT_PREVIEW,
                  "calibrated": CALIBRATED}

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, self.tr("SAR scene"), optional=True))
        self.addParameter(product_parameter(self.PRODUCT, self.tr("Or a Sentinel-1 product")))
        self.add_map_parameters(self.tr("Land cover polygons"))

    def check_extra(self, parameters, context) -> None:
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if self.parameterAsFile(parameters, self.PRODUCT, context):
            layer = None   # the product file is used (georeferenced as it is prepared)
        if layer is not None and layer.isValid() and not layer.crs().isValid():
            raise QgsProcessingException(
                f"SAR scene: '{layer.name()}' has no georeferencing (no coordinate reference "
                "system), so its land-cover map could not be placed on the map. Terrain-correct "
                "it first (for example SNAP's Range-Doppler Terrain Correction), or give it its "
                "CRS if you know it (Raster > Projections > Assign Projection). On the command "
                "line, ces segment accepts it and writes outputs without a CRS.")
        tile = self.parameterAsInt(parameters, self.TILE, context)
        overlap = self.parameterAsInt(parameters, self.OVERLAP, context)
        if overlap >= tile:
            raise QgsProcessingException(
                f"Tile overlap ({overlap} px) must be smaller than the tile size ({tile} px); "
                "a quarter of the tile size is a good choice.")

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        [scene] = self.scene_files(parameters, self.INPUT, context)
        model = self.model_file(parameters, self.MODEL, context)
        self.check_extra(parameters, context)
        v = self.map_values(parameters, context)
        args = segment_arguments(scene, model=model, **v)
        out, raster, confidence, preview = (v[k] for k in ("output", "raster", "confidence",
                                                           "preview"))
        result = self.run_command(args, feedback, [out, raster, confidence, preview])
        model_path = model or embedded_model_path() or ""
        classes = model_classes(model_path)
        names = {kind: layer_name(scene, model_path or "model", classes, kind)
                 for kind in ("polygons", "raster", "confidence")}
        return self.map_results(context, feedback, result, classes,
                                [names["polygons"], names["raster"], names["confidence"]],
                                out, raster, confidence, preview)
