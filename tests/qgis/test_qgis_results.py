"""What a GIS user sees of each result in real QGIS 3.22: layers styled by the plugin are
rendered with QGIS's map renderer and their pixels counted; errors are shown once; progress
advances per window; bad input is refused in well under 1.5 s; GeoPackages read without
warnings."""
from __future__ import annotations

import json
import os
import resource
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qgis.core")

from _helpers_qgis import (  # noqa: E402
    DEMO_LABELS,
    DEMO_SCENE,
    REPO,
    recording_feedback,
    render_layer as _render,
    write_synthetic_scene,
)

pytestmark = pytest.mark.qgis

CODED = [{"name": "background", "value": 10, "color": "#d9d9d9"},
         {"name": "water", "value": 20, "color": "#1f78b4"},
         {"name": "urban", "value": 30, "color": "#e31a1c"}]


def _write_raster(path: Path, array: np.ndarray, nodata) -> Path:
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(path, "w", driver="GTiff", width=array.shape[1], height=array.shape[0],
                       count=1, dtype=array.dtype, crs="EPSG:32630", nodata=nodata,
                       transform=from_origin(500000, 4500000, 10, 10)) as dst:
        dst.write(array, 1)
    return path


def _hex(color: str) -> tuple[int, int, int]:
    color = color.lstrip("#")
    return tuple(int(color[i:i + 2], 16) for i in (0, 2, 4))


def _pixels_of(rgba: np.ndarray, color: str, tolerance: int = 3) -> np.ndarray:
    near = np.abs(rgba[..., :3].astype(int) - np.array(_hex(color))).max(axis=-1) <= tolerance
    return near & (rgba[..., 3] == 255)


def _default_model_classes() -> list[dict]:
    from crossearth_sar.crossearth_cli.segment_cmd import default_model_path
    from crossearth_sar.qgis_plugin.class_style import model_classes

    classes = model_classes(str(default_model_path()))
    assert classes, "the default model has no classes"
    return classes


@pytest.mark.parametrize("which", ["default model", "coded 10/20/30"])
def test_class_raster_is_drawn_in_its_class_colours(qgis_app, tmp_path, which):
    """The class raster written by ces holds core.products.class_raster.raster_classes values (the
    default model: water 255 written as 1); its saved style draws each class pixel in the
    class colour, background and nodata transparent."""
    from qgis.core import QgsRasterLayer

    from crossearth_sar.core.products.class_raster import is_background, raster_classes
    from crossearth_sar.qgis_plugin.class_style import style_class_raster

    classes = _default_model_classes() if which == "default model" else CODED
    coded = raster_classes(classes)
    values = np.array([c["value"] for c in coded], np.uint8)
    rng = np.random.default_rng(1)
    array = values[rng.integers(0, len(values), (30, 40))]
    array[:5, :] = 255   # nodata
    path = _write_raster(tmp_path / "classes.tif", array, 255)
    assert style_class_raster(str(path), classes) == str(tmp_path / "classes.qml")

    layer = QgsRasterLayer(str(path), "classes")   # picks up classes.qml, as QGIS does
    assert layer.isValid() and layer.renderer().type() == "paletted"
    rgba = _render(layer, 40, 30)
    for c in coded:
        count = int((array == c["value"]).sum())
        assert count > 0
        if is_background(c):
            assert (rgba[array == c["value"]][:, 3] == 0).all(), "background must be transparent"
        else:
            assert int(_pixels_of(rgba, c["color"]).sum()) == count, c["name"]
    assert (rgba[:5, :, 3] == 0).all(), "nodata must be transparent"
    del layer


