"""Class colours and the background rule: no black, colours that suit land-cover
names, background recognised by background-like names or ``background: true``, and the same
rule in the GeoPackage style, the class raster style and the preview."""
from __future__ import annotations

import numpy as np
import pytest

from crossearth_sar.core import class_colors
from crossearth_sar.core.class_colors import class_color, is_background
from crossearth_sar.core.products import class_raster, layer_style
from crossearth_sar.train.classes import from_model_classes, infer_classes, parse_classes


def _rgb(hex_color):
    return tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))


def test_palette_has_no_black_and_no_near_white():
    for c in class_colors.PALETTE:
        r, g, b = _rgb(c)
        assert max(r, g, b) > 100, c           # not black or near-black
        assert min(r, g, b) < 230, c           # not near-white


@pytest.mark.parametrize("name", ["background", "land", "Land", "dry", "other", "no water",
                                  "not_water", "No-Water", "none", "not flooded"])
def test_background_like_names(name):
    assert is_background({"name": name})


@pytest.mark.parametrize("name, color", [("water", "#1f78b4"), ("Flood water", "#1f78b4"),
                                         ("urban", "#e31a1c"), ("built-up", "#e31a1c"),
                                         ("forest", "#33a02c"), ("vegetation", "#33a02c"),
                                         ("bare soil", "#d2b48c"), ("beach", "#d2b48c")])
def test_names_that_say_what_the_class_is(name, color):
    assert class_color(name, 5) == color
    assert not is_background({"name": name})


def test_no_background_class_means_everything_is_filled():
    """A land-cover model whose value 0 is water keeps its water blue and filled."""
    spec = parse_classes({"classes": [{"name": "water", "value": 0}, {"name": "urban", "value": 1},
                                      {"name": "forest", "value": 2}]}, "lc.yaml")
    assert [c["color"] for c in spec.classes] == ["#1f78b4", "#e31a1c", "#33a02c"]
    assert not any(is_background(c) for c in spec.classes)
    qml = layer_style.categorized_qml(class_raster.raster_classes(spec.to_config()))
    assert 'v="no"' not in qml                  # no symbol without fill


def test_land_water_labels_draw_land_without_fill_and_water_blue():
    spec = parse_classes({"classes": [{"name": "land", "value": 0}, {"name": "water", "value": 1}]},
                         "lw.yaml")
    land, water = spec.classes
    assert land["color"] != "#000000" and water["color"] == "#1f78b4"
    assert is_background(land) and not is_background(water)
    qml = layer_style.categorized_qml(class_raster.raster_classes(spec.to_config()))
    assert qml.count('v="no"') == 1             # one symbol (land) without fill


def test_background_key_in_a_classes_file_survives_into_the_model_config():
    spec = parse_classes({"classes": [{"name": "fields", "value": 0, "background": True},
                                      {"name": "land", "value": 1, "background": False}]}, "c.yaml")
    cfg = spec.to_config()
    assert cfg[0]["background"] is True and cfg[1]["background"] is False
    from crossearth_sar.core.models.model import check_classes

    checked = check_classes(cfg)
    assert is_background(checked[0]) and not is_background(checked[1])
    back = from_model_classes(checked)
    assert is_background(back.classes[0]) and not is_background(back.classes[1])


def test_inferred_classes_never_get_black():
    spec = infer_classes([0, 1, 2, 3])
    assert all(c["color"] != "#000000" for c in spec.classes)
    assert len({c["color"] for c in spec.classes}) == 4


def test_preview_leaves_land_grey_and_paints_water(tmp_path):
    """The preview follows the same rule: "land" is not painted, "water" is."""
    from crossearth_sar.core.products import preview

    classes = [{"name": "land", "value": 0, "color": class_color("land", 0)},
               {"name": "water", "value": 1, "color": class_color("water", 1)}]
    grey = np.full((32, 32), 128, np.uint8)
    cls = np.zeros((32, 32), np.uint8)
    cls[:, 16:] = 1
    rgb = preview.compose(grey, np.ones((32, 32), bool), cls, classes)
    left, right = rgb[:, :16].reshape(-1, 3), rgb[:, 16:].reshape(-1, 3)
    assert np.ptp(left, axis=0).max() == 0 and left[0][0] == left[0][1] == left[0][2]   # grey
    assert right[0][2] > right[0][0]                                                   # blue
