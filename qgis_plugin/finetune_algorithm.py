"""Fine-tune a model on polygons digitized over SAR scenes (``ces finetune``)."""
from __future__ import annotations

import os
import shutil
import uuid

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingUtils,
)

from .algorithm_base import (
    EMBEDDED_MODEL_HINT,
    EMBEDDED_MODEL_NAME,
    CesAlgorithm,
    embedded_model_path,
)

HELP = """<p>Teaches a CrossEarth-SAR model your own classes, or improves it on your area, from
polygons you digitized over one or more SAR scenes. The result is a new model file to use
in <i>Segment SAR scene into land cover</i>.</p>
<p><b>SAR scenes</b>: the radar images the polygons were drawn on.</p>
<p><b>Labelled polygons</b> and <b>class field</b>: a polygon layer (any CRS: it is
reprojected) whose field holds the class of each polygon, as a number or a name (e.g.
<i>water</i>, <i>forest</i>). Only the pixels inside polygons are learned from; everything
else is ignored, so you need not label whole scenes. Label every class you want, and
include some of the background you want kept apart. If Selected features only is ticked,
only the selected polygons are used.</p>
<p><b>Base model</b>: the model to start from; %s. With a different set of classes the
model's last layer starts afresh and the rest is kept.</p>
<p><b>Iterations</b>: training steps. A few hundred already adapt a model on a CPU in
minutes; the paper trains for 40,000 on a GPU. By default only the decoder is trained (the
backbone stays frozen), which needs few labels.</p>
<p><b>Training method</b> (advanced): <i>Decoder only</i> (the default, as in the paper)
trains the decoder on the frozen backbone; <i>Earth-Adapter</i> also adds small adapters
after every backbone block (a mixture of three bottleneck layers on the image features and
on their low and high spatial frequencies) and trains them with the decoder, the backbone
still frozen: more trainable parameters, usually better across domains, about twice the time
per iteration on a CPU. <b>Adapter rank</b> is the adapters' width (64); <b>adapter frequency
cutoff</b> the low-pass side as a fraction of the feature grid (0.3). The adapters are saved
in the model file and used by Segment and Evaluate.</p>
<p><b>Classes file</b> (advanced, optional): a YAML or JSON file naming the classes with
their label values and colours, e.g. <code>classes: [{name: water, value: 1, color:
"#1f78b4"}]</code>; without it the classes are the distinct values of the class field.</p>
<p><b>Output</b>: a .safetensors model file. It records the classes and their colours, so
segmentations made with it open coloured.</p>
<p>Cancel stops training within seconds and leaves no partial model.</p>
""" % EMBEDDED_MODEL_HINT

# Single-layer formats ces reads as they are; anything else (layers of a multi-layer
# GeoPackage, selections, memory layers) is first saved to a temporary GeoPackage.
SINGLE_LAYER_FORMATS = ["shp", "geojson", "fgb"]