def test_confidence_raster_gets_a_zero_to_one_ramp(qgis_app, tmp_path):
    from qgis.core import QgsRasterLayer

    from crossearth_sar.qgis_plugin.class_style import CONFIDENCE_STOPS, style_confidence_raster

    array = np.tile(np.linspace(0.0, 1.0, 41, dtype=np.float32), (10, 1))
    array[0, 0] = np.nan
    path = _write_raster(tmp_path / "conf.tif", array, float("nan"))
    assert style_confidence_raster(str(path))
    layer = QgsRasterLayer(str(path), "confidence")
    renderer = layer.renderer()
    assert renderer.type() == "singlebandpseudocolor"
    assert (renderer.classificationMin(), renderer.classificationMax()) == (0.0, 1.0)
    legend = [label for label, _ in renderer.legendSymbologyItems()]
    assert legend[0] == "0" and legend[-1] == "1"
    rgba = _render(layer, 41, 10)
    low, mid, high = (_hex(c) for _, c in CONFIDENCE_STOPS)
    assert np.abs(rgba[5, 0, :3].astype(int) - low).max() <= 3      # 0: the "unsure" colour
    assert np.abs(rgba[5, 20, :3].astype(int) - mid).max() <= 3     # 0.5
    assert np.abs(rgba[5, 40, :3].astype(int) - high).max() <= 3    # 1: the "sure" colour
    assert rgba[0, 0, 3] == 0
    del layer, renderer


def _segmented_gpkg(tmp_path: Path, ext: str = ".gpkg") -> tuple[Path, np.ndarray, list]:
    """A real ces vector output (core.products.vectorize) of a class raster: left half background,
    a water square in the right half."""
    from crossearth_sar.core.products import vectorize

    classes = [{"name": "background", "value": 0, "color": "#d9d9d9"},
               {"name": "water", "value": 1, "color": "#1f78b4"}]
    array = np.zeros((40, 40), np.uint8)
    array[10:30, 22:38] = 1
    raster = _write_raster(tmp_path / "c.tif", array, 255)
    out = tmp_path / f"landcover{ext}"
    vectorize.vectorize(raster, out, classes, simplify=0.0)
    return out, array, classes


def test_background_polygons_are_drawn_without_fill(qgis_app, tmp_path):
    from qgis.core import QgsVectorLayer

    out, array, classes = _segmented_gpkg(tmp_path)
    layer = QgsVectorLayer(f"{out}|layername=landcover", "landcover", "ogr")
    assert layer.isValid() and layer.renderer().type() == "categorizedSymbol"
    rgba = _render(layer, 400, 400)   # 10 screen pixels per raster pixel
    inner = np.zeros((400, 400), bool)
    inner[40:360, 40:180] = True      # well inside the background half, away from outlines
    assert (rgba[inner][:, 3] == 0).all(), "the background polygon hides the scene"
    water = np.kron(array == 1, np.ones((10, 10), bool))
    core = water & np.roll(water, 4, 0) & np.roll(water, -4, 0) & np.roll(water, 4, 1) & np.roll(water, -4, 1)
    assert _pixels_of(rgba, classes[1]["color"])[core].mean() > 0.99
    del layer


def test_geojson_output_is_styled_on_load(qgis_app, tmp_path):
    """Formats that store no style get the categorized class style when Processing loads them,
    and no "No style stored" message."""
    from qgis.core import QgsProcessingContext, QgsVectorLayer

    from crossearth_sar.qgis_plugin.algorithm_base import LoadDefaultStyle

    out, _, classes = _segmented_gpkg(tmp_path, ".geojson")
    layer = QgsVectorLayer(str(out), "landcover", "ogr")
    assert layer.isValid() and layer.renderer().type() == "singleSymbol"
    feedback = recording_feedback()
    LoadDefaultStyle.create(classes).postProcessLayer(layer, QgsProcessingContext(), feedback)
    renderer = layer.renderer()
    assert renderer.type() == "categorizedSymbol" and renderer.classAttribute() == "class_name"
    assert [c.label() for c in renderer.categories()] == ["background", "water"]
    assert not any("style" in i.lower() for i in feedback.infos)
    del layer, renderer


def test_geopackage_is_version_1_2_and_opens_without_gdal_warnings(qgis_app, tmp_path):
    from osgeo import gdal

    out, _, _ = _segmented_gpkg(tmp_path)
    with sqlite3.connect(out) as con:
        assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47   # "GPKG"
        assert con.execute("PRAGMA user_version").fetchone()[0] == 10200
    messages = []
    gdal.PushErrorHandler(lambda level, number, text: messages.append(text))
    try:
        dataset = gdal.OpenEx(str(out), gdal.OF_VECTOR)
        assert dataset is not None and dataset.GetLayerByName("landcover").GetFeatureCount() > 0
        del dataset
    finally:
        gdal.PopErrorHandler()
    assert messages == []


