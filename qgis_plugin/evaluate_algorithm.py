"""Measure a model against reference labels (``ces evaluate``): IoU, mIoU, accuracy."""
from __future__ import annotations

import html
import json
import os
import urllib.parse
from typing import Optional

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingUtils,
    QgsRasterLayer,
    QgsVectorLayer,
)

from ..core.errors import InputError
from ..train.classes import ClassSpec, classes_file_beside, from_model_classes, load_classes
from .algorithm_base import CALIBRATED, CesAlgorithm
from .ces_arguments import evaluate_arguments
from .class_style import model_classes
from .finetune_algorithm import SINGLE_LAYER_FORMATS
from .model_choice import MODEL_HELP, embedded_model_path

MAX_LABEL_VALUE_RANGE = 1 << 16   # integer labels: values found by one GDAL histogram


def label_values(path: str) -> Optional[list[int]]:
    """The integer values (no data left out) of band 1 of a label raster, by a GDAL histogram;
    None when they cannot be listed cheaply (not an integer band, or too wide a range)."""
    from osgeo import gdal

    dataset = gdal.Open(path)
    if dataset is None:
        return None
    band = dataset.GetRasterBand(1)
    if gdal.GetDataTypeName(band.DataType) not in ("Byte", "Int8", "UInt16", "Int16",
                                                     "UInt32", "Int32"):
        return None
    low, high = band.ComputeRasterMinMax(False)
    low, high = int(low), int(high)
    if high - low >= MAX_LABEL_VALUE_RANGE:
        return None
    counts = band.GetHistogram(low - 0.5, high + 0.5, high - low + 1, False, False)
    return [low + i for i, n in enumerate(counts) if n > 0]


def _described(spec: ClassSpec) -> str:
    return ", ".join(f"{c['name']} = {'/'.join(str(v) for v in c.get('values') or [c['value']])}"
                     for c in spec.classes)


def classes_problem(classes_path: Optional[str], model: list[dict],
                    label_paths: list[str]) -> Optional[str]:
    """What is wrong with the classes of an evaluation, in words with the fix; None if fine.

    ``classes_path``: a classes file or None (the model's classes); ``model``: the model's
    classes (empty: unknown, not checked); ``label_paths``: label rasters (values checked)."""
    if classes_path:
        try:
            spec = load_classes(classes_path)
        except InputError as e:
            return f"Classes file: {e}"
        if model and len(spec) != len(model):
            return (f"Classes file: {os.path.basename(classes_path)} has {len(spec)} classes "
                    f"({_described(spec)}) but the model has {len(model)} "
                    f"({_described(from_model_classes(model))}). Give one class per model "
                    "class, in the model's order.")
    elif model:
        spec = from_model_classes(model)
    else:
        return None
    allowed = set(spec.values) | set(spec.ignore)
    for path in label_paths:
        values = label_values(path)
        unknown = sorted(set(values or []) - allowed)
        if unknown:
            where = (f"the classes file {os.path.basename(classes_path)}" if classes_path
                     else "the model's classes")
            return (f"Reference labels: {os.path.basename(path)} holds the values "
                    f"{', '.join(map(str, values))}, but {unknown} are not in {where} "
                    f"({_described(spec)}; ignored: {spec.ignore or 'none'}). Give a Classes "
                    "file (Advanced Parameters) that maps each label value to a model class "
                    "and lists the values to ignore, e.g. examples/sen1floods11_classes.yaml "
                    "for Sen1Floods11 labels.")
    return None

HELP = """<p>Checks how well a model maps your scenes: it segments each SAR scene and compares
the result with reference labels, pixel by pixel.</p>
<p><b>SAR scenes</b>: the radar images to test on (ideally not the ones the model was
fine-tuned on).</p>
<p><b>Reference labels</b>: either label rasters (paired with the scenes by file name, e.g.
<i>X_S1Hand.tif</i> with <i>X_LabelHand.tif</i>; one scene and one label raster always pair;
on another pixel grid or CRS they are resampled onto the scene's, nearest), or one polygon layer with a <b>class field</b> (leave the
field empty to use a field called class, label, value ...). Unlabelled pixels are not
counted.</p>
<p><b>Model</b>: %s.</p>
<p><b>Results</b>: per-class IoU (intersection over union: 1 is perfect), mIoU (their
mean), overall accuracy and the confusion matrix (rows: reference, columns: prediction),
in a JSON file for scripts and an HTML report shown in the Results Viewer. mIoU and overall
accuracy are also outputs usable in models.</p>
""" % MODEL_HELP


