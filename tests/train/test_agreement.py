"""``ces agreement`` (train/agreement.py): pixel agreement of models, checked against numpy
computations from the class rasters each model writes with ``ces segment --raster``.

Synthetic: three pixel-wise stand-in segmenters (real descriptors, real tiled inference) on
a GDAL scene with a nodata box, one of them listing its classes in another order. Real: the
default model and two perturbed copies on a crop of the Sen1Floods11 chip (skipped where
../shared/data is absent).
"""
from __future__ import annotations

import json
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window

from crossearth_sar.core.errors import InputError
from crossearth_sar.core.inference import pipeline
from crossearth_sar.core.models import checkpoints
from crossearth_sar.core.products import class_raster
from crossearth_sar.crossearth_cli.main import main
from crossearth_sar.train.agreement import agreement, check_class_names

from _helpers_micro import micro_model
from _helpers_segment import PointwiseSegmenter, write_db_scene
from _helpers_train import write_label

CLASSES = [{"name": "background", "value": 0, "color": "#d9d9d9"},
           {"name": "water", "value": 1, "color": "#1f78b4"},
           {"name": "urban", "value": 2, "color": "#e31a1c"}]


def _class_names_raster(path: Path, classes: list[dict]) -> np.ndarray:
    """A class raster written by ces segment as class names (object array; "" = nodata)."""
    with rasterio.open(path) as src:
        values = src.read(1)
    names = np.full(values.shape, "", object)
    for c in class_raster.raster_classes(classes):
        names[values == c["value"]] = c["name"]
    return names


def _expected(rasters: list[np.ndarray], reference: np.ndarray | None = None):
    """Pairwise agreement, its mean, per-class IoU means and reference accuracies in numpy."""
    common = np.logical_and.reduce([r != "" for r in rasters])
    m = len(rasters)
    pairwise = np.eye(m)
    for i, j in combinations(range(m), 2):
        pairwise[i, j] = pairwise[j, i] = (rasters[i][common] == rasters[j][common]).mean()
    mean = np.mean([pairwise[i, j] for i, j in combinations(range(m), 2)])
    per_class = {}
    for c in ("background", "water", "urban"):
        ious = []
        for i, j in combinations(range(m), 2):
            a, b = rasters[i][common] == c, rasters[j][common] == c
            if (a | b).any():
                ious.append((a & b).sum() / (a | b).sum())
        per_class[c] = float(np.mean(ious)) if ious else None
    ref = None
    if reference is not None:
        keep = common & (reference != "")
        ref = [float((r[keep] == reference[keep]).mean()) for r in rasters]
    return pairwise, mean, per_class, ref


def test_pixel_agreement_matches_numpy_on_the_models_class_rasters(tmp_path):
    scene = write_db_scene(tmp_path / "scene.tif", 64, 64, seed=3, nodata_box=(0, 10, 0, 20))
    models = [PointwiseSegmenter(CLASSES, seed=0), PointwiseSegmenter(CLASSES, seed=1),
              PointwiseSegmenter(CLASSES[::-1], seed=2)]   # same names, another order
    rasters = []
    for n, m in enumerate(models):
        out = tmp_path / f"m{n}.tif"
        pipeline.segment_scene(scene, m, tmp_path / f"m{n}.gpkg", raster=out, tile=64,
                               overlap=0, min_area=0, device="cpu")
        rasters.append(_class_names_raster(out, m.classes))
    rng = np.random.default_rng(0)
    ref_values = rng.integers(0, 3, (64, 64))
    ref_values[40:, :8] = 9                                    # label nodata
    write_label(tmp_path / "scene_label.tif", ref_values, crs="EPSG:32630",
                transform=rasterio.transform.from_origin(500000.0, 4200000.0, 10.0, 10.0),
                nodata=9)
    reference = np.array(["background", "water", "urban", ""], object)[np.where(ref_values == 9, 3, ref_values)]
    names = ["a", "b", "c"]

    report = agreement(models, names, [scene], [tmp_path / "scene_label.tif"], device="cpu")
    pairwise, mean, per_class, ref = _expected(rasters, reference)
    got = np.array(report["pairwise"], float)
    assert np.allclose(got, got.T) and np.all(np.diag(got) == 1.0)
    assert ((got >= 0) & (got <= 1)).all()
    assert np.allclose(got, pairwise, atol=1e-6)
    assert (pairwise[np.triu_indices(3, 1)] < 0.999).all()   # the models really differ
    assert report["mean_agreement"] == pytest.approx(mean, abs=1e-6)
    assert report["pixels"] == 64 * 64 - 10 * 20
    for c, v in per_class.items():
        assert (report["per_class"][c]["mean"] is None) == (v is None)
        if v is not None:
            assert report["per_class"][c]["mean"] == pytest.approx(v, abs=1e-6)
    assert [report["reference"][n]["agreement"] for n in names] == pytest.approx(ref, abs=1e-6)

    alone = agreement(models, names, [scene], device="cpu")   # images only: the same matrix
    assert alone["pairwise"] == report["pairwise"] and alone["reference"] is None


def test_models_must_share_class_names():
    other = [{"name": "land", "value": 0}, {"name": "water", "value": 1}]
    with pytest.raises(InputError, match="b.safetensors: classes \\(land, water\\) differ"):
        check_class_names(["a.safetensors", "b.safetensors"],
                          [{"classes": CLASSES[:2]}, {"classes": other}])
    assert check_class_names(["a", "b"], [{"classes": CLASSES}, {"classes": CLASSES[::-1]}]) == \
        ["background", "water", "urban"]