# --- running ces -------------------------------------------------------------------------------
def _task_run(alg_id: str, params: dict, feedback, timeout: float = 120):
    """Run as the toolbox dialog does (QgsProcessingAlgRunnerTask); (ok, seconds)."""
    from qgis.core import QgsApplication, QgsProcessingAlgRunnerTask, QgsProcessingContext

    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    context = QgsProcessingContext()
    ok, message = alg.checkParameterValues(params, context)
    started = time.monotonic()
    if not ok:
        return False, message, time.monotonic() - started
    task = QgsProcessingAlgRunnerTask(alg, params, context, feedback)
    finished = {}
    task.executed.connect(lambda ok, results: finished.update(ok=ok))
    QgsApplication.taskManager().addTask(task)
    deadline = time.monotonic() + timeout
    while not finished and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.01)
    assert finished, "the task did not finish"
    return finished["ok"], None, time.monotonic() - started


def test_a_ces_error_is_shown_once_and_within_a_second_and_a_half(with_venv_ces, tmp_path):
    """An entirely nodata scene: ces refuses it before importing torch; the toolbox task
    reports the reason exactly once (not also from stderr, nor twice)."""
    scene = _write_raster(tmp_path / "empty_scene.tif",
                          np.full((64, 64), np.nan, np.float32), float("nan"))
    for alg, params in (("descriptors", {"INPUT": str(scene), "OUTPUT": str(tmp_path / "d.tif")}),
                        ("segment", {"INPUT": str(scene), "OUTPUT": str(tmp_path / "s.gpkg")})):
        feedback = recording_feedback()
        console = []
        feedback.pushConsoleInfo = console.append
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        ok, _, seconds = _task_run(f"crossearth_sar:{alg}", params, feedback)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        assert ok is False
        shown = [e for e in feedback.errors + console + feedback.infos if "no valid pixel" in e]
        assert len(shown) == 1, (alg, shown)
        # CPU of ces (and its version check): importing torch alone takes more than this
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        assert cpu < 1.0, (alg, cpu)
        if os.getloadavg()[0] < (os.cpu_count() or 1):   # wall time means little on a busy machine
            assert seconds < 1.5, (alg, seconds)


def test_bad_model_file_is_refused_before_running(ces_provider, tmp_path):
    from qgis.core import QgsApplication, QgsProcessingContext

    bogus = tmp_path / "not_a_model.safetensors"
    bogus.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}              ")
    alg = QgsApplication.processingRegistry().createAlgorithmById("crossearth_sar:segment")
    started = time.monotonic()
    ok, message = alg.checkParameterValues(
        {"INPUT": str(DEMO_SCENE), "MODEL": str(bogus), "OUTPUT": str(tmp_path / "o.gpkg")},
        QgsProcessingContext())
    assert not ok and "not a CrossEarth-SAR model" in message
    assert time.monotonic() - started < 1.5


def test_progress_advances_per_window_and_stage_text_is_set_once(with_venv_ces, tiny_model,
                                                                tmp_path):
    import processing

    scene = write_synthetic_scene(tmp_path / "scene.tif", size=128)
    feedback = recording_feedback()
    processing.run("crossearth_sar:segment", {
        "INPUT": str(scene), "MODEL": str(tiny_model), "TILE": 32, "OVERLAP": 8, "BATCH": 1,
        "DEVICE": 1, "OUTPUT": str(tmp_path / "s.gpkg")}, feedback=feedback)
    windows = len(range(0, 128 - 8, 24)) ** 2            # 5 x 5 windows of 32 px, stride 24
    steps = sorted(set(feedback.progress_values))
    assert len(steps) >= windows                         # one step per window (batch 1)
    assert max(np.diff(steps)) < 10.0                    # no 20 % jumps
    assert len(feedback.texts) == len(set(feedback.texts)) == 4   # start, segment, sieve, vectorize
    assert not any(t.startswith("Stage") for t in feedback.infos)


