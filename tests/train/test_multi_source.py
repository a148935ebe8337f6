"""Multi-value classes files and multi-source data files: real rasters, real
training passes through ``ces pretrain``/``ces finetune``/``ces evaluate``."""
from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from crossearth_sar.core.models import checkpoints
from crossearth_sar.core.scene import contracts, sar_io
from crossearth_sar.crossearth_cli.main import main
from crossearth_sar.train.classes import IGNORE_INDEX, load_classes
from crossearth_sar.train.sources import load_data_file

from _helpers_train import tiny_model, write_png


def _dualpol_tiles(folder, n=2, size=32):
    """ETCI-like uint8 VV + VH tiles (nodata 0) with labels 0 land, 1 flood, 2 permanent water,
    255 nodata."""
    img, lab = folder / "images", folder / "labels"
    img.mkdir(parents=True), lab.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for i in range(n):
        truth = np.zeros((size, size), np.uint8)
        truth[:, : 8 + 4 * i] = 1
        truth[:4, :] = 2
        vv = np.where(truth > 0, 70, 150) + rng.integers(-10, 10, (size, size))
        vh = vv + 30
        with rasterio.open(img / f"x-{i}_y-0.tif", "w", driver="GTiff", width=size, height=size,
                           count=2, dtype="uint8", nodata=0) as dst:
            dst.write(np.stack([vv, vh]).astype(np.uint8))
            dst.descriptions = ("VV", "VH")
        with rasterio.open(lab / f"x-{i}_y-0.tif", "w", driver="GTiff", width=size, height=size,
                           count=1, dtype="uint8", nodata=255) as dst:
            dst.write(truth[None])
    return img, lab


def _singlepol_pngs(folder, n=2, size=32):
    img, lab = folder / "AFTER", folder / "MASK"
    img.mkdir(parents=True), lab.mkdir(parents=True)
    for i in range(n):
        v = np.full((size, size), 180, np.uint8)
        v[:, : 8 + 4 * i] = 30
        write_png(img / f"S1_after_{i:04d}.png", v)
        write_png(lab / f"S1_mask_{i:04d}.png", np.where(v < 100, 255, 0))
    return img, lab


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "tiny.safetensors"
    checkpoints.save(tiny_model(), path)
    return path


