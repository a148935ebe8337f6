"""The QGIS Processing provider in real QGIS 3.22, in-process: registration, actionable errors,
running the real ``ces`` as a child process, progress, Cancel, styled outputs."""
from __future__ import annotations

import configparser
import re
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("qgis.core")

from _helpers_qgis import (  # noqa: E402
    DEMO_SCENE,
    REPO,
    ces_setting,
    files_named_like,
    processes_mentioning,
    recording_feedback,
    write_synthetic_scene,
)

pytestmark = pytest.mark.qgis

ALGORITHMS = {"segment", "flood_extent", "prepare", "descriptors", "finetune", "evaluate", "setup_engine"}


def _run(alg: str, params: dict, feedback=None):
    import processing

    return processing.run(f"crossearth_sar:{alg}", params, feedback=feedback)


def _vector_file(path: Path) -> Path:
    """A small GeoPackage of points: a real file that is not a raster."""
    from qgis.core import QgsCoordinateTransformContext, QgsFeature, QgsGeometry, QgsPointXY, QgsVectorFileWriter, QgsVectorLayer

    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=name:string", "points", "memory")
    feature = QgsFeature(layer.fields())
    feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(-6.0, 40.0)))
    feature["name"] = "a"
    layer.dataProvider().addFeatures([feature])
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    err = QgsVectorFileWriter.writeAsVectorFormatV3(
        layer, str(path), QgsCoordinateTransformContext(), options)
    assert err[0] == QgsVectorFileWriter.NoError, err
    del layer
    return path


# --- registration ---------------------------------------------------------------------------
def test_provider_registers_with_id_and_algorithms(ces_provider):
    from processing.core.ProcessingConfig import ProcessingConfig
    from qgis.core import QgsApplication

    from crossearth_sar.qgis_plugin.ces_process import SETTING_CES_EXECUTABLE
    from crossearth_sar.version import __version__

    assert ces_provider.id() == "crossearth_sar"
    assert ces_provider.name() == "CrossEarth-SAR"
    assert ces_provider.versionInfo() == __version__
    assert not ces_provider.icon().isNull()
    assert {a.name() for a in ces_provider.algorithms()} == ALGORITHMS
    for name in ALGORITHMS:
        alg = QgsApplication.processingRegistry().algorithmById(f"crossearth_sar:{name}")
        assert alg is not None, name
        assert len(alg.shortHelpString()) > 300, name   # written for an analyst
        assert alg.displayName() and alg.group()
    assert SETTING_CES_EXECUTABLE in ProcessingConfig.settings


def test_segment_and_finetune_declare_their_parameters(ces_provider):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("crossearth_sar:segment")
    names = {p.name() for p in alg.parameterDefinitions()}
    assert {"INPUT", "MODEL", "TILE", "OVERLAP", "DEVICE", "MIN_AREA", "SIMPLIFY", "OUTPUT",
            "OUTPUT_RASTER", "OUTPUT_CONFIDENCE"} <= names
    assert alg.parameterDefinition("MODEL").flags() & alg.parameterDefinition("MODEL").FlagOptional
    assert alg.parameterDefinition("OUTPUT").type() == "vectorDestination"
    assert not alg.parameterDefinition("OUTPUT_RASTER").createByDefault()
    finetune = QgsApplication.processingRegistry().algorithmById("crossearth_sar:finetune")
    assert {"INPUT", "LABELS", "CLASS_FIELD", "BASE", "ITERATIONS", "OUTPUT"} <= {
        p.name() for p in finetune.parameterDefinitions()}
    assert finetune.parameterDefinition("CLASS_FIELD").parentLayerParameterName() == "LABELS"