# --- evaluate ------------------------------------------------------------------------------------
def test_sen1floods11_classes_file_is_found_beside_the_demo_labels():
    from crossearth_sar.qgis_plugin.evaluate_algorithm import classes_file_beside

    assert classes_file_beside([str(DEMO_LABELS)]) == str(REPO / "examples" / "sen1floods11_classes.yaml")


def test_evaluate_classes_are_checked_before_running(ces_provider, tmp_path):
    """The demo labels (-1/0/1) against the default model's classes: with the classes file
    found beside them the check passes; with the labels copied elsewhere (no classes file)
    the dialog says at once which values do not fit, and how to fix it."""
    import shutil

    from qgis.core import QgsApplication, QgsProcessingContext

    alg = QgsApplication.processingRegistry().createAlgorithmById("crossearth_sar:evaluate")
    params = {"INPUT": [str(DEMO_SCENE)], "LABELS": [str(DEMO_LABELS)],
              "OUTPUT": str(tmp_path / "m.json")}
    ok, message = alg.checkParameterValues(params, QgsProcessingContext())
    assert ok, message
    alone = tmp_path / "labels" / DEMO_LABELS.name
    alone.parent.mkdir()
    shutil.copy(DEMO_LABELS, alone)
    started = time.monotonic()
    ok, message = alg.checkParameterValues({**params, "LABELS": [str(alone)]},
                                           QgsProcessingContext())
    assert not ok and time.monotonic() - started < 1.5
    assert "-1, 0, 1" in message and "sen1floods11_classes.yaml" in message
    bad = tmp_path / "three.yaml"
    bad.write_text("classes: [{name: a, value: 0}, {name: b, value: 1}, {name: c, value: 2}]\n")
    ok, message = alg.checkParameterValues({**params, "CLASSES": str(bad)}, QgsProcessingContext())
    assert not ok and "3 classes" in message


def test_evaluate_on_the_demo_pair_with_defaults(with_venv_ces, tmp_path):
    """The plugin's own demo pair, every parameter at its default: the metrics it has always
    given, and an HTML report that exists whenever the dialog is told so."""
    import processing

    out = tmp_path / "metrics.json"
    report = tmp_path / "report.html"
    feedback = recording_feedback()
    result = processing.run("crossearth_sar:evaluate", {
        "INPUT": [str(DEMO_SCENE)], "LABELS": [str(DEMO_LABELS)], "OUTPUT": str(out),
        "OUTPUT_HTML": str(report)}, feedback=feedback)
    metrics = json.loads(out.read_text())
    # The demo pair (examples/Spain_7370579_S1Hand.tif against Spain_7370579_LabelHand.tif,
    # Sen1Floods11; -1 ignored by sen1floods11_classes.yaml) segmented by the default model
    # (models/ces-s1-water.safetensors) on the CPU: the same counts with 1 or 2 threads. The
    # metrics JSON prints IoUs to 6 decimals; the confusion matrix (rows: the reference
    # labels, columns: the prediction; background, water) in pixels, exactly.
    assert Path(metrics["model"]).name == "ces-s1-water.safetensors"
    assert metrics["classes"] == ["background", "water"] and metrics["pixels"] == 262045
    assert metrics["confusion_matrix"] == [[187176, 4834], [29517, 40518]]
    assert metrics["miou"] == pytest.approx(0.69306, abs=1e-6)
    assert metrics["per_class_iou"] == pytest.approx({"background": 0.844935, "water": 0.541185}, abs=1e-6)
    assert metrics["overall_accuracy"] == pytest.approx(0.868912, abs=1e-6)
    assert result["MIOU"] == metrics["miou"]
    assert result["OUTPUT_HTML"] == str(report) and report.is_file()
    assert any("sen1floods11_classes.yaml" in i for i in feedback.infos)
    # the report says which classes file it used
    assert metrics["classes_file"].endswith("sen1floods11_classes.yaml")
    assert "Classes file:" in report.read_text() and "sen1floods11_classes.yaml" in report.read_text()
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("crossearth_sar:evaluate")
    assert alg.hasHtmlOutputs() is False   # the dialog's "HTML output has been generated"


