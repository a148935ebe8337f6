"""Training data: classes files, pairing by name, label rasters, vector labels, crops."""
from __future__ import annotations

import json

import numpy as np
import pytest
from shapely.geometry import box

from crossearth_sar.core.errors import InputError
from crossearth_sar.train import datasets, file_pairing, labelled_scenes
from crossearth_sar.train.classes import IGNORE_INDEX, infer_classes, load_classes

from _helpers_train import ORIGIN, PIXEL, UTM, write_label, write_png, write_scene


def test_classes_file_yaml_and_json(tmp_path):
    y = tmp_path / "classes.yaml"
    y.write_text('classes:\n  - {name: background, value: 0, color: "#000000"}\n'
                 '  - {name: water, value: 255, color: [31, 120, 180]}\nignore: [-1]\n')
    spec = load_classes(y)
    assert spec.names == ["background", "water"] and spec.values == [0, 255]
    assert spec.classes[1]["color"] == "#1f78b4" and spec.ignore == [-1]
    raw = np.array([[0, 255], [-1, 255]], np.int16)
    np.testing.assert_array_equal(spec.map_labels(raw), [[0, 1], [IGNORE_INDEX, 1]])
    j = tmp_path / "classes.json"
    j.write_text(json.dumps({"classes": [{"name": "a", "value": 3}, {"name": "b", "value": 7}]}))
    assert load_classes(j).index_of(7) == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: [{name: a}]\n")
    with pytest.raises(InputError, match="bad.yaml"):
        load_classes(bad)


def test_label_value_missing_from_classes_is_named(tmp_path):
    spec = infer_classes([0, 1])
    with pytest.raises(InputError, match="label value 5"):
        spec.map_labels(np.array([[0, 5]]), where="lab.tif: ")


def test_pairing_rule_by_role_tokens_and_pattern(tmp_path):
    P = lambda *names: [tmp_path / n for n in names]  # noqa: E731
    pairs = file_pairing.pair_files(P("S1_after_0002.png", "S1_after_0001.png"),
                            P("S1_mask_0001.png", "S1_mask_0002.png"))
    assert [(a.name, b.name) for a, b in pairs] == [("S1_after_0002.png", "S1_mask_0002.png"),
                                                    ("S1_after_0001.png", "S1_mask_0001.png")]
    pairs = file_pairing.pair_files(P("Spain_1_S1Hand.tif", "Bolivia_2_S1Hand.tif"),
                            P("Bolivia_2_LabelHand.tif", "Spain_1_LabelHand.tif"))
    assert {(a.name, b.name) for a, b in pairs} == {("Spain_1_S1Hand.tif", "Spain_1_LabelHand.tif"),
                                                    ("Bolivia_2_S1Hand.tif", "Bolivia_2_LabelHand.tif")}
    pairs = file_pairing.pair_files(P("scene_a_x.tif", "scene_b_x.tif"), P("gt-b.tif", "gt-a.tif"),
                            pair_pattern=r"(?:scene_|gt-)([ab])")
    assert {(a.name, b.name) for a, b in pairs} == {("scene_a_x.tif", "gt-a.tif"),
                                                    ("scene_b_x.tif", "gt-b.tif")}
    with pytest.raises(InputError, match="without a label.*S1_after_0003"):
        file_pairing.pair_files(P("S1_after_0001.png", "S1_after_0003.png"),
                        P("S1_mask_0001.png", "S1_mask_0002.png"))


def test_png_tiles_without_georeferencing(tmp_path):
    imgs, labs = tmp_path / "img", tmp_path / "lab"
    imgs.mkdir(), labs.mkdir()
    for i in range(2):
        v = np.full((32, 32), 200, np.uint8)
        v[:, :16] = 20
        m = np.where(v < 100, 255, 0)
        write_png(imgs / f"S1_after_000{i}.png", v)
        write_png(labs / f"S1_mask_000{i}.png", m)
    scenes, classes = labelled_scenes.load_labelled_scenes([imgs], [labs])
    assert classes.values == [0, 255] and len(scenes) == 2
    assert (scenes[0].labels[:, :16] == 1).all() and (scenes[0].labels[:, 16:] == 0).all()


def test_grid_mismatch_and_empty_labels_are_input_errors(tmp_path):
    write_scene(tmp_path / "a_img.tif")
    from rasterio.transform import from_origin

    write_label(tmp_path / "a_lab.tif", np.zeros((64, 64)),
                transform=from_origin(ORIGIN[0] + 1000, ORIGIN[1], PIXEL, PIXEL))
    with pytest.raises(InputError, match="a_lab.tif: label raster does not overlap its image .*a_img.tif"):
        labelled_scenes.load_labelled_scenes([tmp_path / "a_img.tif"], [tmp_path / "a_lab.tif"])
    write_label(tmp_path / "a_lab.tif", np.zeros((32, 32)), crs=None)
    with pytest.raises(InputError, match="a_lab.tif.*CRS None.*resampling needs both CRSs"):
        labelled_scenes.load_labelled_scenes([tmp_path / "a_img.tif"], [tmp_path / "a_lab.tif"])
    write_label(tmp_path / "a_lab.tif", np.full((64, 64), 9), nodata=9)
    with pytest.raises(InputError, match="empty"):
        labelled_scenes.load_labelled_scenes([tmp_path / "a_img.tif"], [tmp_path / "a_lab.tif"])