def test_cli_writes_json_and_markdown_and_prints_the_table(tmp_path, capsys):
    scene = write_db_scene(tmp_path / "scene.tif", 48, 40, seed=1)
    paths = []
    for seed in (0, 1, 2):
        paths.append(tmp_path / f"micro{seed}.safetensors")
        checkpoints.save(micro_model(CLASSES[:2], seed=seed), paths[-1])
    code = main(["agreement", "--models", *map(str, paths), "--images", str(scene), "--tile", "32",
                 "-o", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    matrix = np.array(report["pairwise"], float)
    assert matrix.shape == (3, 3) and np.allclose(matrix, matrix.T) and (np.diag(matrix) == 1).all()
    md = (tmp_path / "r.md").read_text()
    assert "Mean agreement" in md and "micro2.safetensors" in md and md.strip() in out
    assert report["models"] == [str(p) for p in paths]


def test_bad_input_is_refused_before_torch_is_imported(tmp_path):
    """The checks of models, images and outputs run before torch loads (one line, exit 2)."""
    (tmp_path / "a.safetensors").write_bytes(b"x")   # not read: the checks come first
    (tmp_path / "c.safetensors").write_bytes(b"x")
    write_db_scene(tmp_path / "s.tif", 16, 16)
    cases = [
        (["--models", "a.safetensors", "--images", "s.tif"], "--models"),
        (["--models", "a.safetensors", "b.safetensors", "--images", "s.tif"], "b.safetensors"),
        (["--models", "a.safetensors", "a.safetensors", "--images", "s.tif"], "twice"),
        (["--models", "a.safetensors", "m/../a.safetensors", "--images", "s.tif"], "twice"),
        (["--models", "a.safetensors", "c.safetensors"], "--images"),
        (["--models", "a.safetensors", "c.safetensors", "--images", "none/"], "none"),
        (["--models", "a.safetensors", "c.safetensors", "--images", "s.tif", "-o", "r.csv"],
         "r.csv"),
    ]
    (tmp_path / "m").mkdir()
    script = ("import sys, json; from crossearth_sar.crossearth_cli.main import main; "
              f"cases = {json.dumps([c for c, _ in cases])}; "
              "codes = [main(['agreement', *c]) for c in cases]; "
              "print(json.dumps({'codes': codes, 'torch': 'torch' in sys.modules}))")
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    result = json.loads(run.stdout.strip().splitlines()[-1])
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert result == {"codes": [2] * len(cases), "torch": False}, run.stderr
    assert len(lines) == len(cases), run.stderr
    for line, (_, expect) in zip(lines, cases):
        assert line.startswith("ces: error: ") and expect in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.safetensors", "c.safetensors", "m", "s.tif"]


def _crop(src_path: Path, dst_path: Path, window: Window) -> Path:
    with rasterio.open(src_path) as src:
        profile = {**src.profile, "width": int(window.width), "height": int(window.height),
                   "transform": src.window_transform(window)}
        profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
        with rasterio.open(dst_path, "w", **profile) as dst:
            dst.write(src.read(window=window))
            for i, d in enumerate(src.descriptions, 1):
                dst.set_band_description(i, d)
    return dst_path


def test_three_real_models_on_a_real_chip(tmp_path, shared_data):
    """The default model and two copies with perturbed decoders on 128 x 128 px of the
    Sen1Floods11 chip: a symmetric matrix, ones on the diagonal, values in [0, 1], equal to
    numpy on the class rasters of ``ces segment --raster``; the reference comparison too."""
    from crossearth_sar.crossearth_cli.segment_cmd import default_model_path

    folder = shared_data / "sen1floods11_spain"
    window = Window(256, 128, 128, 128)
    scene = _crop(folder / "Spain_7370579_S1Hand.tif", tmp_path / "chip.tif", window)
    label = _crop(folder / "Spain_7370579_LabelHand.tif", tmp_path / "chip_label.tif", window)
    default = default_model_path()
    paths = [default]
    for seed in (1, 2):
        net = checkpoints.load(default)
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in net.named_parameters():
                if name.startswith("head.") and p.dim() > 1:
                    p.add_(torch.randn(p.shape, generator=g) * 0.25 * p.float().std())
        paths.append(tmp_path / f"perturbed{seed}.safetensors")
        checkpoints.save(net, paths[-1])
    rasters = []
    for n, p in enumerate(paths):
        out = tmp_path / f"classes{n}.tif"
        assert main(["segment", str(scene), "-o", str(tmp_path / f"s{n}.gpkg"), "--model", str(p),
                     "--raster", str(out), "--min-area", "0", "--tile", "128",
                     "--device", "cpu"]) == 0
        rasters.append(_class_names_raster(out, checkpoints.read_config(p)["classes"]))
    classes = Path(__file__).resolve().parents[2] / "examples" / "sen1floods11_classes.yaml"
    assert main(["agreement", "--models", *map(str, paths), "--images", str(scene), "--labels",
                 str(label), "--classes", str(classes), "-o", str(tmp_path / "a.json"),
                 "--device", "cpu"]) == 0
    report = json.loads((tmp_path / "a.json").read_text())
    with rasterio.open(label) as src:
        values = src.read(1)
    reference = np.array(["background", "water", ""], object)[np.where(values < 0, 2, values)]
    pairwise, mean, _, ref = _expected(rasters, reference)
    got = np.array(report["pairwise"], float)
    assert np.allclose(got, got.T) and (np.diag(got) == 1).all() and ((got >= 0) & (got <= 1)).all()
    assert np.allclose(got, pairwise, atol=1e-6), (got, pairwise)
    assert report["mean_agreement"] == pytest.approx(mean, abs=1e-6)
    assert got[0, 1] < 1.0 or got[0, 2] < 1.0     # the copies do predict differently
    assert [report["reference"][str(p)]["agreement"] for p in paths] == pytest.approx(ref, abs=1e-6)