class FinetuneAlgorithm(CesAlgorithm):
    """``ces finetune --images ... --labels POLYGONS --class-field F -o OUT.safetensors``."""
    NAME = "finetune"
    DISPLAY_NAME = "Fine-tune model on labelled polygons"
    GROUP = "Training"
    GROUP_ID = "training"
    HELP = HELP
    TAGS = ("sar", "radar", "training", "fine-tune", "finetune", "labels", "polygons",
            "deep learning", "crossearth")

    COMMAND = "finetune"
    INPUT, LABELS, CLASS_FIELD, BASE = "INPUT", "LABELS", "CLASS_FIELD", "BASE"
    ITERATIONS, BATCH, LEARNING_RATE, TILE = "ITERATIONS", "BATCH", "LEARNING_RATE", "TILE"
    CLASSES, DEVICE, OUTPUT = "CLASSES", "DEVICE", "OUTPUT"
    PEFT, ADAPTER_RANK, ADAPTER_CUTOFF = "PEFT", "ADAPTER_RANK", "ADAPTER_CUTOFF"
    PEFT_OPTIONS = ["Decoder only (backbone frozen)", "Earth-Adapter (adapters + decoder)"]
    PEFT_VALUES = ["none", "earth-adapter"]      # ces finetune --peft
    MULTI_RASTER_INPUTS = (INPUT,)
    MODEL_INPUTS = (BASE,)
    STAGE_WEIGHTS = {"read labels": 5.0, "train": 95.0}
    OPTION_PARAMETERS = {"--images": INPUT, "--labels": LABELS, "--class-field": CLASS_FIELD,
                         "--model": BASE, "--iters": ITERATIONS, "--batch": BATCH,
                         "--lr": LEARNING_RATE, "--tile": TILE, "--classes": CLASSES,
                         "--device": DEVICE, "--peft": PEFT, "--adapter-rank": ADAPTER_RANK,
                         "--adapter-cutoff": ADAPTER_CUTOFF}

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUT, "SAR scenes", QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.LABELS, "Labelled polygons", [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterField(
            self.CLASS_FIELD, "Class field", parentLayerParameterName=self.LABELS))
        self.addParameter(self.model_file_parameter(self.BASE, "Base model"))
        self.addParameter(QgsProcessingParameterNumber(
            self.ITERATIONS, "Iterations", QgsProcessingParameterNumber.Integer,
            defaultValue=500, minValue=1, maxValue=1_000_000))
        self.addParameter(self.device_parameter(self.DEVICE))
        advanced = [
            QgsProcessingParameterNumber(
                self.BATCH, "Batch size", QgsProcessingParameterNumber.Integer,
                defaultValue=2, minValue=1, maxValue=256),
            QgsProcessingParameterNumber(
                self.LEARNING_RATE, "Learning rate", QgsProcessingParameterNumber.Double,
                defaultValue=1e-4, minValue=1e-8, maxValue=1.0),
            QgsProcessingParameterNumber(
                self.TILE, "Training crop size (pixels)", QgsProcessingParameterNumber.Integer,
                defaultValue=512, minValue=28, maxValue=4096),
            self.classes_file_parameter(self.CLASSES),
            QgsProcessingParameterEnum(
                self.PEFT, "Training method", options=self.PEFT_OPTIONS, defaultValue=0),
            QgsProcessingParameterNumber(
                self.ADAPTER_RANK, "Adapter rank (Earth-Adapter)",
                QgsProcessingParameterNumber.Integer, defaultValue=64, minValue=1, maxValue=4096),
            QgsProcessingParameterNumber(
                self.ADAPTER_CUTOFF, "Adapter frequency cutoff (Earth-Adapter)",
                QgsProcessingParameterNumber.Double, defaultValue=0.3, minValue=0.01, maxValue=1.0),
        ]
        self.add_advanced(*advanced)
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, "Fine-tuned model", fileFilter="CrossEarth-SAR models (*.safetensors)"))

    def labels_file(self, parameters, context, feedback) -> str:
        """The polygons as a file ces can read (saved to a temporary file when needed)."""
        source = self.parameterAsSource(parameters, self.LABELS, context)
        if source is None:
            raise QgsProcessingException(
                f"Labelled polygons: '{self._shown(parameters.get(self.LABELS))}' is not a "
                "polygon layer. Choose the polygon layer you digitized the classes in.")
        if source.featureCount() == 0:
            raise QgsProcessingException(
                "Labelled polygons: the layer has no features (or none selected). Digitize "
                "at least one polygon per class over the SAR scenes.")
        return self.parameterAsCompatibleSourceLayerPath(
            parameters, self.LABELS, context, SINGLE_LAYER_FORMATS, "gpkg", feedback)

    def check_extra(self, parameters, context) -> None:
        classes = (self.parameterAsFile(parameters, self.CLASSES, context) or "").strip()
        if classes and not os.path.isfile(classes):
            raise QgsProcessingException(
                f"Classes file: {classes} does not exist. Choose a YAML or JSON classes file, "
                "or leave it empty to use the distinct values of the class field.")

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        images = self.raster_files(parameters, self.INPUT, context)
        base = self.model_file(parameters, self.BASE, context) or embedded_model()
        self.check_extra(parameters, context)
        class_field = self.parameterAsString(parameters, self.CLASS_FIELD, context)
        labels = self.labels_file(parameters, context, feedback)
        out = self.output_path(parameters, self.OUTPUT, context)
        if not out.lower().endswith(".safetensors"):
            out += ".safetensors"
        # Training checkpoints (for `ces finetune --resume`, which the toolbox does not offer)
        # go to Processing's temporary folder, not beside the user's output, and are removed.
        work_dir = os.path.join(QgsProcessingUtils.tempFolder(),
                                f"ces_finetune_{uuid.uuid4().hex[:12]}")

        args = []
        for image in images:
            args += ["--images", image]
        args += ["--labels", labels, "-o", out,
                 "--iters", self.parameterAsInt(parameters, self.ITERATIONS, context),
                 "--batch", self.parameterAsInt(parameters, self.BATCH, context),
                 "--lr", repr(self.parameterAsDouble(parameters, self.LEARNING_RATE, context)),
                 "--tile", self.parameterAsInt(parameters, self.TILE, context),
                 "--device", self.device_value(parameters, context),
                 "--model", base, "--overwrite", "--work-dir", work_dir]
        if class_field:
            args += ["--class-field", class_field]
        classes = (self.parameterAsFile(parameters, self.CLASSES, context) or "").strip()
        if classes:
            args += ["--classes", classes]
        args += self.peft_args(parameters, context)
        try:
            result = self.run_command(args, feedback, [out])
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        done = result.done
        feedback.pushInfo(
            f"Trained {done.get('iterations')} iterations in {done.get('wall_s')} s; loss "
            f"{done.get('first_loss')} -> {done.get('final_loss')}; classes "
            f"{done.get('classes')}")
        return {self.OUTPUT: out}

    def peft_args(self, parameters, context) -> list:
        """``--peft earth-adapter --adapter-rank R --adapter-cutoff C`` when Earth-Adapter is
        chosen; nothing for decoder-only (ces's default)."""
        peft = self.PEFT_VALUES[self.parameterAsEnum(parameters, self.PEFT, context)]
        if peft == "none":
            return []
        return ["--peft", peft,
                "--adapter-rank", self.parameterAsInt(parameters, self.ADAPTER_RANK, context),
                "--adapter-cutoff", repr(self.parameterAsDouble(parameters, self.ADAPTER_CUTOFF, context))]


def embedded_model() -> str:
    """The embedded model's path; QgsProcessingException when this installation has none."""
    path = embedded_model_path()
    if path is None:
        raise QgsProcessingException(
            f"Base model: no model comes with this installation (models/{EMBEDDED_MODEL_NAME} "
            "is missing from the plugin folder). Choose a CrossEarth-SAR model file "
            "(.safetensors) to start from.")
    return path
