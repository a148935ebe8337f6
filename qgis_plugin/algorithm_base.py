"""What every CrossEarth-SAR algorithm shares: input checks with actionable messages, the
``ces`` setting, running the command, and styling the layers it writes."""
from __future__ import annotations

import os
from typing import Iterable, Optional

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputHtml,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterVectorDestination,
    QgsProviderRegistry,
    QgsRasterLayer,
    QgsSettings,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..core.products.area_summary import area_lines
from .ces_process import SETTING_CES_EXECUTABLE, CesResult, resolve_ces, run_ces
from .class_style import (
    apply_class_style,
    model_config,
    style_class_raster,
    style_confidence_raster,
)
from .model_choice import LIST_SUFFIX, chosen_model, model_parameters
from .preview_page import preview_page
from .product_inputs import preparation_passes, preparation_weights, product_file

ICON_PATH = os.path.join(os.path.dirname(__file__), "icon.svg")
HOMEPAGE = "https://github.com/crossearth-sar/crossearth-sar"
DEVICE_OPTIONS = ["auto", "cpu", "cuda"]
#: ces --calibrated (input contract 3): detect, or say whether the scene is calibrated
CALIBRATED_OPTIONS = ["auto", "yes", "no"]
CALIBRATED = "CALIBRATED"
EMBEDDED_MODEL_HINT = "choose the built-in model in the Model list"


