"""``ces segment --preview``: the PNG picture read back, its colours checked where the classes
are (core.products.preview and the CLI)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from crossearth_sar.core.errors import InputError
from crossearth_sar.core.products import preview
from crossearth_sar.crossearth_cli.main import main

CLASSES = [{"name": "background", "value": 0, "color": "#d9d9d9"},
           {"name": "water", "value": 1, "color": "#1f78b4"},
           {"name": "urban", "value": 2, "color": "#e31a1c"}]


def _write(path: Path, array: np.ndarray, nodata) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=array.shape[1], height=array.shape[0],
                       count=1, dtype=array.dtype, crs="EPSG:32630", nodata=nodata,
                       transform=from_origin(500000, 4500000, 10, 10)) as dst:
        dst.write(array, 1)
    return path


def _rgb(color: str) -> np.ndarray:
    return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)], float)


def test_preview_colours_where_the_classes_are(tmp_path):
    h, w = 600, 800
    rng = np.random.default_rng(0)
    scene = rng.gamma(4.0, 0.05, (h, w)).astype(np.float32)   # linear intensity
    scene[:, :40] = np.nan                                     # nodata strip
    classes = np.zeros((h, w), np.uint8)
    classes[100:300, 100:400] = 1
    classes[400:550, 500:750] = 2
    classes[:, :40] = 255
    _write(tmp_path / "scene.tif", scene, float("nan"))
    _write(tmp_path / "classes.tif", classes, 255)
    out = tmp_path / "p.png"
    info = preview.write_preview(tmp_path / "scene.tif", tmp_path / "classes.tif", CLASSES, out,
                                 max_side=400)
    picture = np.asarray(Image.open(out).convert("RGB")).astype(float)
    assert picture.shape[1] == 400 and info["width"] == 400
    assert picture.shape[0] == 300 + preview.LEGEND_ROW * 3 + 6 == info["height"]
    scale = 0.5
    water = picture[int(150 * scale):int(250 * scale), int(150 * scale):int(350 * scale)]
    urban = picture[int(420 * scale):int(530 * scale), int(520 * scale):int(730 * scale)]
    ground = picture[int(320 * scale):int(380 * scale), int(100 * scale):int(400 * scale)]
    nodata = picture[:300, :int(40 * scale) - 1]
    for block, color in ((water, CLASSES[1]["color"]), (urban, CLASSES[2]["color"])):
        # colour = 0.4 grey + 0.6 class colour: (pixel - 0.6 colour) / 0.4 is grey (r = g = b)
        grey = (block - preview.OPACITY * _rgb(color)) / (1 - preview.OPACITY)
        assert np.abs(grey - grey.mean(axis=-1, keepdims=True)).max() < 2.0
        assert 30 - 2 <= grey.min() and grey.max() <= 230 + 2
    assert (ground[..., 0] == ground[..., 1]).all() and (ground[..., 1] == ground[..., 2]).all()
    assert ground.std() > 5                                    # the scene's texture shows
    assert (nodata == 255).all()
    # legend: one swatch per class, in its colour, below the map
    for i, c in enumerate(CLASSES):
        y = 300 + 3 + i * preview.LEGEND_ROW + 2 + preview.SWATCH // 2
        assert np.abs(picture[y, 6 + preview.SWATCH // 2] - _rgb(c["color"])).max() == 0
    assert info["shares"]["water"] == pytest.approx(200 * 300 / (h * (w - 40)), rel=0.02)


def test_preview_refuses_other_formats_and_mismatched_rasters(tmp_path):
    _write(tmp_path / "a.tif", np.ones((20, 30), np.float32), None)
    _write(tmp_path / "b.tif", np.zeros((21, 30), np.uint8), 255)
    with pytest.raises(InputError, match="PNG"):
        preview.check_path(tmp_path / "x.jpg")
    with pytest.raises(InputError, match="30 x 21"):
        preview.write_preview(tmp_path / "a.tif", tmp_path / "b.tif", CLASSES, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_ces_segment_preview_matches_the_class_raster(tmp_path, capsys):
    from _helpers_qgis import TINY_CLASSES, make_tiny_model, write_synthetic_scene

    model = make_tiny_model(tmp_path / "tiny.safetensors")
    scene = write_synthetic_scene(tmp_path / "scene.tif", size=256)
    out, raster, png = tmp_path / "s.gpkg", tmp_path / "c.tif", tmp_path / "s.png"
    assert main(["segment", str(scene), "-o", str(out), "--model", str(model), "--tile", "64",
                 "--overlap", "16", "--device", "cpu", "--raster", str(raster),
                 "--preview", str(png)]) == 0
    picture = np.asarray(Image.open(png).convert("RGB")).astype(int)[:256]
    with rasterio.open(raster) as src:
        classes = src.read(1)
    by_name = {c["name"]: c["value"] for c in TINY_CLASSES}
    assert set(np.unique(classes)) <= {by_name["land"], by_name["water"]}
    r, g, b = (picture[..., i] for i in range(3))
    # 0.4 grey + 0.6 colour: water (#1f78b4) is 0.6 * 149 bluer than red; "land" is a
    # background name (core/class_colors.py), so it is left grey: the scene shows through
    water = classes == by_name["water"]
    land = classes == by_name["land"]
    assert water.any() or land.any()   # a random tiny model may predict one class only
    assert ((b - r)[water] >= 88).all()
    assert (r[land] == g[land]).all() and (g[land] == b[land]).all()


def test_ces_segment_refuses_a_preview_that_is_not_png_before_any_work(tmp_path, capsys):
    scene = _write(tmp_path / "scene.tif", np.ones((32, 32), np.float32), None)
    assert main(["segment", str(scene), "-o", str(tmp_path / "s.gpkg"),
                 "--preview", str(tmp_path / "s.jpg")]) == 2
    assert "PNG" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]
