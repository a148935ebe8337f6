"""Label rasters on another grid and CRS than their image (train/label_rasters.read_label_raster):
resampled onto the image's grid by nearest neighbour, equal to GDAL's own gdalwarp
(osgeo.gdal.Warp), and usable by ``ces finetune`` and ``ces evaluate``."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import array_bounds, from_origin

from crossearth_sar.core.errors import InputError
from crossearth_sar.core.models import checkpoints
from crossearth_sar.crossearth_cli.main import main
from crossearth_sar.train import labelled_scenes

from _helpers_micro import micro_model
from _helpers_train import ORIGIN, PIXEL, write_label, write_scene

gdal = pytest.importorskip("osgeo.gdal")


def _pseudo_labels(tmp_path: Path, truth: np.ndarray) -> Path:
    """The truth at half resolution (20 m, a nodata corner), warped to EPSG:4326."""
    half = truth[::2, ::2].astype(np.uint8)
    half[:4, :6] = 9
    utm20 = tmp_path / "labels_utm20.tif"
    write_label(utm20, half, transform=from_origin(*ORIGIN, 2 * PIXEL, 2 * PIXEL), nodata=9)
    out = tmp_path / "scene_label.tif"
    gdal.Warp(str(out), str(utm20), dstSRS="EPSG:4326", xRes=0.00025, yRes=0.00025,
              resampleAlg="near")
    return out


def _gdalwarp_on_grid(label: Path, image: Path, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """gdalwarp -r near of ``label`` onto the image's grid: (values, valid)."""
    with rasterio.open(image) as src:
        bounds = array_bounds(src.height, src.width, src.transform)
        crs, size = src.crs.to_wkt(), (src.width, src.height)
    gdal.Warp(str(out), str(label), dstSRS=crs, outputBounds=bounds, width=size[0],
              height=size[1], resampleAlg="near")
    with rasterio.open(out) as src:
        return src.read(1), src.read_masks(1) > 0


def test_half_resolution_label_in_another_crs_equals_gdalwarp(tmp_path):
    truth = write_scene(tmp_path / "scene.tif", size=64)
    label = _pseudo_labels(tmp_path, truth)
    with rasterio.open(label) as src:
        assert src.crs.to_epsg() == 4326 and (src.width, src.height) != (64, 64)
    values, valid = _gdalwarp_on_grid(label, tmp_path / "scene.tif", tmp_path / "expected.tif")
    scenes, classes = labelled_scenes.load_labelled_scenes([tmp_path / "scene.tif"], [label])
    assert classes.values == [0, 1]
    expected = np.where(valid, values, 255).astype(np.uint8)
    assert np.array_equal(scenes[0].labels, expected)
    assert 0.6 < valid.mean() < 1.0                  # the nodata corner and the edges
    assert (scenes[0].labels[valid] == truth[valid]).mean() > 0.9


def test_it_trains_and_evaluates(tmp_path, capsys):
    truth = write_scene(tmp_path / "scene.tif", size=64)
    label = _pseudo_labels(tmp_path, truth)
    model = tmp_path / "micro.safetensors"
    checkpoints.save(micro_model(), model)
    args = ["--images", str(tmp_path / "scene.tif"), "--labels", str(label), "--tile", "32"]
    assert main(["finetune", "--model", str(model), *args, "--iters", "2",
                 "-o", str(tmp_path / "ft.safetensors")]) == 0, capsys.readouterr().err
    assert main(["evaluate", "--model", str(tmp_path / "ft.safetensors"), *args, "--json",
                 str(tmp_path / "r.json")]) == 0, capsys.readouterr().err
    _, valid = _gdalwarp_on_grid(label, tmp_path / "scene.tif", tmp_path / "expected.tif")
    assert json.loads((tmp_path / "r.json").read_text())["pixels"] == int(valid.sum())


def test_a_label_raster_elsewhere_is_refused_naming_both(tmp_path):
    write_scene(tmp_path / "scene.tif", size=32)
    write_label(tmp_path / "far.tif", np.zeros((16, 16)), crs="EPSG:4326",
                transform=from_origin(10.0, 50.0, 0.001, 0.001))
    with pytest.raises(InputError, match="far.tif: label raster does not overlap its image .*scene.tif"):
        labelled_scenes.load_labelled_scenes([tmp_path / "scene.tif"], [tmp_path / "far.tif"])