def test_plugin_unload_removes_and_init_restores_provider(ces_plugin):
    from qgis.core import QgsApplication

    from crossearth_sar import classFactory

    registry = QgsApplication.processingRegistry()
    ces_plugin.unload()                         # the session's plugin, put back below
    assert registry.providerById("crossearth_sar") is None
    plugin = classFactory(None)                 # what QGIS calls
    plugin.initProcessing()
    plugin.initGui()                            # idempotent
    assert registry.providerById("crossearth_sar") is not None
    assert registry.algorithmById("crossearth_sar:segment") is not None
    plugin.unload()
    assert registry.providerById("crossearth_sar") is None
    ces_plugin.initProcessing()
    assert registry.algorithmById("crossearth_sar:segment") is not None


# --- actionable errors ----------------------------------------------------------------------
def test_non_raster_input_is_refused_with_advice(ces_provider, tmp_path):
    from qgis.core import QgsProcessingException

    points = _vector_file(tmp_path / "points.gpkg")
    for alg in ("segment", "descriptors"):
        with pytest.raises(QgsProcessingException) as err:
            _run(alg, {"INPUT": str(points), "OUTPUT": str(tmp_path / "out.gpkg")})
        message = str(err.value)
        assert "points.gpkg" in message and "is not a raster layer" in message
        assert "Choose a SAR raster" in message
    assert not (tmp_path / "out.gpkg").exists()


def test_missing_model_file_is_refused_with_advice(ces_provider, tmp_path):
    from qgis.core import QgsProcessingException

    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(QgsProcessingException) as err:
        _run("segment", {"INPUT": str(DEMO_SCENE), "MODEL": str(missing),
                         "OUTPUT": str(tmp_path / "out.gpkg")})
    message = str(err.value)
    assert str(missing) in message and "does not exist" in message
    assert "built-in model in the Model list" in message and ".safetensors" in message


def test_missing_ces_executable_says_how_to_set_it(ces_provider, tmp_path, monkeypatch):
    from qgis.core import QgsProcessingException

    params = {"INPUT": str(DEMO_SCENE), "OUTPUT": str(tmp_path / "d.tif")}
    with ces_setting(str(tmp_path / "no" / "ces")):
        with pytest.raises(QgsProcessingException) as err:
            _run("descriptors", params)
    message = str(err.value)
    assert "does not exist" in message
    assert "Settings > Options > Processing > Providers > CrossEarth-SAR" in message

    # Unset: no managed engine, and `ces` looked up on PATH, which has none here.
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CES_ENGINE_HOME", str(tmp_path / "engines"))
    monkeypatch.delenv("CES_EXECUTABLE", raising=False)
    with ces_setting(""):
        with pytest.raises(QgsProcessingException) as err:
            _run("descriptors", params)
    assert "No CrossEarth-SAR engine was found" in str(err.value)
    assert "Plugins > CrossEarth-SAR > Set up CrossEarth-SAR engine" in str(err.value)
    assert not (tmp_path / "d.tif").exists()


def test_plugin_invites_engine_setup_when_there_is_none(ces_plugin, tmp_path, monkeypatch):
    """The engine invitation: right after installing (no engine anywhere), QGIS's message bar
    says the engine is needed, with a button that starts the setup; with an engine, nothing is
    shown."""
    from qgis.gui import QgsMessageBar
    from qgis.PyQt.QtWidgets import QPushButton

    from crossearth_sar.qgis_plugin.plugin import CrossEarthSARPlugin

    class Desktop:            # the one part of QgisInterface this uses, backed by a real bar
        def __init__(self):
            self.bar = QgsMessageBar()

        def messageBar(self):  # noqa: N802
            return self.bar

    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CES_ENGINE_HOME", str(tmp_path / "engines"))
    monkeypatch.delenv("CES_EXECUTABLE", raising=False)
    desktop = Desktop()
    plugin = CrossEarthSARPlugin(desktop)
    started = []
    plugin.setup_engine = lambda: started.append(True)
    with ces_setting(""):
        assert plugin.invite_engine_setup() is True
    assert desktop.bar.currentItem() is plugin.invitation
    assert "needs its engine" in plugin.invitation.text()
    buttons = plugin.invitation.findChildren(QPushButton)
    assert [b.text() for b in buttons if "Set up" in b.text()] == ["Set up engine…"]
    [b for b in buttons if "Set up" in b.text()][0].click()
    assert started == [True]
    with ces_setting(sys.executable):   # an engine (a Python with the package) is found
        assert CrossEarthSARPlugin(Desktop()).invite_engine_setup() is False


