"""The change classes, their lookup and the reference vote (core/change/classes.py), and the
acquisition dates the change command warns by (core/scene/scene_date.py)."""
from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from crossearth_sar.core.change import classes as change_classes, detect as change
from crossearth_sar.core.class_colors import is_background
from crossearth_sar.core.scene import scene_date

WATER_MODEL = [{"name": "background", "value": 0, "color": "#d9d9d9"},
               {"name": "water", "value": 1, "color": "#1f78b4"}]
LAND_COVER = [{"name": "water", "value": 10, "color": "#1f78b4"},
              {"name": "vegetation", "value": 20, "color": "#33a02c"},
              {"name": "urban", "value": 30, "color": "#e31a1c"}]


def test_water_model_classes_and_lookup():
    classes = change_classes.change_classes(WATER_MODEL)
    assert [(c["name"], c["value"]) for c in classes] == [
        ("no water", 0), ("flood", 1), ("permanent water", 2), ("receded", 3)]
    assert [is_background(c) for c in classes] == [True, False, False, False]
    lut = change_classes.change_lookup(WATER_MODEL)
    assert lut[0, 1] == 1 and lut[1, 1] == 2 and lut[1, 0] == 3 and lut[0, 0] == 0
    assert lut[255, 1] == lut[0, 255] == 255
    assert change_classes.positive_values(classes, "new-water") == [1]
    assert change_classes.positive_values(classes, "water-after") == [1, 2]


def test_multi_class_model_gives_named_transitions():
    classes = change_classes.change_classes(LAND_COVER)
    assert len(classes) == 9
    by_value = {c["value"]: c for c in classes}
    assert by_value[0 * 3 + 1]["name"] == "water \u2192 vegetation"
    assert by_value[0 * 3 + 1]["color"] == "#33a02c" and not is_background(by_value[1])
    assert by_value[4]["name"] == "vegetation" and is_background(by_value[4])   # unchanged
    lut = change_classes.change_lookup(LAND_COVER)
    assert lut[20, 10] == 1 * 3 + 0 and lut[30, 30] == 8 and lut[0, 10] == 255
    with pytest.raises(ValueError, match="15 classes"):
        change_classes.change_classes([{"name": f"c{i}", "value": i} for i in range(16)])


def _raster(path, array, nodata=255):
    with rasterio.open(path, "w", driver="GTiff", width=array.shape[1], height=array.shape[0],
                       count=1, dtype=array.dtype, crs="EPSG:32630", nodata=nodata,
                       transform=from_origin(500000, 4500000, 10, 10)) as dst:
        dst.write(array, 1)
    return path


def test_reference_vote_and_nodata(tmp_path):
    """Three references: the majority wins, a tie of covering references goes to water, and a
    pixel no reference covers is nodata."""
    after = np.array([[1, 1, 1, 0, 1]], np.uint8)
    refs = [np.array([[0, 0, 1, 1, 255]], np.uint8),
            np.array([[0, 1, 1, 0, 255]], np.uint8),
            np.array([[1, 255, 0, 0, 255]], np.uint8)]
    conf = np.full(after.shape, 0.9, np.float32)
    a = _raster(tmp_path / "a.tif", after)
    ac = _raster(tmp_path / "ac.tif", conf, float("nan"))
    pairs = [(_raster(tmp_path / f"r{i}.tif", r), _raster(tmp_path / f"rc{i}.tif", conf * 0.5,
                                                            float("nan")))
             for i, r in enumerate(refs)]
    change.combine(a, ac, pairs, WATER_MODEL, tmp_path / "c.tif", tmp_path / "cc.tif")
    with rasterio.open(tmp_path / "c.tif") as src, rasterio.open(tmp_path / "cc.tif") as cs:
        got, got_conf = src.read(1)[0], cs.read(1)[0]
    # votes for water: 1/3 -> flood; 1/2 (tie) -> permanent; 2/3 -> permanent;
    # 1/3 with no water after -> no water; no reference -> nodata
    assert got.tolist() == [1, 2, 2, 0, 255]
    np.testing.assert_allclose(got_conf[:4], 0.45)
    assert np.isnan(got_conf[4])


@pytest.mark.parametrize("name, tags, want", [
    ("S1A_IW_GRDH_1SDV_20170314T001534_20170314T001559_015700.tif", {}, dt.date(2017, 3, 14)),
    ("flood_2019-03-01.tif", {}, dt.date(2019, 3, 1)),
    ("scene.tif", {"ACQUISITION_START_TIME": "2020-02-01T05:00:00"}, dt.date(2020, 2, 1)),
    ("S1_20190101_x.tif", {"TIFFTAG_DATETIME": "2024:05:06 10:00:00"}, dt.date(2019, 1, 1)),
    ("scene.tif", {"TIFFTAG_DATETIME": "2024:05:06 10:00:00"}, dt.date(2024, 5, 6)),
    ("S1_before_0013.png", {}, None),
    ("tile_99999999.tif", {}, None),
])
def test_scene_dates(name, tags, want):
    assert scene_date.scene_date(name, tags) == want
