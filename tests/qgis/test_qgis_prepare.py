"""Sentinel-1 products in real QGIS 3.22: the "Prepare Sentinel-1 product" algorithm writes a
dB scene that loads in grey −25..0 dB; Segment runs on a SAFE layer opened in QGIS (its source
is the product's manifest.safe); Cancel during preparation leaves nothing. Products: the real
metadata of ../shared/data/s1_safe reduced to 1/8 with measurement TIFFs (tests/_helpers_s1.py)."""
from __future__ import annotations

import time
import zipfile

import pytest

pytest.importorskip("qgis.core")

from _helpers_s1 import LAND, PRODUCTS, reduce_product  # noqa: E402

from _helpers_qgis import files_named_like, processes_mentioning, recording_feedback  # noqa: E402

pytestmark = [pytest.mark.qgis,
              pytest.mark.skipif(not all(p.is_file() for p in PRODUCTS.values()),
                                 reason="../shared/data/s1_safe is absent")]


@pytest.fixture(scope="module")
def product(tmp_path_factory):
    return reduce_product(PRODUCTS["new_noise"], tmp_path_factory.mktemp("s1"), dn0_border=10)


def test_prepare_writes_a_db_scene_that_loads_grey(with_venv_ces, product, tmp_path):
    import numpy as np
    import processing
    from qgis.core import QgsProject, QgsRasterLayer

    out = tmp_path / "prepared.tif"
    feedback = recording_feedback()
    result = processing.runAndLoadResults("crossearth_sar:prepare",
                                          {"INPUT": str(product), "RESOLUTION": 0, "OUTPUT": str(out)},
                                          feedback=feedback)
    assert result["OUTPUT"] == str(out) and out.is_file()
    assert feedback.progress_values and max(feedback.progress_values) >= 99
    layer = QgsRasterLayer(str(out), "prepared")
    assert layer.isValid() and layer.bandCount() == 2 and layer.crs().authid() == "EPSG:32736"
    loaded = [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.source() == str(out)]
    assert len(loaded) == 1
    renderer = loaded[0].renderer()
    assert renderer.type() == "singlebandgray"
    enhancement = renderer.contrastEnhancement()
    assert (enhancement.minimumValue(), enhancement.maximumValue()) == (-25.0, 0.0)
    stats = layer.dataProvider().bandStatistics(1)
    assert abs(stats.mean - LAND["VV"]) < 1.0 and np.isfinite(stats.minimumValue)
    QgsProject.instance().removeAllMapLayers()


def test_segment_runs_on_a_safe_layer_opened_in_qgis(with_venv_ces, product, tiny_model, tmp_path):
    import processing
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    with zipfile.ZipFile(product) as archive:
        archive.extractall(tmp_path)
    manifest = next(tmp_path.glob("*.SAFE")) / "manifest.safe"
    layer = QgsRasterLayer(str(manifest), "S1 product")
    assert layer.isValid(), "QGIS's GDAL does not open the SAFE product"
    out = tmp_path / "flood.gpkg"
    feedback = recording_feedback()
    processing.run("crossearth_sar:segment", {"INPUT": layer, "MODEL": str(tiny_model), "TILE": 128,
                                              "OVERLAP": 32, "DEVICE": 1, "OUTPUT": str(out)}, feedback=feedback)
    values = feedback.progress_values   # one bar over preparation and segmentation
    assert values and values[-1] >= 99 and all(b >= a - 1e-9 for a, b in zip(values, values[1:]))
    assert any(t.startswith("Calibrating the Sentinel-1 product") for t in feedback.texts)
    polygons = QgsVectorLayer(f"{out}|layername=landcover", "p", "ogr")
    assert polygons.isValid() and polygons.featureCount() > 0
    assert polygons.crs().authid() == "EPSG:32736"
    assert files_named_like(tmp_path, ".ces-") == []


def test_cancel_during_preparation_leaves_nothing(with_venv_ces, product, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    out = tmp_path / "cancelled.tif"
    feedback = recording_feedback(cancel_when_progress_above=0.0)
    with pytest.raises(QgsProcessingException, match="Canceled"):
        processing.run("crossearth_sar:prepare", {"INPUT": str(product), "RESOLUTION": 1, "OUTPUT": str(out)},
                       feedback=feedback)
    assert feedback.canceled_at is not None
    assert time.monotonic() - feedback.canceled_at < 5.0
    assert processes_mentioning(str(out)) == []
    assert files_named_like(tmp_path, "cancelled") == [] and files_named_like(tmp_path, ".ces-") == []


def test_segment_takes_a_product_file_instead_of_a_layer(with_venv_ces, product, tiny_model, tmp_path):
    import processing
    from qgis.core import QgsVectorLayer

    out = tmp_path / "from_file.gpkg"
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("crossearth_sar:segment")
    assert alg.parameterDefinition("INPUT").flags() & alg.parameterDefinition("INPUT").FlagOptional
    feedback = recording_feedback()
    processing.run("crossearth_sar:segment", {"PRODUCT": str(product), "MODEL": str(tiny_model), "TILE": 128,
                                              "OVERLAP": 32, "DEVICE": 1, "OUTPUT": str(out)}, feedback=feedback)
    polygons = QgsVectorLayer(f"{out}|layername=landcover", "p", "ogr")
    assert polygons.isValid() and polygons.featureCount() > 0 and polygons.crs().authid() == "EPSG:32736"
    assert any(t.startswith("Calibrating the Sentinel-1 product") for t in feedback.texts)


def test_segment_without_scene_or_product_says_what_to_choose(with_venv_ces, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="Sentinel-1 product file"):
        processing.run("crossearth_sar:segment", {"OUTPUT": str(tmp_path / "x.gpkg")})
    with pytest.raises(QgsProcessingException, match="does not exist"):
        processing.run("crossearth_sar:segment", {"PRODUCT": str(tmp_path / "missing.zip"),
                                                  "OUTPUT": str(tmp_path / "x.gpkg")})
    assert not (tmp_path / "x.gpkg").exists()


def test_flood_extent_on_two_product_files_has_one_monotonic_bar(with_venv_ces, tiny_model, tmp_path):
    import processing
    from qgis.core import QgsVectorLayer

    # two files of the same place, reduced to 1/16 to keep the two preparations short
    product = reduce_product(PRODUCTS["new_noise"], tmp_path / "after", factor=16)
    before = reduce_product(PRODUCTS["new_noise"], tmp_path / "before", factor=16)
    out = tmp_path / "flood.gpkg"
    feedback = recording_feedback()
    processing.run("crossearth_sar:flood_extent", {"AFTER_PRODUCT": str(product), "BEFORE_PRODUCT": str(before),
                                             "MODEL": str(tiny_model), "TILE": 128, "OVERLAP": 32,
                                             "DEVICE": 1, "OUTPUT": str(out)}, feedback=feedback)
    values = feedback.progress_values
    assert values and values[-1] >= 99 and all(b >= a - 1e-9 for a, b in zip(values, values[1:]))
    assert feedback.texts.count("Calibrating the Sentinel-1 product") <= 2
    layer = QgsVectorLayer(f"{out}|layername=landcover", "c", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32736"