def test_the_invitation_goes_when_a_setup_succeeds_in_any_thread(ces_plugin, tmp_path, monkeypatch):
    """After a successful setup the "needs its engine" bar goes away at once (no restart):
    the success is announced from the Processing algorithm's worker thread, and the bar is
    changed in the GUI thread. A failed setup (no Python to build with) leaves it up."""
    import threading

    import processing
    from qgis.core import QgsApplication, QgsProcessingException
    from qgis.gui import QgsMessageBar

    from crossearth_sar.qgis_plugin.engine_events import announce_engine_ready, on_engine_ready
    from crossearth_sar.qgis_plugin.plugin import CrossEarthSARPlugin

    class Desktop:
        def __init__(self):
            self.bar = QgsMessageBar()

        def messageBar(self):  # noqa: N802
            return self.bar

    monkeypatch.setenv("PATH", str(tmp_path))          # no engine, and no Python to build one
    monkeypatch.setenv("CES_ENGINE_HOME", str(tmp_path / "engines"))
    monkeypatch.setenv("UV_PYTHON_INSTALL_DIR", str(tmp_path / "no-uv-pythons"))
    monkeypatch.delenv("CES_EXECUTABLE", raising=False)
    monkeypatch.delenv("CES_ENGINE_PYTHON", raising=False)
    desktop = Desktop()
    plugin = CrossEarthSARPlugin(desktop)
    stop = on_engine_ready(plugin.engine_ready)
    try:
        with ces_setting(""):
            assert plugin.invite_engine_setup() is True
            with pytest.raises(QgsProcessingException, match="No Python 3.10"):
                processing.run("crossearth_sar:setup_engine", {"FOLDER": str(tmp_path / "engines")})
        QgsApplication.processEvents()
        assert desktop.bar.currentItem() is plugin.invitation       # failed: still up

        seen = []
        worker = threading.Thread(target=announce_engine_ready, args=(str(tmp_path / "e"),))
        worker.start()
        worker.join()
        for _ in range(20):
            QgsApplication.processEvents()
            if desktop.bar.currentItem() is None:
                break
        seen.append(desktop.bar.currentItem())
        assert seen == [None] and plugin.invitation is None
        announce_engine_ready(str(tmp_path / "e"))                 # twice: nothing to do
        QgsApplication.processEvents()
        assert desktop.bar.currentItem() is None
    finally:
        stop()


def test_a_parameter_ces_refuses_is_named_by_its_dialog_label(with_venv_ces, tmp_path):
    """ces's JSON error event names the parameter (``min_area``); the dialog words it as its
    own label, and a parameter it does not have by its name (no regex over flags)."""
    from qgis.core import QgsApplication, QgsProcessingException

    with pytest.raises(QgsProcessingException) as caught:
        _run("segment", {"INPUT": str(DEMO_SCENE), "MIN_AREA": 1e12,
                         "OUTPUT": str(tmp_path / "o.gpkg")})
    message = str(caught.value)
    assert "'Minimum area' 1e+12: not smaller than the whole scene" in message, message
    assert "--min-area" not in message and not (tmp_path / "o.gpkg").exists()
    alg = QgsApplication.processingRegistry().algorithmById("crossearth_sar:segment")
    assert alg.word_parameter("tile") == "'Tile size'"
    assert alg.word_parameter("overwrite") == "'overwrite'"


def test_overlap_not_smaller_than_tile_is_refused(ces_provider, tmp_path):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="overlap .* must be smaller"):
        _run("segment", {"INPUT": str(DEMO_SCENE), "TILE": 256, "OVERLAP": 256,
                         "OUTPUT": str(tmp_path / "o.gpkg")})