class EvaluateAlgorithm(CesAlgorithm):
    """``ces evaluate --model M --images ... --labels ... --json OUT.json``."""
    NAME = "evaluate"
    DISPLAY_NAME = "Evaluate model against reference labels"
    SHORT = "Measures a model against reference labels: IoU per class, mIoU, accuracy, confusion matrix."
    README_SECTION = "Evaluate model against reference labels"
    GROUP = "Training"
    GROUP_ID = "training"
    HELP = HELP
    TAGS = ("sar", "accuracy", "iou", "miou", "confusion matrix", "validation", "crossearth")

    COMMAND = "evaluate"
    INPUT, LABELS, CLASS_FIELD, MODEL = "INPUT", "LABELS", "CLASS_FIELD", "MODEL"
    TILE, CLASSES, DEVICE = "TILE", "CLASSES", "DEVICE"
    OUTPUT, OUTPUT_HTML = "OUTPUT", "OUTPUT_HTML"
    MIOU, OVERALL_ACCURACY = "MIOU", "OVERALL_ACCURACY"
    EXPERTS_PLOT = "EXPERTS_PLOT"
    MULTI_RASTER_INPUTS = (INPUT,)
    MODEL_INPUTS = (MODEL,)
    PARAMETERS = {"images": INPUT, "labels": LABELS, "class_field": CLASS_FIELD,
                  "model": MODEL, "tile": TILE, "classes": CLASSES,
                  "device": DEVICE, "json": OUTPUT, "calibrated": CALIBRATED}

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUT, self.tr("SAR scenes"), QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.LABELS, self.tr("Reference labels"),
            QgsProcessing.TypeMapLayer))
        self.addParameter(QgsProcessingParameterString(
            self.CLASS_FIELD, self.tr("Class field (polygons)"), optional=True))
        self.add_model_parameters(self.MODEL)
        self.addParameter(self.device_parameter(self.DEVICE))
        advanced = [
            QgsProcessingParameterNumber(
                self.TILE, self.tr("Tile size (pixels)"), QgsProcessingParameterNumber.Integer,
                defaultValue=512, minValue=28, maxValue=8192),
            self.classes_file_parameter(self.CLASSES),
        ]
        self.add_advanced(*advanced)
        self.add_calibrated_parameter()
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, self.tr("Metrics (JSON)"), fileFilter="JSON files (*.json)"))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_HTML, self.tr("Report (HTML)"), fileFilter="HTML files (*.html)",
            optional=True, createByDefault=True))
        self.addOutput(QgsProcessingOutputFile(self.EXPERTS_PLOT, self.tr("Expert activation plot (PNG)")))
        self.addOutput(QgsProcessingOutputNumber(self.MIOU, self.tr("mIoU")))
        self.addOutput(QgsProcessingOutputNumber(self.OVERALL_ACCURACY, self.tr("Overall accuracy")))

    def check_extra(self, parameters, context) -> None:
        """Check the classes against the model and the label rasters' values before running
        (seconds instead of a failure after the model has run)."""
        layers = self.parameterAsLayerList(parameters, self.LABELS, context)
        rasters = [lyr for lyr in layers if isinstance(lyr, QgsRasterLayer)]
        label_paths = [lyr.source() for lyr in rasters if os.path.isfile(lyr.source())]
        self.classes_file(parameters, context, label_paths, check=True)

    def classes_file(self, parameters, context, label_paths: list[str],
                     check: bool = False) -> Optional[str]:
        """The classes file given, else the one found beside the label rasters (see
        classes_file_beside); with ``check``, QgsProcessingException when the classes do not
        fit the model or a label raster holds a value that is neither a class nor ignored."""
        given = (self.parameterAsFile(parameters, self.CLASSES, context) or "").strip()
        path = given or classes_file_beside(label_paths)
        if not check:
            return path
        model = self.model_file(parameters, self.MODEL, context) or embedded_model_path()
        problem = classes_problem(path, model_classes(model or ""), label_paths)
        if problem:
            raise QgsProcessingException(problem)
        return path

    def label_files(self, parameters, context, feedback) -> list[str]:
        """Label rasters as files, or one polygon layer as a single-layer file."""
        layers = self.parameterAsLayerList(parameters, self.LABELS, context)
        if not layers:
            raise QgsProcessingException(
                "Reference labels: nothing given. Choose label rasters on the scenes' grid, or "
                "one polygon layer with a class field.")
        vectors = [lyr for lyr in layers if isinstance(lyr, QgsVectorLayer)]
        rasters = [lyr for lyr in layers if isinstance(lyr, QgsRasterLayer)]
        if vectors and (rasters or len(vectors) > 1):
            raise QgsProcessingException(
                "Reference labels: give either label rasters or exactly one polygon layer, "
                "not a mix.")
        if vectors:
            layer = vectors[0]
            if layer.geometryType() != 2:  # QgsWkbTypes.PolygonGeometry
                raise QgsProcessingException(
                    f"Reference labels: '{layer.name()}' is not a polygon layer. Choose label "
                    "rasters or a polygon layer with a class field.")
            return [QgsProcessingUtils.convertToCompatibleFormat(
                layer, False, "labels", SINGLE_LAYER_FORMATS, "gpkg", context, feedback)]
        return [self.layer_file(lyr, self._label(self.LABELS), lyr.name()) for lyr in rasters]

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        images = self.raster_files(parameters, self.INPUT, context)
        model = self.model_file(parameters, self.MODEL, context)
        labels = self.label_files(parameters, context, feedback)
        out = self.output_path(parameters, self.OUTPUT, context)
        report = self.output_path(parameters, self.OUTPUT_HTML, context, optional=True)
        plot = os.path.splitext(out)[0] + ".experts.png"

        class_field = (self.parameterAsString(parameters, self.CLASS_FIELD, context) or "").strip()
        classes = self.classes_file(parameters, context, labels)
        if classes and not self.is_set(parameters, self.CLASSES):
            feedback.pushInfo(f"Classes file: {classes} (found beside the labels)")
        args = evaluate_arguments(
            images, labels, out, plot, tile=self.parameterAsInt(parameters, self.TILE, context),
            device=self.device_value(parameters, context),
            calibrated=self.calibrated_args(parameters, context), class_field=class_field,
            model=model, classes=classes)
        result = self.run_command(args, feedback, [out, plot])
        plot = result.outputs.get("experts_plot")

        with open(out, encoding="utf-8") as f:
            metrics = json.load(f)
        miou = metrics.get("miou")
        accuracy = metrics.get("overall_accuracy")
        feedback.pushInfo(f"mIoU: {miou}  overall accuracy: {accuracy}")
        for name, iou in (metrics.get("per_class_iou") or {}).items():
            feedback.pushInfo(f"IoU {name}: {iou}")
        if report:
            with open(report, "w", encoding="utf-8") as f:
                f.write(metrics_html(metrics, model or "embedded model", plot))
        return {self.OUTPUT: out, self.OUTPUT_HTML: report, self.EXPERTS_PLOT: plot,
                self.MIOU: miou, self.OVERALL_ACCURACY: accuracy}


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return html.escape(str(value))


