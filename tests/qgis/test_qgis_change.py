"""The QGIS "Flood extent (before/after)" algorithm in real QGIS 3.22: its
``ces change`` arguments (built without an engine), a run on a real pair whose result loads
styled and renders flood in red, progress across both scenes, and Cancel."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qgis.core")

from _helpers_change import write_pair  # noqa: E402
from _helpers_qgis import (  # noqa: E402
    files_named_like,
    processes_mentioning,
    recording_feedback,
    render_layer,
    write_synthetic_scene,
)

pytestmark = pytest.mark.qgis
ALG = "crossearth_sar:flood_extent"


def test_change_arguments_are_built_without_an_engine():
    from crossearth_sar.qgis_plugin.ces_arguments import change_arguments

    args = change_arguments("after.tif", ["b1.tif", "b 2.tif"], "out.gpkg", tile=512,
                            overlap=128, batch=4, device="auto", calibrated=["--calibrated", "no"],
                            min_area=0.0, model=None, raster="c.tif", preview="")
    assert args == ["after.tif", "--before", "b1.tif", "--before", "b 2.tif", "-o", "out.gpkg",
                    "--tile", "512", "--overlap", "128", "--batch", "4", "--device", "auto",
                    "--overwrite", "--calibrated", "no", "--min-area", "0.0", "--raster", "c.tif"]


def test_flood_extent_runs_loads_styled_and_renders_flood_red(with_venv_ces, tmp_path):
    import processing
    import rasterio
    from qgis.core import QgsRasterLayer, QgsVectorLayer

    from crossearth_sar.core.change.classes import WATER_CHANGE

    after, before, _, _ = write_pair(tmp_path)
    out, raster = tmp_path / "flood.gpkg", tmp_path / "flood_classes.tif"
    feedback = recording_feedback()
    result = processing.run(ALG, {"AFTER": str(after), "BEFORE": [str(before)],
                                  "DEVICE": 1, "OUTPUT": str(out), "OUTPUT_RASTER": str(raster)},
                            feedback=feedback)
    assert result["OUTPUT"] == str(out)
    # progress over both scenes: one bar that only goes up, to the end
    values = feedback.progress_values
    assert values == sorted(values) and values[-1] >= 99.0
    assert any(40 < v < 60 for v in values), "no progress between the two scenes"
    assert "Comparing the dates" in feedback.texts

    layer = QgsVectorLayer(f"{out}|layername=landcover", "flood", "ogr")
    assert layer.isValid() and layer.renderer().type() == "categorizedSymbol"
    colours = {c.label(): c.symbol().color().name() for c in layer.renderer().categories()}
    assert colours == {c["name"]: c["color"] for c in WATER_CHANGE}
    with rasterio.open(raster) as src:
        classes = src.read(1)
    flood_px = int((classes == 1).sum())
    assert flood_px > 100
    rgba = render_layer(layer, classes.shape[1] * 2, classes.shape[0] * 2)   # 2 screen px per pixel
    rgb = rgba[..., :3].astype(int)
    fill = (np.abs(rgb - [0xe8, 0x16, 0x1b]).max(axis=-1) <= 3) & (rgba[..., 3] == 255)
    red = (rgb[..., 0] - rgb[..., 1:].max(axis=-1) > 100) & (rgba[..., 3] > 0)   # fill, outline
    assert fill.sum() > 0.4 * 4 * flood_px                 # small patches: much of it outline
    assert int(red.sum()) / 4 == pytest.approx(flood_px, rel=0.2)
    no_water = classes == 0
    assert (rgba[::2, ::2][no_water][:, 3] == 0).mean() > 0.8   # no water: the map shows through
    # the class raster's saved style: flood drawn, no water transparent
    raster_layer = QgsRasterLayer(str(raster), "classes")
    assert raster_layer.isValid() and raster_layer.renderer().type() == "paletted"
    del layer, raster_layer


def test_cancel_flood_extent_stops_and_leaves_nothing(with_venv_ces, tiny_model, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    after = write_synthetic_scene(tmp_path / "after_scene.tif", size=1024, seed=1)
    before = write_synthetic_scene(tmp_path / "before_scene.tif", size=1024, seed=2)
    out = tmp_path / "cancel_flood.gpkg"
    feedback = recording_feedback(cancel_when_progress_above=0.0)
    with pytest.raises(QgsProcessingException, match="Canceled"):
        processing.run(ALG, {"AFTER": str(after), "BEFORE": [str(before)],
                             "MODEL": str(tiny_model), "TILE": 64, "OVERLAP": 16, "DEVICE": 1,
                             "OUTPUT": str(out)}, feedback=feedback)
    stopped = time.monotonic()
    assert feedback.canceled_at is not None, "the run ended before any progress"
    assert stopped - feedback.canceled_at < 5.0
    assert processes_mentioning(str(out)) == []
    assert files_named_like(tmp_path, out.stem) == []
    assert files_named_like(Path(tmp_path), ".ces-") == []