def test_scene_without_georeferencing_is_refused_up_front(ces_provider, tmp_path):
    """In QGIS a result in pixel coordinates is useless: refused up front, saying how to fix it."""
    import numpy as np
    import rasterio
    from qgis.core import QgsProcessingException

    path = tmp_path / "bare.tif"
    with rasterio.open(path, "w", driver="GTiff", width=64, height=64, count=1,
                       dtype="float32") as dst:
        dst.write(np.full((1, 64, 64), -10.0, np.float32))
    with pytest.raises(QgsProcessingException) as err:
        _run("segment", {"INPUT": str(path), "OUTPUT": str(tmp_path / "o.gpkg")})
    assert "no georeferencing" in str(err.value) and "Assign Projection" in str(err.value)
    assert not (tmp_path / "o.gpkg").exists()


# --- running the real ces ---------------------------------------------------------------------
def test_descriptors_runs_ces_through_a_python_interpreter(ces_provider, tmp_path):
    """The setting may name a Python interpreter; progress and stage reach the feedback."""
    from qgis.core import QgsRasterLayer

    feedback = recording_feedback()
    with ces_setting(sys.executable):
        result = _run("descriptors", {"INPUT": str(DEMO_SCENE), "TILE": 128, "STRIDE": 64,
                                      "OUTPUT": "TEMPORARY_OUTPUT"}, feedback)
    out = Path(result["OUTPUT"])
    assert out.suffix == ".tif" and out.is_file()
    assert any("-m crossearth_sar.crossearth_cli.main descriptors" in c for c in feedback.commands)
    assert feedback.texts == ["Starting the CrossEarth-SAR engine (PyTorch and the model)",
                              "Measuring the descriptors, tile by tile"]
    assert feedback.progress_values and max(feedback.progress_values) == 100
    layer = QgsRasterLayer(str(out), "d")
    scene = QgsRasterLayer(str(DEMO_SCENE), "s")
    assert layer.isValid() and layer.bandCount() == 3
    assert layer.crs() == scene.crs()
    assert layer.width() == len(range(0, scene.width(), 64))
    del layer, scene


def test_ces_failure_becomes_processing_exception(with_venv_ces, tmp_path):
    """A scene ces rejects (entirely nodata): the one-line reason is the exception's message
    (Processing reports it, once: see test_qgis_results.py), and no output is left."""
    import numpy as np
    import rasterio
    from qgis.core import QgsProcessingException
    from rasterio.transform import from_origin

    scene = tmp_path / "empty_scene.tif"
    with rasterio.open(scene, "w", driver="GTiff", width=64, height=64, count=1,
                       dtype="float32", crs="EPSG:32630", transform=from_origin(0, 0, 10, 10),
                       nodata=float("nan")) as dst:
        dst.write(np.full((1, 64, 64), np.nan, dtype="float32"))
    feedback = recording_feedback()
    out = tmp_path / "d.tif"
    with pytest.raises(QgsProcessingException) as err:
        _run("descriptors", {"INPUT": str(scene), "TILE": 32, "OUTPUT": str(out)}, feedback)
    assert "empty_scene.tif" in str(err.value) and "nodata" in str(err.value)
    assert files_named_like(tmp_path, "d.") == []


def _cancel_run(alg: str, params: dict, out: Path):
    """Run, press Cancel at the first progress; the child must be gone within 5 s and no
    output (nor temporary) left."""
    from qgis.core import QgsProcessingException

    feedback = recording_feedback(cancel_when_progress_above=0.0)
    with pytest.raises(QgsProcessingException, match="Canceled"):
        _run(alg, params, feedback)
    stopped = time.monotonic()
    assert feedback.canceled_at is not None, "the run ended before any progress"
    assert stopped - feedback.canceled_at < 5.0
    assert processes_mentioning(str(out)) == []
    assert files_named_like(out.parent, out.stem) == []
    return feedback