def test_label_raster_covering_part_of_the_image_is_resampled(tmp_path):
    """A 32 x 32 label at the image's origin and pixel size labels its top-left quarter."""
    write_scene(tmp_path / "a_img.tif")
    write_label(tmp_path / "a_lab.tif", np.ones((32, 32)))
    scenes, _ = labelled_scenes.load_labelled_scenes([tmp_path / "a_img.tif"], [tmp_path / "a_lab.tif"])
    labels = scenes[0].labels
    assert labels.shape == (64, 64)
    assert (labels[:32, :32] == 0).all() and (labels[32:] == 255).all() and (labels[:, 32:] == 255).all()


def test_polygons_in_another_crs_are_reprojected(tmp_path):
    import geopandas as gpd

    truth = write_scene(tmp_path / "scene.tif", water_box=(16, 48, 8, 40))
    # the water box and a land box, in UTM, then stored in geographic coordinates
    x0, y0 = ORIGIN
    water = box(x0 + 8 * PIXEL, y0 - 48 * PIXEL, x0 + 40 * PIXEL, y0 - 16 * PIXEL)
    land = box(x0 + 44 * PIXEL, y0 - 60 * PIXEL, x0 + 60 * PIXEL, y0 - 4 * PIXEL)
    gdf = gpd.GeoDataFrame({"class": ["water", "land"]}, geometry=[water, land], crs=UTM)
    gdf.to_crs("EPSG:4326").to_file(tmp_path / "labels.gpkg", driver="GPKG")
    cls = tmp_path / "classes.yaml"
    cls.write_text("classes: [{name: land, value: 0}, {name: water, value: 1}]\n")
    scenes, classes = labelled_scenes.load_labelled_scenes([tmp_path / "scene.tif"], [tmp_path / "labels.gpkg"],
                                                load_classes(cls))
    lab = scenes[0].labels
    # inside the water box (1 px margin for the reprojected edges): water; land box: land
    assert (lab[17:47, 9:39] == 1).all()
    assert (lab[5:59, 45:59] == 0).all()
    # unlabelled pixels are ignored, and the labelled area matches the boxes within the edges
    assert (lab[55:, :40] == IGNORE_INDEX).all()
    assert abs(int((lab == 1).sum()) - int(truth.sum())) <= 2 * 32 + 2 * 32
    # a class missing from the classes file is named
    cls.write_text("classes: [{name: land, value: 0}]\n")
    with pytest.raises(InputError, match="'water'"):
        labelled_scenes.load_labelled_scenes([tmp_path / "scene.tif"], [tmp_path / "labels.gpkg"],
                                  load_classes(cls))


def test_crops_favour_labelled_pixels(tmp_path):
    write_scene(tmp_path / "s_img.tif", size=128)
    lab = np.full((128, 128), 255, np.uint8)
    lab[100:110, 100:110] = 1
    write_label(tmp_path / "s_lab.tif", lab)
    cls = tmp_path / "c.yaml"
    cls.write_text("classes: [{name: a, value: 0}, {name: b, value: 1}]\nignore: [255]\n")
    scenes, _ = labelled_scenes.load_labelled_scenes([tmp_path / "s_img.tif"], [tmp_path / "s_lab.tif"],
                                          load_classes(cls))
    ds = datasets.CropDataset(scenes, 32, seed=1)
    hits = sum(int((ds[i]["target"] != IGNORE_INDEX).any()) for i in range(20))
    assert hits >= 14  # ~90% favoured vs ~10% by chance for a 10x10 target in 128x128
    a, b = ds[3], ds[3]
    np.testing.assert_array_equal(a["x"], b["x"])  # reproducible by index
    assert a["x"].shape == (3, 32, 32) and a["target"].dtype == np.uint8


def test_image_nodata_is_ignored_reading_the_scene_in_row_bands(tmp_path):
    import rasterio

    from crossearth_sar.core.scene import sar_io

    truth = write_scene(tmp_path / "s_img.tif", size=48)
    with rasterio.open(tmp_path / "s_img.tif", "r+") as dst:   # a slanted NaN border, like GRD
        db = dst.read(1)
        rows, cols = np.indices(db.shape)
        db[cols < rows // 3 + 2] = np.nan
        dst.write(db, 1)
    write_label(tmp_path / "s_lab.tif", truth)
    with sar_io.open_scene(tmp_path / "s_img.tif") as scene:
        banded = labelled_scenes._image_valid(scene, band_pixels=48 * 5)   # 10 bands, the last one 3 rows
    assert banded.shape == (48, 48) and (banded == np.isfinite(db)).all()
    scenes, _ = labelled_scenes.load_labelled_scenes([tmp_path / "s_img.tif"], [tmp_path / "s_lab.tif"])
    labels = scenes[0].labels
    assert (labels[~np.isfinite(db)] == IGNORE_INDEX).all()
    assert (labels[np.isfinite(db)] == truth[np.isfinite(db)]).all()