def readme_anchor(heading: str) -> str:
    """The anchor GitHub gives a README heading: lower case, punctuation dropped, spaces
    to hyphens ("Flood extent" -> "flood-extent")."""
    kept = "".join(c for c in heading.strip().lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def configured_ces() -> str:
    """The 'ces executable' Processing setting ('' when unset)."""
    try:
        from processing.core.ProcessingConfig import ProcessingConfig

        value = ProcessingConfig.getSetting(SETTING_CES_EXECUTABLE)
        if value is not None:
            return str(value)
    except ImportError:
        pass
    return str(QgsSettings().value(f"Processing/Configuration/{SETTING_CES_EXECUTABLE}", "") or "")


def tr(text: str) -> str:
    """``text`` translated in the plugin's context "CrossEarthSAR" (as it is when no
    translation is installed): every user-facing string of the algorithms goes through it."""
    return QCoreApplication.translate("CrossEarthSAR", text)


class LoadDefaultStyle(QgsProcessingLayerPostProcessorInterface):
    """After Processing loads an output layer, apply the style stored with its data.

    ces stores a categorized QML (the model's class colours) in the GeoPackage's
    ``layer_styles`` table; the class and confidence rasters get a ``NAME.qml`` beside them.
    A vector format that stores no style (GeoJSON, FlatGeobuf, Shapefile) gets the same
    categorized style from ``classes`` (the model's classes) instead.
    """

    _alive: list["LoadDefaultStyle"] = []

    def __init__(self, classes: Optional[list[dict]] = None, name: Optional[str] = None):
        super().__init__()
        self.classes = list(classes or [])
        self.name = name

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS's name)
        if layer is None or not layer.isValid():
            return
        if self.name:
            layer.setName(self.name)
        if isinstance(layer, QgsVectorLayer) and layer.renderer() is not None \
                and layer.renderer().type() == "categorizedSymbol":
            return
        if isinstance(layer, QgsRasterLayer) and layer.renderer() is not None \
                and layer.renderer().type() in ("paletted", "singlebandpseudocolor"):
            return
        _message, ok = layer.loadDefaultStyle()
        if not ok and isinstance(layer, QgsVectorLayer):
            ok = apply_class_style(layer, self.classes)
        if ok:
            layer.triggerRepaint()

    @classmethod
    def create(cls, classes: Optional[list[dict]] = None,
               name: Optional[str] = None) -> "LoadDefaultStyle":
        """A new instance per output layer, kept referenced here: Processing holds only a
        pointer until it loads the layer, and an instance must not be reused across runs.
        ``name``: the layer's name in the Layers panel (None: Processing's)."""
        instance = cls(classes, name)
        cls._alive = cls._alive[-63:] + [instance]
        return instance


class CesAlgorithm(QgsProcessingAlgorithm):
    """Base of the algorithms: a subclass sets its identity (NAME ... TAGS), COMMAND and the
    parameter name tuples."""

    NAME = ""            # algorithm id: crossearth_sar:NAME
    DISPLAY_NAME = ""
    GROUP = ""
    GROUP_ID = ""
    HELP = ""            # shortHelpString, HTML for an analyst
    SHORT = ""           # shortDescription: the toolbox tooltip, one sentence
    README_SECTION = ""  # the README heading helpUrl opens
    TAGS: tuple[str, ...] = ()
    COMMAND = ""
    RASTER_INPUTS: tuple[str, ...] = ()        # single raster layer parameters
    MULTI_RASTER_INPUTS: tuple[str, ...] = ()  # multiple raster layer parameters
    MODEL_INPUTS: tuple[str, ...] = ()         # optional model file parameters
    PRODUCTS: dict[str, str] = {}              # scene parameter -> its product file alternative
    PARAMETERS: dict[str, str] = {}            # ces parameter name -> this dialog's parameter
    STAGE_WEIGHTS: dict[str, float] = {}       # ces progress stages sharing one bar, in order

    # --- identity ---------------------------------------------------------------------
    def tr(self, text: str) -> str:
        """``text`` translated in the plugin's context (as it is when no translation exists)."""
        return tr(text)

    def add_advanced(self, *parameters) -> None:
        """Add parameters shown under the dialog's "Advanced Parameters"."""
        for parameter in parameters:
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(parameter)

    def add_model_parameters(self, name: str, label: str = "Model") -> None:
        """The model chooser (model_choice.py): the list ``name + "_LIST"`` and the file
        ``name`` (which wins when given)."""
        for parameter in model_parameters(name, tr(label), tr):
            self.addParameter(parameter)

    @staticmethod
    def device_parameter(name: str) -> QgsProcessingParameterEnum:
        """The device choice (auto, cpu, cuda) passed as ces --device."""
        return QgsProcessingParameterEnum(name, tr("Device"), options=DEVICE_OPTIONS, defaultValue=0)

    def device_value(self, parameters, context) -> str:
        """The ces --device value of the DEVICE parameter (see device_parameter)."""
        return DEVICE_OPTIONS[self.parameterAsEnum(parameters, self.DEVICE, context)]

    def add_calibrated_parameter(self) -> None:
        """The advanced "Calibrated" choice (auto, yes, no) of ces --calibrated: is the input calibrated backscatter."""
        self.add_advanced(QgsProcessingParameterEnum(
            CALIBRATED, tr("Calibrated (dB, power or amplitude)"),
            options=[tr("auto (detect)"), tr("yes"), tr("no (estimate a calibration)")],
            defaultValue=0))

    def calibrated_args(self, parameters, context) -> list:
        """["--calibrated", "yes" | "no"], or [] for auto (see add_calibrated_parameter)."""
        value = CALIBRATED_OPTIONS[self.parameterAsEnum(parameters, CALIBRATED, context)]
        return [] if value == "auto" else ["--calibrated", value]

    @staticmethod
    def classes_file_parameter(name: str) -> QgsProcessingParameterFile:
        """The optional classes file (YAML or JSON) of ces finetune / evaluate."""
        return QgsProcessingParameterFile(
            name, tr("Classes file (YAML or JSON)"), optional=True,
            fileFilter="Classes files (*.yaml *.yml *.json);;All files (*.*)")

    def createInstance(self):  # noqa: N802
        return type(self)()

    def name(self) -> str:
        return self.NAME

    def displayName(self) -> str:  # noqa: N802
        return self.tr(self.DISPLAY_NAME)

    def group(self) -> str:
        return self.tr(self.GROUP)

    def groupId(self) -> str:  # noqa: N802
        return self.GROUP_ID

    def shortHelpString(self) -> str:  # noqa: N802
        """HELP as one line: QGIS's help panel makes a paragraph of every newline."""
        return self.tr(" ".join(self.HELP.split()))

    def tags(self) -> list[str]:
        return list(self.TAGS)

    def icon(self) -> QIcon:
        return QIcon(ICON_PATH)

    def svgIconPath(self) -> str:  # noqa: N802
        return ICON_PATH

    def helpUrl(self) -> str:  # noqa: N802
        """The README section of this algorithm (its heading is README_SECTION)."""
        return f"{HOMEPAGE}#{readme_anchor(self.README_SECTION)}"

    def shortDescription(self) -> str:  # noqa: N802
        """The Processing Toolbox's tooltip: one sentence."""
        return self.tr(self.SHORT)

    def canExecute(self):  # noqa: N802
        """False, with the way to set one up, while no engine (``ces``) is found: the
        algorithms stay listed and say so before running."""
        try:
            resolve_ces(configured_ces())
        except QgsProcessingException as e:
            return False, str(e)
        return True, ""

    # --- input checks -----------------------------------------------------------------
    def checkParameterValues(self, parameters, context):  # noqa: N802
        try:
            for name in self.RASTER_INPUTS + self.MULTI_RASTER_INPUTS:
                self.scene_files(parameters, name, context)
            for name in self.MODEL_INPUTS:
                self.model_file(parameters, name, context)
            self.check_extra(parameters, context)
        except QgsProcessingException as e:
            return False, str(e)
        return super().checkParameterValues(parameters, context)

    def hasHtmlOutputs(self) -> bool:  # noqa: N802
        """False: QGIS's dialog then never says "HTML output has been generated" (it says so
        from the declaration alone, even when no page was written or the run failed); a
        written page still reaches the Results Viewer."""
        return False

    def check_extra(self, parameters, context) -> None:
        """Algorithm-specific checks; raise QgsProcessingException with what to do."""

    def _label(self, name: str) -> str:
        definition = self.parameterDefinition(name)
        return definition.description().split(" (")[0] if definition is not None else name

    @staticmethod
    def _shown(value) -> str:
        if value is None:
            return "(nothing)"
        if hasattr(value, "name") and callable(value.name):
            return value.name()
        if hasattr(value, "source"):  # QgsProcessingFeatureSourceDefinition and friends
            try:
                return value.source.staticValue()
            except Exception:  # noqa: BLE001
                pass
        return str(value)

    def layer_file(self, layer, label: str, shown: str, kind: str = "raster") -> str:
        """The file behind ``layer``; QgsProcessingException when ces cannot read it."""
        if layer is None or not layer.isValid():
            if kind == "raster":
                raise QgsProcessingException(
                    f"{label}: '{shown}' is not a raster layer. Choose a SAR raster that GDAL "
                    "can read (for example a Sentinel-1 GeoTIFF); vector layers and other "
                    "files cannot be used here.")
            raise QgsProcessingException(f"{label}: '{shown}' is not a layer QGIS can open.")
        provider = layer.providerType()
        if provider not in ("gdal", "ogr"):
            raise QgsProcessingException(
                f"{label}: layer '{layer.name()}' comes from the '{provider}' provider, not "
                "from a file, and CrossEarth-SAR reads files. Save it to a GeoTIFF first (Raster > "
                "Conversion > Translate, or right-click > Export > Save As...) and use that.")
        source = layer.source()
        if os.path.exists(source):
            return source
        decoded = QgsProviderRegistry.instance().decodeUri(provider, source)
        path = decoded.get("path") or ""
        if path and os.path.exists(path) and not decoded.get("layerName") \
                and not decoded.get("layerId"):
            return path
        if path and not os.path.exists(path):
            raise QgsProcessingException(f"{label}: the file {path} does not exist.")
        return source  # a GDAL/OGR connection string (/vsizip/..., NETCDF:...): passed as is

    def raster_file(self, parameters, name: str, context) -> str:
        """The file path of a raster layer parameter (actionable error when it is not one)."""
        layer = self.parameterAsRasterLayer(parameters, name, context)
        return self.layer_file(layer, self._label(name), self._shown(parameters.get(name)))

    def scene_files(self, parameters, name: str, context) -> list[str]:
        """The scene file(s) of a raster (or multiple-raster) parameter, or of its Sentinel-1
        product alternative (PRODUCTS, qgis_plugin/product_inputs.py) when that is given."""
        alternative = self.PRODUCTS.get(name)
        if alternative is not None:
            product = product_file(self.parameterAsFile(parameters, alternative, context),
                                   self._label(alternative))
            if product is not None:
                return [product]
            if not parameters.get(name):
                raise QgsProcessingException(
                    f"{self._label(name)}: no scene given. Choose a SAR raster layer, or a "
                    f"Sentinel-1 product file in '{self._label(alternative)}'.")
        if name in self.MULTI_RASTER_INPUTS:
            return self.raster_files(parameters, name, context)
        return [self.raster_file(parameters, name, context)]

    def raster_files(self, parameters, name: str, context) -> list[str]:
        """The file paths of a multiple-raster parameter (at least one)."""
        layers = self.parameterAsLayerList(parameters, name, context)
        values = parameters.get(name)
        if not isinstance(values, (list, tuple)):
            values = [values]
        if not layers:
            raise QgsProcessingException(
                f"{self._label(name)}: no raster layer given ('{self._shown(values)}'). Choose "
                "one or more SAR rasters (GeoTIFF or any raster GDAL can read).")
        paths = []
        for i, layer in enumerate(layers):
            if not isinstance(layer, QgsRasterLayer):
                shown = layer.name() if layer is not None else self._shown(values[min(i, len(values) - 1)])
                raise QgsProcessingException(
                    f"{self._label(name)}: '{shown}' is not a raster layer. Choose SAR rasters "
                    "that GDAL can read (for example Sentinel-1 GeoTIFFs).")
            paths.append(self.layer_file(layer, self._label(name), layer.name()))
        if len(layers) < len(values):
            raise QgsProcessingException(
                f"{self._label(name)}: some of {self._shown(values)} could not be opened as "
                "raster layers. Choose SAR rasters that GDAL can read.")
        return paths

    def model_file(self, parameters, name: str, context) -> Optional[str]:
        """The model path of a model chooser, None for the built-in default."""
        listed = name + LIST_SUFFIX
        try:
            path, _ = chosen_model(self.parameterAsFile(parameters, name, context) or "",
                                   self.parameterAsEnumString(parameters, listed, context)
                                   if self.parameterDefinition(listed) else None)
        except LookupError as missing:
            raise QgsProcessingException(
                f"{self._label(listed)}: the model '{missing}' is no longer in your models "
                f"folder. Choose another one in the list, or a model file.") from None
        if not path:
            return None
        if not os.path.isfile(path):
            raise QgsProcessingException(
                f"{self._label(name)}: the model file {path} does not exist. Choose a "
                "CrossEarth-SAR model (.safetensors, e.g. one written by the Fine-tune "
                f"algorithm), or {EMBEDDED_MODEL_HINT}.")
        if model_config(path) is None:
            raise QgsProcessingException(
                f"{self._label(name)}: {path} is not a CrossEarth-SAR model (no CrossEarth-SAR "
                "header in the file). Choose a .safetensors file written by CrossEarth-SAR, "
                f"or {EMBEDDED_MODEL_HINT}.")
        return path

    def output_path(self, parameters, name: str, context, optional: bool = False) -> Optional[str]:
        """The file path of a destination parameter (None for an optional one left unset)."""
        definition = self.parameterDefinition(name)
        kind = definition.type() if definition is not None else ""
        if kind in ("vectorDestination", "rasterDestination", "sink"):
            path = self.parameterAsOutputLayer(parameters, name, context)
        else:
            path = self.parameterAsFileOutput(parameters, name, context)
        if not path:
            if optional:
                return None
            raise QgsProcessingException(f"{self._label(name)}: no output file given.")
        if path.startswith(("ogr:", "postgres:", "memory:", "postgis:")):
            raise QgsProcessingException(
                f"{self._label(name)}: CrossEarth-SAR writes files; choose 'Save to File...' "
                f"instead of '{path.split(':')[0]}'.")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise QgsProcessingException(
                f"{self._label(name)}: the folder {folder} does not exist; choose an existing "
                "folder for the output.")
        return path

    @staticmethod
    def is_set(parameters, name: str) -> bool:
        """True when an optional parameter has a value (not None, not an empty string)."""
        value = parameters.get(name)
        return value is not None and not (isinstance(value, str) and not value.strip())

    # --- running ------------------------------------------------------------------------
    def word_parameter(self, name: str) -> str:
        """A parameter that a ces message names (core.errors: ``tile``, ``class_field``...) in
        this dialog's words: its label, quoted; its own name where the dialog has none."""
        parameter = self.PARAMETERS.get(name)
        if parameter is None or self.parameterDefinition(parameter) is None:
            return f"'{name}'"
        return f"'{self._label(parameter)}'"

    def run_command(self, args: Iterable[object], feedback: QgsProcessingFeedback,
                    outputs: Iterable[Optional[str]]) -> CesResult:
        """Run ``ces COMMAND ARGS --progress json``; outputs are removed after Cancel/failure."""
        args = [str(a) for a in args]
        return run_ces([self.COMMAND, *args, "--progress", "json"], feedback,
                       [o for o in outputs if o], configured_executable=configured_ces(),
                       word_parameter=self.word_parameter, stage_weights=self.stage_weights(args),
                       stage_passes=self.stage_passes(args))

    def stage_weights(self, args: list[str]) -> dict[str, float]:
        """The stages sharing the progress bar: STAGE_WEIGHTS, after the preparation's stages
        when a scene of ``args`` is a Sentinel-1 product (ces prepares it first)."""
        return preparation_weights(args, self.STAGE_WEIGHTS)

    def stage_passes(self, args: list[str]) -> dict[str, int]:
        """How often each preparation stage runs: once per product of ``args``."""
        return preparation_passes(args)

    @staticmethod
    def style_on_load(context: QgsProcessingContext, path: Optional[str],
                      classes: Optional[list[dict]] = None, name: Optional[str] = None) -> None:
        """Apply the style stored with ``path`` when Processing loads it (for a vector format
        that stores none, the categorized style of ``classes``), and name the layer ``name``
        (core.products.layer_style.layer_name)."""
        if path and context.willLoadLayerOnCompletion(path):
            details = context.layerToLoadOnCompletionDetails(path)
            if name:
                details.name = name
            details.setPostProcessor(LoadDefaultStyle.create(classes, name))

    def add_map_parameters(self, polygons_label: str) -> None:
        """The parameters a map algorithm (Segment, Flood extent) shares, after its inputs:
        model, tile size and overlap, device, minimum area, simplify tolerance, tiles per batch
        and calibration (advanced), the polygons (``polygons_label``), class raster, confidence
        raster and preview outputs (see :meth:`map_values`)."""
        number = QgsProcessingParameterNumber
        self.add_model_parameters(self.MODEL)
        self.addParameter(number(self.TILE, tr("Tile size (pixels)"), number.Integer,
                                 defaultValue=512, minValue=16, maxValue=8192))
        self.addParameter(number(self.OVERLAP, tr("Tile overlap (pixels)"), number.Integer,
                                 defaultValue=128, minValue=0, maxValue=4096))
        self.addParameter(self.device_parameter(self.DEVICE))
        self.addParameter(number(self.MIN_AREA, tr("Minimum area (m²)"), number.Double,
                                 defaultValue=None, optional=True, minValue=0.0))
        self.addParameter(number(self.SIMPLIFY, tr("Simplify tolerance (m)"), number.Double,
                                 defaultValue=None, optional=True, minValue=0.0))
        self.add_advanced(number(self.BATCH, tr("Tiles per batch"), number.Integer,
                                 defaultValue=4, minValue=1, maxValue=256))
        self.add_calibrated_parameter()
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.OUTPUT, polygons_label, QgsProcessing.TypeVectorPolygon))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_RASTER, tr("Class raster"), optional=True, createByDefault=False))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.OUTPUT_CONFIDENCE, tr("Confidence raster"), optional=True,
            createByDefault=False))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.OUTPUT_PREVIEW, tr("Preview picture (PNG)"),
            fileFilter="PNG pictures (*.png)", optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputHtml(self.PREVIEW_HTML, tr("Preview (Results Viewer)")))

    def map_values(self, parameters, context) -> dict:
        """The values a map algorithm (Segment, Flood extent) passes to ces_arguments: the
        outputs (output, raster, confidence, preview), the window and device options, the
        calibration choice and the set ones of min_area / simplify."""
        values = {
            "output": self.output_path(parameters, self.OUTPUT, context),
            "raster": self.output_path(parameters, self.OUTPUT_RASTER, context, optional=True),
            "confidence": self.output_path(parameters, self.OUTPUT_CONFIDENCE, context,
                                           optional=True),
            "preview": self.output_path(parameters, self.OUTPUT_PREVIEW, context, optional=True),
            "tile": self.parameterAsInt(parameters, self.TILE, context),
            "overlap": self.parameterAsInt(parameters, self.OVERLAP, context),
            "batch": self.parameterAsInt(parameters, self.BATCH, context),
            "device": self.device_value(parameters, context),
            "calibrated": self.calibrated_args(parameters, context)}
        values.update({key: self.parameterAsDouble(parameters, name, context)
                       for key, name in (("min_area", self.MIN_AREA), ("simplify", self.SIMPLIFY))
                       if self.is_set(parameters, name)})
        return values

    def map_results(self, context, feedback, result, classes: list[dict], names: list[str],
                    out: str, raster, confidence, preview) -> dict:
        """Style and name the layers Processing loads (polygons, class raster, confidence
        raster: ``names`` in that order), log the outputs, and the results dict with the
        preview's HTML page, keyed by the map algorithm's OUTPUT... parameter names."""
        self.style_on_load(context, out, classes, names[0])
        if raster and style_class_raster(raster, classes):
            self.style_on_load(context, raster, name=names[1])
        if confidence and style_confidence_raster(confidence):
            self.style_on_load(context, confidence, name=names[2])
        for key, value in result.outputs.items():
            feedback.pushInfo(f"{key}: {value}")
        areas = (result.done or {}).get("class_area_m2") or {}
        if areas:
            feedback.pushInfo("Area per class (geodesic):\n" + "\n".join(area_lines(areas)))
        page = preview_page(preview, names[0]) if preview else None
        return {self.OUTPUT: out, self.OUTPUT_RASTER: raster, self.OUTPUT_CONFIDENCE: confidence,
                self.OUTPUT_PREVIEW: preview, self.PREVIEW_HTML: page}
