"""The GeoPackage of ``segment_scene`` opens in real QGIS, styled by class with the model colours.

QGIS runs in a child process (QT_QPA_PLATFORM=offscreen): its GDAL must not share a process
with rasterio's. Skipped only where ``import qgis`` fails.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from rasterio.transform import from_origin

from crossearth_sar.core.inference import pipeline

from _helpers_segment import PointwiseSegmenter, write_db_scene

CLASSES = [{"name": "land", "value": 0, "color": "#a0a060"},
           {"name": "water", "value": 1, "color": "#1f4fff"},
           {"name": "urban", "value": 2, "color": "#d62728"}]

QGIS_SCRIPT = r"""
import json, sys
from qgis.core import QgsApplication, QgsVectorLayer
app = QgsApplication([], False)
app.initQgis()
layer = QgsVectorLayer(sys.argv[1] + "|layername=landcover", "landcover", "ogr")
out = {"valid": layer.isValid()}
if layer.isValid():
    renderer = layer.renderer()
    out["renderer"] = renderer.type()
    out["attr"] = getattr(renderer, "classAttribute", lambda: None)()
    cats = renderer.categories() if hasattr(renderer, "categories") else []
    out["categories"] = [[str(c.value()), c.label(), cats[i].symbol().color().name()]
                         for i, c in enumerate(cats)]
    out["features"] = layer.featureCount()
    out["crs"] = layer.crs().authid()
    out["fields"] = [f.name() for f in layer.fields()]
    del cats, renderer
del layer
print("RESULT " + json.dumps(out))
sys.stdout.flush()
"""


def _qgis_available() -> bool:
    try:
        r = subprocess.run([sys.executable, "-c", "import qgis.core"], capture_output=True,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def test_geopackage_opens_styled_in_qgis(tmp_path):
    if not _qgis_available():
        pytest.skip("QGIS Python bindings (import qgis) not available")
    scene = write_db_scene(tmp_path / "scene.tif", 120, 100, crs="EPSG:4326",
                           transform=from_origin(-0.78, 38.13, 9e-5, 9e-5))
    out = tmp_path / "landcover.gpkg"
    result = pipeline.segment_scene(scene, PointwiseSegmenter(CLASSES), out, tile=64,
                                    overlap=16, device="cpu")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-c", QGIS_SCRIPT, str(out)], capture_output=True,
                          text=True, env=env, timeout=120)
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULT ")]
    assert lines, proc.stderr[-2000:]
    got = json.loads(lines[-1][len("RESULT "):])
    assert got["valid"]
    assert got["renderer"] == "categorizedSymbol" and got["attr"] == "class_name"
    assert got["categories"] == [[c["name"], c["name"], c["color"]] for c in CLASSES]
    assert got["features"] == result["polygons"] > 0
    assert got["crs"] == "EPSG:4326"
    assert {"class_id", "class_name", "area_m2", "mean_confidence"} <= set(got["fields"])