def test_classes_file_merges_values(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text('classes:\n  - {name: background, value: 0, color: "#000000"}\n'
                 '  - {name: water, values: [1, 2], color: "#1f78b4"}\nignore: [255]\n')
    spec = load_classes(f)
    raw = np.array([[0, 1, 2, 255]], np.int64)
    np.testing.assert_array_equal(spec.map_labels(raw), [[0, 1, 1, IGNORE_INDEX]])
    assert spec.to_config()[1] == {"name": "water", "value": 1, "color": "#1f78b4", "values": [1, 2]}


def test_value_claimed_by_two_classes_exits_2_naming_both(tmp_path, tiny_base, capsys):
    img, lab = _singlepol_pngs(tmp_path / "s")
    f = tmp_path / "bad.yaml"
    f.write_text("classes:\n  - {name: land, values: [0, 2]}\n  - {name: water, values: [2, 255]}\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    code = main(["finetune", "--model", str(tiny_base), "--images", str(img), "--labels", str(lab),
                 "--classes", str(f), "--iters", "1", "-o", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "bad.yaml" in err[0] and "'land'" in err[0] and "'water'" in err[0] and "2" in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before   # nothing written


def test_multi_value_classes_with_vector_labels(tmp_path):
    """Vector labels whose class field holds 1 and 2 both become 'water'."""
    import geopandas as gpd
    from shapely.geometry import box

    from crossearth_sar.train.vector_labels import rasterize_labels

    from _helpers_train import ORIGIN, PIXEL, write_scene

    write_scene(tmp_path / "s.tif", size=40)
    x0, y0 = ORIGIN
    gdf = gpd.GeoDataFrame({"cls": [1, 2, 0]}, crs="EPSG:32630", geometry=[
        box(x0, y0 - 10 * PIXEL, x0 + 10 * PIXEL, y0), box(x0 + 20 * PIXEL, y0 - 10 * PIXEL, x0 + 30 * PIXEL, y0),
        box(x0, y0 - 40 * PIXEL, x0 + 40 * PIXEL, y0 - 30 * PIXEL)])
    f = tmp_path / "c.yaml"
    f.write_text("classes:\n  - {name: land, value: 0}\n  - {name: water, values: [1, 2]}\n")
    with sar_io.open_scene(tmp_path / "s.tif") as scene:
        lab = rasterize_labels(gdf, "cls", scene, load_classes(f), tmp_path / "v.gpkg")
    assert (lab[:10, :10] == 1).all() and (lab[:10, 20:30] == 1).all() and (lab[30:, :] == 0).all()
    assert (lab[15:25, :] == IGNORE_INDEX).all()


def _data_file(tmp_path, single, dual):
    f = tmp_path / "data.yaml"
    f.write_text(f"""
classes:
  - {{name: background, value: 0, color: "#d9d9d9"}}
  - {{name: water, value: 1, color: "#1f78b4"}}
sources:
  - name: quicklooks
    images: {single[0]}
    labels: {single[1]}
    classes: {{background: 0, water: 255}}
    weight: 1
  - name: dualpol
    images: {dual[0].relative_to(tmp_path)}
    labels: {dual[1].relative_to(tmp_path)}
    classes: {{background: 0, water: [1, 2]}}
    ignore: [255]
    weight: 3
    stretch: source
""")
    return f


def test_multi_source_training_mixes_single_and_dual_pol(tmp_path, tiny_base, capsys):
    single = _singlepol_pngs(tmp_path / "ql")
    dual = _dualpol_tiles(tmp_path / "etci")
    data = _data_file(tmp_path, single, dual)
    parsed = load_data_file(data)
    assert [s.name for s in parsed.sources] == ["quicklooks", "dualpol"]
    assert parsed.sources[1].classes.index_of(2) == 1 and parsed.sources[0].classes.index_of(255) == 1

    out = tmp_path / "m.safetensors"
    code = main(["pretrain", "--model", str(tiny_base), "--data", str(data), "--tile", "32",
                 "--batch", "2", "--iters", "3", "--save-every", "1", "--progress", "none",
                 "-o", str(out)])
    log = capsys.readouterr().err
    assert code == 0, log
    assert "source dualpol: 2 image(s), weight 3, stretch source" in log
    cfg = checkpoints.read_config(out)
    assert cfg["input"]["bands"] == ["VV", "VH"] and cfg["input"]["contract"] == contracts.INPUT_CONTRACT == 3
    assert [c["name"] for c in cfg["classes"]] == ["background", "water"]
    assert cfg["provenance"]["data_file"] == "data.yaml" and cfg["provenance"]["iterations"] == 3

    # evaluate picks VV + VH of a dual-pol tile and VV of a quicklook without flags, and a
    # multi-value classes file scores flood + permanent water as one class
    cls = tmp_path / "etci.yaml"
    cls.write_text("classes:\n  - {name: background, value: 0}\n  - {name: water, values: [1, 2]}\n"
                   "ignore: [255]\n")
    js = tmp_path / "e.json"
    code = main(["evaluate", "--model", str(out), "--images", str(dual[0]), "--labels", str(dual[1]),
                 "--classes", str(cls), "--tile", "32", "--json", str(js), "--progress", "none"])
    assert code == 0
    report = json.loads(js.read_text())
    assert report["pixels"] == 2 * 32 * 32
    assert sum(map(sum, report["confusion_matrix"])) == 2 * 32 * 32


def test_crops_follow_the_source_weights(tmp_path):
    from crossearth_sar.train.datasets import CropDataset
    from crossearth_sar.train.sources import load_source_scenes

    single = _singlepol_pngs(tmp_path / "ql")
    dual = _dualpol_tiles(tmp_path / "etci")
    scenes = load_source_scenes(load_data_file(_data_file(tmp_path, single, dual)))
    ds = CropDataset(scenes, 32, seed=0)
    rng = np.random.default_rng
    picks = [ds.scene_for(i, rng([0, i])).image.suffix for i in range(2000)]
    assert abs(picks.count(".tif") / len(picks) - 0.75) < 0.04     # weight 3 : 1
    # the dual-pol source is read with its pooled calibration (contract 3), the same for both
    # tiles: per band (gain, offset dB)
    a, b = [s for s in scenes if s.image.suffix == ".tif"]
    assert a.options["calibration"].shape == (2, 2)
    np.testing.assert_array_equal(a.options["calibration"], b.options["calibration"])
    assert ds[1]["x"].shape == (3, 32, 32)


@pytest.mark.parametrize("doc, message", [
    ("sources: []\n", "non-empty 'sources'"),
    ("classes: [{name: a, value: 0}]\nsources: [{name: s, images: x, labels: y, classes: {b: 1}}]\n",
     "class 'b' is not one of"),
    ("classes: [{name: a, value: 0}]\nsources: [{name: s, images: x, labels: y, classes: {a: 1}, "
     "weight: -1}]\n", "weight must be a positive number"),
    ("classes: [{name: a, value: 0}, {name: b, value: 1}]\nsources: [{name: s, images: x, labels: y, "
     "classes: {a: [1], b: [1]}}]\n", "claimed by two classes, 'a' and 'b'"),
    ("classes: [{name: a, value: 0}]\nsources: [{name: s, images: x, labels: y, classes: {a: 1}, "
     "stretch: tile}]\n", "stretch 'tile' is not one of"),
])
def test_bad_data_files_exit_2(tmp_path, tiny_base, capsys, doc, message):
    f = tmp_path / "d.yaml"
    f.write_text(doc)
    code = main(["pretrain", "--model", str(tiny_base), "--data", str(f), "--iters", "1",
                 "-o", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "d.yaml" in err[0] and message in err[0], err
    assert not (tmp_path / "o.safetensors").exists() and not (tmp_path / "o.ckpt").exists()