def metrics_html(metrics: dict, model: str, plot: str | None = None) -> str:
    """A small self-contained HTML report of the metrics JSON of ``ces evaluate``
    (keys miou, per_class_iou, overall_accuracy, confusion_matrix, classes, pixels)."""
    per_class = metrics.get("per_class_iou") or {}
    names = list(metrics.get("classes") or per_class)
    rows = "".join(f"<tr><td>{html.escape(str(n))}</td><td>{_fmt(per_class.get(n))}</td></tr>"
                   for n in names)
    matrix = metrics.get("confusion_matrix") or []
    head = "".join(f"<th>{html.escape(str(n))}</th>" for n in names)
    body = "".join(
        "<tr><th>" + html.escape(str(names[i] if i < len(names) else i)) + "</th>"
        + "".join(f"<td>{int(c)}</td>" for c in row) + "</tr>" for i, row in enumerate(matrix))
    image = ""
    if plot:
        uri = "file://" + urllib.parse.quote(os.path.abspath(plot))
        image = f'<h3>Expert activation</h3><img src="{html.escape(uri)}" alt="experts">'
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>CrossEarth-SAR evaluation</title>
<style>body{{font-family:sans-serif}} td,th{{border:1px solid #999;padding:2px 8px;text-align:right}}
table{{border-collapse:collapse;margin-bottom:1em}}</style></head><body>
<h2>CrossEarth-SAR evaluation</h2>
<p>Model: {html.escape(os.path.basename(model))}; {_fmt(metrics.get('pixels'))} labelled pixels</p>
<p>Classes file: {html.escape(str(metrics.get('classes_file') or "none (the model's classes)"))}</p>
<p><b>mIoU</b>: {_fmt(metrics.get('miou'))} &nbsp; <b>Overall accuracy</b>:
{_fmt(metrics.get('overall_accuracy'))}</p>
<h3>IoU per class</h3><table><tr><th>class</th><th>IoU</th></tr>{rows}</table>
<h3>Confusion matrix (rows: reference, columns: prediction; pixels)</h3>
<table><tr><th></th>{head}</tr>{body}</table>
{image}
</body></html>
"""