def test_cancel_from_the_toolbox_task_interrupts_ces_and_leaves_nothing(with_venv_ces, tmp_path):
    """As in the toolbox: the algorithm runs in a QgsProcessingAlgRunnerTask (worker thread)
    and Cancel comes from the main thread. SIGINT suffices: ces removes its own temporaries."""
    from qgis.core import QgsApplication, QgsProcessingAlgRunnerTask, QgsProcessingContext

    scene = write_synthetic_scene(tmp_path / "big_scene.tif", size=1024)
    out = tmp_path / "cancel_descriptors.tif"
    alg = QgsApplication.processingRegistry().createAlgorithmById("crossearth_sar:descriptors")
    context, feedback = QgsProcessingContext(), recording_feedback()
    task = QgsProcessingAlgRunnerTask(
        alg, {"INPUT": str(scene), "TILE": 8, "STRIDE": 2, "OUTPUT": str(out)}, context, feedback)
    finished = {}
    task.executed.connect(lambda ok, results: finished.update(ok=ok, results=results))
    QgsApplication.taskManager().addTask(task)
    canceled_at, deadline = None, time.monotonic() + 120
    while not finished and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.02)
        if canceled_at is None and feedback.progress_values:
            canceled_at = time.monotonic()
            task.cancel()
    assert canceled_at is not None and finished, "the task neither progressed nor finished"
    assert finished["ok"] is False
    assert time.monotonic() - canceled_at < 5.0
    assert processes_mentioning(str(out)) == []
    assert files_named_like(tmp_path, out.stem) == []
    # SIGINT suffices: ces stopped by itself, it was not killed after the grace (the "killing"
    # line would say whether the child was still running or had exited unnoticed)
    assert not any("killing" in info for info in feedback.infos), feedback.infos


# --- segment (needs `ces segment` and a model) ------------------------------------------------
def test_segment_writes_styled_geopackage_and_loads_it_styled(with_venv_ces, tiny_model, tmp_path):
    """The demo scene through processing.runAndLoadResults (what the toolbox does): the
    GeoPackage has the fields of docs/contracts.md §6 and the input's CRS, opens with a categorized
    renderer (one category per model class), and the layer put in the project is styled."""
    import processing
    from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer

    from crossearth_sar.core.models import checkpoints

    out = tmp_path / "landcover.gpkg"
    classes = tmp_path / "classes.tif"
    feedback = recording_feedback()
    result = processing.runAndLoadResults("crossearth_sar:segment", {
        "INPUT": str(DEMO_SCENE), "MODEL": str(tiny_model), "TILE": 512, "OVERLAP": 0,
        "DEVICE": 1, "OUTPUT": str(out), "OUTPUT_RASTER": str(classes)}, feedback=feedback)
    assert result["OUTPUT"] == str(out) and result["OUTPUT_RASTER"] == str(classes)
    assert feedback.progress_values and max(feedback.progress_values) == 100
    assert feedback.progress_values == sorted(feedback.progress_values)   # one bar, all stages
    assert "Making polygons" in feedback.texts

    layer = QgsVectorLayer(str(out), "landcover", "ogr")
    scene = QgsRasterLayer(str(DEMO_SCENE), "scene")
    assert layer.isValid() and layer.featureCount() > 0
    names = [f.name() for f in layer.fields()]
    for field in ("class_id", "class_name", "area_m2", "mean_confidence"):
        assert field in names
    assert layer.crs() == scene.crs()
    renderer = layer.renderer()
    assert renderer.type() == "categorizedSymbol"
    cats = renderer.categories()   # keep the list alive before touching its symbols
    model_classes = checkpoints.read_config(tiny_model)["classes"]
    assert len(cats) == len(model_classes)
    assert {c.label() for c in cats} == {c["name"] for c in model_classes}
    assert all(c.symbol() is not None for c in cats)
    class_layer = QgsRasterLayer(str(classes), "c")   # styled by its saved classes.qml
    assert class_layer.isValid() and class_layer.renderer().type() == "paletted"
    assert {c.label for c in class_layer.renderer().classes()} == {"land", "water"}

    loaded = [lyr for lyr in QgsProject.instance().mapLayers().values()
              if lyr.source().startswith(str(out))]
    assert len(loaded) == 1 and loaded[0].renderer().type() == "categorizedSymbol"
    # layer names say the scene, what the layer shows and the model ("land" is
    # the background class of the tiny model, so the polygons are named after water)
    assert loaded[0].name() == "Spain_7370579_S1Hand \u2013 water (tiny)"
    class_loaded = [lyr for lyr in QgsProject.instance().mapLayers().values()
                    if lyr.source() == str(classes)]
    assert [lyr.name() for lyr in class_loaded] == ["Spain_7370579_S1Hand \u2013 class raster (tiny)"]
    del layer, scene, renderer, cats, loaded, class_layer, class_loaded
    QgsProject.instance().removeAllMapLayers()


