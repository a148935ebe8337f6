"""Fine-tune a model on polygons digitized over SAR scenes (``ces finetune``)."""
from __future__ import annotations

import datetime
import os
import re
import shutil

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
)
from qgis.PyQt.QtCore import QVariant

from .algorithm_base import CALIBRATED, CesAlgorithm
from .ces_arguments import finetune_arguments
from .model_choice import EMBEDDED_MODEL_NAME, MODEL_HELP, embedded_model_path, models_folder

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
<p><b>Iterations</b>: training steps. Measured on a 2-core CPU with the defaults (batch 2,
512 px crops): about 4 s per iteration, so the default 500 take about 34 minutes; on an
NVIDIA GPU it is well under a second. The log states the expected time after the first few
iterations. The paper trains for 40,000 on GPUs. By default only the decoder is trained (the
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
segmentations made with it open coloured. Left as a temporary file, the model is kept in
your CrossEarth-SAR models folder (%s), named after the polygon layer and the date, so
closing QGIS never deletes it; the log names the file to choose in <i>Segment</i>.</p>
<p>Cancel stops training within seconds and keeps the last checkpoint beside the output
(<i>NAME.ckpt</i>). To go on from there, run Fine-tune again with the same output file and
<b>Continue a cancelled run</b> ticked.</p>
""" % (MODEL_HELP, "~/.local/share/CrossEarth-SAR/models on Linux")

# Single-layer formats ces reads as they are; anything else (layers of a multi-layer
# GeoPackage, selections, memory layers) is first saved to a temporary GeoPackage.
SINGLE_LAYER_FORMATS = ["shp", "geojson", "fgb"]


class FinetuneAlgorithm(CesAlgorithm):
    """``ces finetune --images ... --labels POLYGONS --class-field F -o OUT.safetensors``."""
    NAME = "finetune"
    DISPLAY_NAME = "Fine-tune model on labelled polygons"
    SHORT = "Teaches a model your classes or your area from polygons digitized over SAR scenes."
    README_SECTION = "Fine-tune model on labelled polygons"
    GROUP = "Training"
    GROUP_ID = "training"
    HELP = HELP
    TAGS = ("sar", "radar", "training", "fine-tune", "finetune", "labels", "polygons",
            "deep learning", "crossearth")

    COMMAND = "finetune"
    INPUT, LABELS, CLASS_FIELD, BASE = "INPUT", "LABELS", "CLASS_FIELD", "BASE"
    ITERATIONS, BATCH, LEARNING_RATE, TILE = "ITERATIONS", "BATCH", "LEARNING_RATE", "TILE"
    CLASSES, DEVICE, OUTPUT, RESUME = "CLASSES", "DEVICE", "OUTPUT", "RESUME"
    PEFT, ADAPTER_RANK, ADAPTER_CUTOFF = "PEFT", "ADAPTER_RANK", "ADAPTER_CUTOFF"
    PEFT_OPTIONS = ["Decoder only (backbone frozen)", "Earth-Adapter (adapters + decoder)"]
    PEFT_VALUES = ["none", "earth-adapter"]      # ces finetune --peft
    MULTI_RASTER_INPUTS = (INPUT,)
    MODEL_INPUTS = (BASE,)
    STAGE_WEIGHTS = {"read labels": 5.0, "train": 95.0}
    PARAMETERS = {"images": INPUT, "labels": LABELS, "class_field": CLASS_FIELD,
                  "model": BASE, "iters": ITERATIONS, "batch": BATCH,
                  "lr": LEARNING_RATE, "tile": TILE, "classes": CLASSES,
                  "device": DEVICE, "calibrated": CALIBRATED, "peft": PEFT,
                  "adapter_rank": ADAPTER_RANK,
                  "adapter_cutoff": ADAPTER_CUTOFF}

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.INPUT, self.tr("SAR scenes"), QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.LABELS, self.tr("Labelled polygons"), [QgsProcessing.TypeVectorPolygon]))
        self.addParameter(QgsProcessingParameterField(
            self.CLASS_FIELD, self.tr("Class field"), parentLayerParameterName=self.LABELS, optional=True))
        self.add_model_parameters(self.BASE, "Base model")
        self.addParameter(QgsProcessingParameterNumber(
            self.ITERATIONS, self.tr("Iterations"), QgsProcessingParameterNumber.Integer,
            defaultValue=500, minValue=1, maxValue=1_000_000))
        self.addParameter(self.device_parameter(self.DEVICE))
        advanced = [
            QgsProcessingParameterNumber(
                self.BATCH, self.tr("Batch size"), QgsProcessingParameterNumber.Integer,
                defaultValue=2, minValue=1, maxValue=256),
            QgsProcessingParameterNumber(
                self.LEARNING_RATE, self.tr("Learning rate"), QgsProcessingParameterNumber.Double,
                defaultValue=1e-4, minValue=1e-8, maxValue=1.0),
            QgsProcessingParameterNumber(
                self.TILE, self.tr("Training crop size (pixels)"), QgsProcessingParameterNumber.Integer,
                defaultValue=512, minValue=28, maxValue=4096),
            self.classes_file_parameter(self.CLASSES),
            QgsProcessingParameterEnum(
                self.PEFT, self.tr("Training method"), options=self.PEFT_OPTIONS, defaultValue=0),
            QgsProcessingParameterNumber(
                self.ADAPTER_RANK, self.tr("Adapter rank (Earth-Adapter)"),
                QgsProcessingParameterNumber.Integer, defaultValue=64, minValue=1, maxValue=4096),
            QgsProcessingParameterNumber(
                self.ADAPTER_CUTOFF, self.tr("Earth-Adapter frequency cutoff"),
                QgsProcessingParameterNumber.Double, defaultValue=0.3, minValue=0.01, maxValue=1.0),
        ]
        self.add_advanced(*advanced)
        self.add_calibrated_parameter()
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT, self.tr("Fine-tuned model"), fileFilter="CrossEarth-SAR models (*.safetensors)"))
        self.addParameter(QgsProcessingParameterBoolean(
            self.RESUME, self.tr("Continue a cancelled run of this output"), defaultValue=False))

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

    def class_field(self, parameters, context, feedback) -> str:
        """The Class field, or when it is empty (or the feature id, never a class) the
        polygons' field :func:`default_class_field` picks; the choice is logged."""
        name = (self.parameterAsString(parameters, self.CLASS_FIELD, context) or "").strip()
        if name and name.lower() != "fid":
            return name
        layer = self.parameterAsVectorLayer(parameters, self.LABELS, context)
        picked = default_class_field(layer.fields()) if layer is not None else None
        if picked is None:
            raise QgsProcessingException(
                "Class field: the labelled polygons have no field that could hold the classes. Add a "
                "text field (for example 'class') and fill it with each polygon's class name.")
        feedback.pushInfo(f"Class field: {picked}")
        return picked

    @staticmethod
    def _stopped(work_dir: str, out: str):
        """After a failed or cancelled run: the exception that says how to continue when a
        checkpoint is kept; None when there is none (the folder is then removed)."""
        if os.path.isfile(os.path.join(work_dir, "last.safetensors")):
            return QgsProcessingException(
                f"Training stopped; its last checkpoint is kept in {work_dir}. To go on from "
                f"there, run Fine-tune again with the same output file ({out}) and "
                "'Continue a cancelled run' ticked.")
        shutil.rmtree(work_dir, ignore_errors=True)
        return None

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
        class_field = self.class_field(parameters, context, feedback)
        labels = self.labels_file(parameters, context, feedback)
        out = self.model_output(parameters, context, feedback)
        # Checkpoints go beside the output (NAME.ckpt): kept when the run is cancelled, so
        # that "Continue a cancelled run" can pick it up; removed after a finished run.
        work_dir = checkpoint_folder(out)
        resume = self.parameterAsBool(parameters, self.RESUME, context)
        if resume and not os.path.isfile(os.path.join(work_dir, "last.safetensors")):
            raise QgsProcessingException(
                f"Continue a cancelled run: there is no checkpoint of {out} to continue "
                f"({work_dir} holds none). Untick it to start training afresh.")

        classes = (self.parameterAsFile(parameters, self.CLASSES, context) or "").strip()
        args = finetune_arguments(
            images, labels, out, iters=self.parameterAsInt(parameters, self.ITERATIONS, context),
            batch=self.parameterAsInt(parameters, self.BATCH, context),
            lr=self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
            tile=self.parameterAsInt(parameters, self.TILE, context),
            device=self.device_value(parameters, context), model=base, work_dir=work_dir,
            resume=resume, calibrated=self.calibrated_args(parameters, context),
            class_field=class_field, classes=classes,
            peft=self.peft_args(parameters, context))
        try:
            result = self.run_command(args, feedback, [out])
        except QgsProcessingException as e:
            stopped = self._stopped(work_dir, out)
            source = self.parameterAsVectorLayer(parameters, self.LABELS, context)
            if stopped is None and source is not None and labels in str(e):
                # name the user's layer, not the temporary copy handed to ces
                stopped = QgsProcessingException(str(e).replace(labels, f"'{source.name()}'"))
            raise (stopped or e) from None
        shutil.rmtree(work_dir, ignore_errors=True)
        feedback.pushInfo(f"Model saved: {out} (choose it as the Model in Segment)")
        done = result.done
        feedback.pushInfo(
            f"Trained {done.get('iterations')} iterations in {done.get('wall_s')} s; loss "
            f"{done.get('first_loss')} -> {done.get('final_loss')}; classes "
            f"{done.get('classes')}")
        return {self.OUTPUT: out}

    def model_output(self, parameters, context, feedback) -> str:
        """The output model path: the one chosen, or, when the output is left as a temporary
        file, a new file in the models folder (models_folder()) named after the polygon layer
        and the date, since Processing's temporary files are deleted when QGIS closes."""
        value = parameters.get(self.OUTPUT)
        if value is None or str(value).strip() in ("", QgsProcessing.TEMPORARY_OUTPUT):
            layer = self.parameterAsSource(parameters, self.LABELS, context)
            stem = getattr(layer, "sourceName", lambda: "")() or "labels"
            out = persistent_model_path(stem)
            feedback.pushInfo(f"Output: {out} (kept in your CrossEarth-SAR models folder)")
            return out
        out = self.output_path(parameters, self.OUTPUT, context)
        return out if out.lower().endswith(".safetensors") else out + ".safetensors"

    def peft_args(self, parameters, context) -> list:
        """``--peft earth-adapter --adapter-rank R --adapter-cutoff C`` when Earth-Adapter is
        chosen; nothing for decoder-only (ces's default)."""
        peft = self.PEFT_VALUES[self.parameterAsEnum(parameters, self.PEFT, context)]
        if peft == "none":
            return []
        return ["--peft", peft,
                "--adapter-rank", self.parameterAsInt(parameters, self.ADAPTER_RANK, context),
                "--adapter-cutoff", repr(self.parameterAsDouble(parameters, self.ADAPTER_CUTOFF, context))]


def persistent_model_path(stem: str, now: datetime.datetime | None = None) -> str:
    """``models_folder()/<stem>_<YYYY-MM-DD_HHMM>.safetensors`` (created; ``-2``... when
    taken); ``stem`` reduced to letters, digits, ``-`` and ``_``."""
    folder = models_folder()
    os.makedirs(folder, exist_ok=True)
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_") or "labels"
    base = f"{safe}_{(now or datetime.datetime.now()).strftime('%Y-%m-%d_%H%M')}"
    path, n = os.path.join(folder, base + ".safetensors"), 2
    while os.path.exists(path) or os.path.exists(checkpoint_folder(path)):
        path, n = os.path.join(folder, f"{base}-{n}.safetensors"), n + 1
    return path


def checkpoint_folder(model_path: str) -> str:
    """``NAME.ckpt`` beside ``NAME.safetensors`` (as ces finetune's default --work-dir)."""
    return os.path.splitext(model_path)[0] + ".ckpt"


def embedded_model() -> str:
    """The embedded model's path; QgsProcessingException when this installation has none."""
    path = embedded_model_path()
    if path is None:
        raise QgsProcessingException(
            f"Base model: no model comes with this installation (models/{EMBEDDED_MODEL_NAME} "
            "is missing from the plugin folder). Choose a CrossEarth-SAR model file "
            "(.safetensors) to start from.")
    return path


#: words that name a class field (matched case-insensitively inside field names)
CLASS_FIELD_WORDS = ("class", "label", "type", "landcover", "land_cover", "category")


def default_class_field(fields) -> str | None:
    """The field a user most likely put the classes in (QgsFields): a text field named like
    CLASS_FIELD_WORDS, else the first text field, else the first other field that is not the
    feature id; None when there is none."""
    names = [(f.name(), f.type()) for f in fields if f.name().lower() != "fid"]
    texts = [n for n, t in names if t == QVariant.String]
    for n in texts + [n for n, _ in names]:
        if any(w in n.lower() for w in CLASS_FIELD_WORDS):
            return n
    if texts:
        return texts[0]
    return names[0][0] if names else None