def test_segment_loads_every_output_styled_and_writes_the_preview(with_venv_ces, tiny_model,
                                                                  tmp_path):
    """Through the toolbox path (runAndLoadResults): GeoJSON polygons get the class style,
    the confidence raster its 0..1 ramp, and the preview picture is written."""
    import processing
    from PIL import Image
    from qgis.core import QgsProject

    out, conf, png = tmp_path / "lc.geojson", tmp_path / "conf.tif", tmp_path / "lc.png"
    feedback = recording_feedback()
    result = processing.runAndLoadResults("crossearth_sar:segment", {
        "INPUT": str(DEMO_SCENE), "MODEL": str(tiny_model), "TILE": 256, "OVERLAP": 32,
        "DEVICE": 1, "OUTPUT": str(out), "OUTPUT_CONFIDENCE": str(conf),
        "OUTPUT_PREVIEW": str(png)}, feedback=feedback)
    assert result["OUTPUT_PREVIEW"] == str(png)
    assert Image.open(png).size[0] == 512
    # the preview is shown in the Results Viewer through an HTML output
    page = Path(result["PREVIEW_HTML"])
    assert page == png.with_suffix(".html") and "lc.png" in page.read_text()
    loaded = {lyr.source().split("|")[0]: lyr for lyr in QgsProject.instance().mapLayers().values()}
    assert loaded[str(out)].renderer().type() == "categorizedSymbol"
    assert loaded[str(conf)].renderer().type() == "singlebandpseudocolor"
    assert not any("No style" in i for i in feedback.infos)
    # the area of each class goes to the log, as ces segment --summary gives it
    [areas] = [i for i in feedback.infos if i.startswith("Area per class")]
    assert "water" in areas and "km²" in areas
    # no "HTML output has been generated" from the declaration alone (shown even without a preview)
    from qgis.core import QgsApplication

    for name in ("segment", "flood_extent"):
        assert QgsApplication.processingRegistry().algorithmById(f"crossearth_sar:{name}").hasHtmlOutputs() is False
    del loaded
    QgsProject.instance().removeAllMapLayers()


def test_descriptors_defaults_suit_the_demo_scene_and_open_as_one_band(with_venv_ces, tmp_path):
    """Defaults on the 512² demo scene: a 16 x 16 map (32 px tiles), three labelled bands,
    drawn as a ramp of band 1 (not an RGB of three unrelated measures); no GDAL errors."""
    import processing
    from qgis.core import QgsProject, QgsRasterLayer

    from crossearth_sar.crossearth_cli.descriptors_cmd import auto_tile

    assert auto_tile(512, 512) == 32 and auto_tile(20000, 9000) == 512 and auto_tile(100, 100) == 32
    out = tmp_path / "descriptors.tif"
    feedback = recording_feedback()
    processing.runAndLoadResults("crossearth_sar:descriptors",
                                 {"INPUT": str(DEMO_SCENE), "OUTPUT": str(out)}, feedback=feedback)
    layer = QgsRasterLayer(str(out), "d")
    assert (layer.width(), layer.height(), layer.bandCount()) == (16, 16, 3)
    assert [layer.dataProvider().generateBandName(b) for b in (1, 2, 3)] and \
        [layer.bandName(b).split(": ")[-1] for b in (1, 2, 3)] == ["H_DE", "ENL", "R_LR"]
    assert layer.renderer().type() == "singlebandpseudocolor" and layer.renderer().band() == 1
    loaded = [l for l in QgsProject.instance().mapLayers().values() if l.source() == str(out)]
    assert loaded and loaded[0].renderer().type() == "singlebandpseudocolor"
    assert not [t for t in feedback.infos + feedback.warnings if "ERROR" in t.upper()]
    rgba = _render(layer, 16, 16)
    assert (rgba[..., 3] == 255).mean() > 0.9 and len(np.unique(rgba[..., :3].reshape(-1, 3), axis=0)) > 10
    del layer, loaded
    QgsProject.instance().removeAllMapLayers()