def test_cancel_segment_kills_ces_and_leaves_nothing(with_venv_ces, tiny_model, tmp_path,
                                                    monkeypatch):
    """Cancel mid-inference on a larger scene, with no grace after SIGINT, so that ces is
    killed before it can clean up: the provider removes its temporaries and work folder."""
    from crossearth_sar.qgis_plugin import ces_process

    monkeypatch.setattr(ces_process, "INTERRUPT_GRACE_S", 0.0)
    scene = write_synthetic_scene(tmp_path / "large_scene.tif", size=1024)
    out = tmp_path / "cancel_segment.gpkg"
    raster = tmp_path / "cancel_classes.tif"
    feedback = _cancel_run("segment", {"INPUT": str(scene), "MODEL": str(tiny_model),
                                       "TILE": 64, "OVERLAP": 16, "DEVICE": 1,
                                       "OUTPUT": str(out), "OUTPUT_RASTER": str(raster)}, out)
    assert any("killing" in i for i in feedback.infos)
    removed = [i for i in feedback.infos if i.startswith("Removed ")]
    assert len(removed) == 1 and "partial file(s)" in removed[0] and ".ces-" in removed[0]
    assert files_named_like(tmp_path, "cancel_classes") == []
    assert files_named_like(tmp_path, ".ces-") == []


# --- packaging --------------------------------------------------------------------------------
def test_metadata_has_the_keys_plugins_qgis_org_requires():
    from crossearth_sar.version import __version__

    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(REPO / "metadata.txt", encoding="utf-8")
    meta = parser["general"]
    for key in ("name", "qgisMinimumVersion", "description", "about", "version", "author",
                "email", "repository", "tracker", "homepage", "tags", "category",
                "hasProcessingProvider", "experimental", "icon"):
        assert meta.get(key, "").strip(), key
    assert meta["version"] == __version__
    assert meta["qgisMinimumVersion"] == "3.22"
    assert meta["hasProcessingProvider"] == "yes"
    assert (REPO / meta["icon"]).is_file() and (REPO / "LICENSE").is_file()
    assert re.match(r"https?://", meta["repository"])


def test_plugin_manager_details_wrap_without_sideways_scroll(qgis_app):  # noqa: F811
    """The Plugin Manager shows description, about, tags and changelog as HTML, verbatim
    (QgsPluginManager::showPluginDetails): laid out at a 420-px pane, ours must wrap."""
    from qgis.PyQt.QtGui import QTextDocument

    parser = configparser.ConfigParser(interpolation=None)
    parser.read(REPO / "metadata.txt", encoding="utf-8")
    meta = parser["general"]
    html = (f"<h1>{meta['name']}</h1><h3>{meta['description']}</h3>{meta['about']}<br/>"
            f"Category: {meta['category']}<br/>Tags: {meta['tags']}<br/>"
            f"changelog:<br/>{meta['changelog']}")
    doc = QTextDocument()
    doc.setHtml(html)
    doc.setTextWidth(420)
    assert doc.idealWidth() <= 420, doc.idealWidth()
    longest = max(re.split(r"\s+", " ".join(meta[k] for k in ("about", "tags", "changelog"))),
                  key=len)
    assert len(longest) <= 30, longest
