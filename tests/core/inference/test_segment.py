"""segment_scene and ``ces segment``: end to end on real rasters, outputs, bad input, atomicity."""
from __future__ import annotations

import json
import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from crossearth_sar.core.errors import InputError
from crossearth_sar.core.inference import pipeline
from crossearth_sar.core.inference.domain_shift import domain_shift_warning
from crossearth_sar.core.models import checkpoints
from crossearth_sar.crossearth_cli import segment_cmd
from crossearth_sar.crossearth_cli.main import main

from _helpers_segment import PointwiseSegmenter, raster_class_areas_m2, tiny_model, write_db_scene

CLASSES = [{"name": "land", "value": 0, "color": "#a0a060"},
           {"name": "water", "value": 1, "color": "#1f4fff"},
           {"name": "urban", "value": 2, "color": "#d62728"}]
GEO = dict(crs="EPSG:4326", transform=from_origin(-0.78, 38.13, 9e-5, 9e-5))


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A small randomly initialized CrossEarthSAR ti saved as a real checkpoint."""
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    checkpoints.save(tiny_model(CLASSES[:2]), path)
    return path


def _no_overlaps(geoms) -> bool:
    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="intersects")
    keep = a < b
    return shapely.area(shapely.intersection(geoms[a[keep]], geoms[b[keep]])).sum() \
        <= 1e-9 * shapely.area(geoms).sum()


def _check_outputs(vector: Path, raster: Path, scene: Path) -> gpd.GeoDataFrame:
    frame = gpd.read_file(vector, layer="landcover")
    with rasterio.open(scene) as src:
        assert pyproj.CRS(frame.crs) == pyproj.CRS(src.crs.to_wkt())
    assert frame.geometry.is_valid.all() and _no_overlaps(frame.geometry.values)
    expected = raster_class_areas_m2(raster)
    for value, area in expected.items():
        got = frame.loc[frame.class_id == value, "area_m2"].sum()
        assert got == pytest.approx(area, rel=0.005)
    with rasterio.open(raster) as ds:
        assert ds.nodata == 255 and ds.dtypes[0] == "uint8" and ds.block_shapes[0][0] > 1
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.compression is not None
    return frame


def test_pipeline_multiclass_geographic(tmp_path):
    scene = write_db_scene(tmp_path / "scene.tif", 150, 130, nodata_box=(0, 20, 0, 40), **GEO)
    seen = []
    result = pipeline.segment_scene(
        scene, PointwiseSegmenter(CLASSES), tmp_path / "out.gpkg", raster=tmp_path / "c.tif",
        confidence=tmp_path / "p.tif", tile=64, overlap=16, batch=3, device="cpu",
        min_area=300.0, simplify=6.0, progress=lambda s, d, t: seen.append(s))
    assert {"segment", "sieve", "vectorize"} <= set(seen)
    frame = _check_outputs(tmp_path / "out.gpkg", tmp_path / "c.tif", scene)
    assert set(frame.class_name) == {"land", "water", "urban"} and len(frame) > 3
    assert frame.mean_confidence.between(1 / 3, 1.0).all()
    assert result["min_area_pixels"] == 4  # 300 m² / ~79 m² pixels, rounded up
    total_m2 = sum(result["class_area_m2"].values())
    assert total_m2 == pytest.approx(frame.area_m2.sum())
    assert 70 < total_m2 / (150 * 130 - 20 * 40) < 90  # ~7.9 m × 10 m pixels: square metres
    with rasterio.open(tmp_path / "p.tif") as ds:
        conf = ds.read(1)
        assert ds.dtypes[0] == "float32" and np.isnan(conf[:20, :40]).all()
        assert np.nanmin(conf) >= 1 / 3 - 1e-6 and np.nanmax(conf) <= 1.0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


def test_scene_smaller_than_a_tile(tmp_path):
    scene = write_db_scene(tmp_path / "small.tif", 40, 30, crs="EPSG:32630")
    result = pipeline.segment_scene(scene, PointwiseSegmenter(CLASSES), tmp_path / "s.gpkg",
                                    raster=tmp_path / "s.tif", tile=512, overlap=128,
                                    device="cpu", min_area=0, simplify=0)
    assert result["timing"]["windows"] == 1
    frame = _check_outputs(tmp_path / "s.gpkg", tmp_path / "s.tif", scene)
    assert frame.area_m2.sum() == pytest.approx(40 * 30 * 100.0)


def test_overwrite(tmp_path):
    scene = write_db_scene(tmp_path / "scene.tif", 50, 40)
    out = tmp_path / "o.gpkg"
    out.write_text("not a geopackage")
    with pytest.raises(InputError, match="exists"):
        pipeline.segment_scene(scene, PointwiseSegmenter(CLASSES), out, tile=64, overlap=16,
                               device="cpu")
    assert out.read_text() == "not a geopackage"
    pipeline.segment_scene(scene, PointwiseSegmenter(CLASSES), out, tile=64, overlap=16,
                           device="cpu", overwrite=True)
    assert len(gpd.read_file(out, layer="landcover")) > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.gpkg", "scene.tif"]


def test_domain_shift_warning(tmp_path):
    scene = write_db_scene(tmp_path / "scene.tif", 64, 64)
    far = {"mean": [50.0, 50.0, 50.0], "std": [0.1, 0.1, 0.1]}
    got = []
    result = pipeline.segment_scene(scene, PointwiseSegmenter(CLASSES, train_stats=far),
                                    tmp_path / "o.gpkg", tile=64, overlap=0, device="cpu",
                                    warn=got.append)
    assert len(got) == 1 and "unlike the model's training data" in got[0]
    assert result["warnings"] == got
    # no training statistics: no warning
    pipeline.segment_scene(scene, PointwiseSegmenter(CLASSES), tmp_path / "p.gpkg", tile=32,
                           overlap=0, device="cpu", warn=got.append)
    assert len(got) == 1
    assert domain_shift_warning(np.ones((5, 3)), {"mean": [1, 1, 1], "std": [1, 1, 1]}) is None
    # the layout train.finetune writes: per descriptor mean, std, p01, p99
    stats = {"tiles": 10, **{n: {"mean": 1.0, "std": 0.1, "p01": 0.8, "p99": 1.2}
                             for n in ("H_DE", "ENL", "R_LR")}}
    near = np.array([[1.0, 1.1, 0.9]] * 5)
    assert domain_shift_warning(near, stats) is None
    message = domain_shift_warning(near + [0, 5.0, 0], stats)
    assert message and "ENL" in message and "H_DE" not in message
    # in the raw units of ces descriptors (ENL: exp(scaled + 2) by default), not the
    # router's standardized log value
    from crossearth_sar.core.scene.descriptors import unscale_descriptors
    raw_enl = float(np.exp(6.1 + 2.0))
    assert f"ENL {raw_enl:.3g}" in message
    assert f"{np.exp(0.8 + 2.0):.3g}..{np.exp(1.2 + 2.0):.3g}" in message
    np.testing.assert_allclose(unscale_descriptors([[0.5, 1.0, -1.0]]),
                               [[0.5 * np.log(36.0), np.exp(3.0), np.exp(-4.8)]])


def test_interrupt_leaves_nothing(tmp_path):
    scene = write_db_scene(tmp_path / "scene.tif", 96, 96)
    out = tmp_path / "out"
    out.mkdir()

    def interrupt(stage, done, total):
        if stage == "vectorize" and done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipeline.segment_scene(scene, PointwiseSegmenter(CLASSES), out / "o.gpkg",
                               raster=out / "c.tif", confidence=out / "p.tif", tile=64,
                               overlap=16, device="cpu", progress=interrupt)
    assert list(out.iterdir()) == []


def test_cli_real_chip_end_to_end(shared_data, tiny_checkpoint, tmp_path, capsys):
    chip = shared_data / "sen1floods11_spain" / "Spain_7370579_S1Hand.tif"
    out = tmp_path / "spain.gpkg"
    rc = main(["segment", str(chip), "-o", str(out), "--model", str(tiny_checkpoint),
               "--tile", "512", "--overlap", "0", "--raster", "--confidence",
               "--progress", "json"])
    assert rc == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["event"] == "done" and events[0]["event"] == "progress"
    outputs = events[-1]["outputs"]
    assert Path(outputs["vector"]) == out
    raster = Path(outputs["raster"])
    assert raster == tmp_path / "spain_classes.tif" and Path(outputs["confidence"]).is_file()
    frame = _check_outputs(out, raster, chip)
    # area_m2 in m²: the chip's 512 × 512 pixels are ~7.9 m × 10 m
    with rasterio.open(chip) as src:
        valid = np.isfinite(src.read(1)).sum()
    assert 70 < frame.area_m2.sum() / valid < 90
    assert set(events[-1]["class_area_m2"]) == {"land", "water"}


def test_cli_small_scene_several_scenes_and_summary(tiny_checkpoint, tmp_path, capsys):
    a = write_db_scene(tmp_path / "a.tif", 40, 30, seed=1)
    b = write_db_scene(tmp_path / "b.tif", 33, 41, seed=2)
    folder = tmp_path / "results"
    rc = main(["segment", str(a), str(b), "-o", str(folder), "--model", str(tiny_checkpoint),
               "--tile", "64", "--overlap", "16", "--raster", "--summary", "--progress", "none"])
    assert rc == 0
    assert sorted(p.name for p in folder.iterdir()) == ["a.gpkg", "a_classes.tif", "b.gpkg",
                                                        "b_classes.tif"]
    printed = capsys.readouterr().out
    assert "a.tif" in printed and "km²" in printed and "land" in printed
    frame = _check_outputs(folder / "b.gpkg", folder / "b_classes.tif", b)
    assert frame.area_m2.sum() == pytest.approx(33 * 41 * 100.0)
    # an existing output is refused without --overwrite, replaced with it
    before = (folder / "a.gpkg").stat().st_mtime_ns
    assert main(["segment", str(a), "-o", str(folder / "a.gpkg"), "--model",
                 str(tiny_checkpoint), "--tile", "64"]) == 2
    assert (folder / "a.gpkg").stat().st_mtime_ns == before


def _all_nodata(path: Path) -> Path:
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=1, dtype="float32",
                       nodata=float("nan"), crs="EPSG:32630",
                       transform=from_origin(0, 0, 10, 10)) as dst:
        dst.write(np.full((1, 32, 32), np.nan, np.float32))
    return path


def test_cli_bad_input_exit_2_and_no_file(tiny_checkpoint, tmp_path, capsys):
    scene = write_db_scene(tmp_path / "scene.tif", 40, 40)
    out = tmp_path / "out"
    out.mkdir()
    cases = [
        [str(_all_nodata(tmp_path / "empty.tif")), "-o", str(out / "e.gpkg")],
        [str(scene), "-o", str(tmp_path / "missing" / "o.gpkg")],
        [str(scene), "-o", str(tmp_path / "scene.tif" / "o.gpkg")],  # parent is a file
        [str(scene), "-o", str(out / "o.kml")],
        [str(scene), "-o", str(out / "o.gpkg"), "--raster", str(out / "c.png")],
        [str(tmp_path / "nope.tif"), "-o", str(out / "n.gpkg")],
        [str(scene), "-o", str(out / "o.gpkg"), "--tile", "64", "--overlap", "64"],
    ]
    cases.append([str(scene), str(_all_nodata(tmp_path / "empty2.tif")), "-o",
                  str(out / "new_folder")])  # several scenes: the folder made is removed again
    if os.geteuid() != 0:  # root writes anywhere: only a real user can test a read-only folder
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append([str(scene), "-o", str(locked / "o.gpkg")])
    for args in cases:
        extra = [] if "--tile" in args else ["--tile", "64"]
        rc = main(["segment", *args, "--model", str(tiny_checkpoint), *extra])
        err = capsys.readouterr().err
        assert rc == 2, (args, err)
        assert err.startswith("ces: error:") and len(err.strip().splitlines()) == 1
        assert list(out.iterdir()) == [], args


def test_cli_missing_model_messages(tmp_path, capsys, monkeypatch):
    scene = write_db_scene(tmp_path / "scene.tif", 32, 32)
    assert main(["segment", str(scene), "-o", str(tmp_path / "o.gpkg"),
                 "--model", str(tmp_path / "nope.safetensors")]) == 2
    assert "nope.safetensors: no such model file" in capsys.readouterr().err
    # a package installed without its models/ folder says how to go on
    monkeypatch.setattr(segment_cmd, "default_model_path", lambda: tmp_path / "missing.safetensors")
    assert main(["segment", str(scene), "-o", str(tmp_path / "o.gpkg")]) == 2
    err = capsys.readouterr().err
    assert "no default model is installed" in err and "--model" in err
    assert not (tmp_path / "o.gpkg").exists()


def test_pipeline_refuses_a_model_that_is_a_backbone(tmp_path):
    scene = write_db_scene(tmp_path / "scene.tif", 32, 32)
    seg = PointwiseSegmenter(CLASSES)
    seg.config["kind"] = "backbone"
    with pytest.raises(InputError, match="backbone"):
        pipeline.segment_scene(scene, seg, tmp_path / "o.gpkg", device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


@pytest.mark.slow  # a child process that imports torch: several seconds
def test_cli_sigterm_leaves_nothing(tiny_checkpoint, tmp_path):
    """A cancelled run (SIGTERM, as the QGIS provider sends) removes its temporaries."""
    import signal
    import subprocess
    import sys

    scene = write_db_scene(tmp_path / "scene.tif", 400, 400)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "crossearth_sar.crossearth_cli.main", "segment", str(scene),
         "-o", str(out / "o.gpkg"), "--model", str(tiny_checkpoint), "--tile", "64",
         "--raster", "--progress", "json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    try:
        for line in proc.stdout:  # wait until segmenting has started (temporaries exist)
            event = json.loads(line)
            if event["event"] == "progress" and event["done"] >= 2:
                break
        assert any(p.name.startswith(".ces-segment-") for p in out.iterdir())
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert '"event": "error"' in rest
    assert list(out.iterdir()) == []


def test_raster_values_fall_back_to_indexes_when_a_label_value_is_255():
    from crossearth_sar.core.products.class_raster import raster_classes

    water = [{"name": "background", "value": 0, "color": "#000000"},
             {"name": "water", "value": 255, "color": "#0000ff"}]
    assert [c["value"] for c in raster_classes(water)] == [0, 1]
    coded = [{"name": "urban", "value": 10, "color": "#ff0000"},
             {"name": "forest", "value": 20, "color": "#00ff00"}]
    assert [c["value"] for c in raster_classes(coded)] == [10, 20]


def test_gdal_block_cache_while_segmenting_is_megabytes(tmp_path):
    """rasterio hands an integer GDAL_CACHEMAX to GDAL in bytes: a cache of "64" was 64 bytes,
    which made the decimated statistics read of a 2,048² deflate scene take 11 s instead of
    0.3 s. The cache seen during segment_scene (read inside its progress callback) is MiBs,
    two rows of blocks for a wide scene."""
    scene = write_db_scene(tmp_path / "scene.tif", 96, 80)
    seen = []

    def progress(stage, done, total):
        seen.append(int(rasterio.env.getenv().get("GDAL_CACHEMAX", 0)))

    pipeline.segment_scene(scene, PointwiseSegmenter(CLASSES), tmp_path / "s.gpkg", tile=64,
                           overlap=16, device="cpu", progress=progress)
    least, most = (mb * 1024 * 1024 for mb in pipeline.GDAL_CACHE_MB)
    assert seen and set(seen) == {pipeline.gdal_cache_bytes(scene)} == {least}
    # a Sentinel-1-wide float32 scene in 512² blocks (sparse: nothing written): 2 x 49 blocks
    wide = tmp_path / "wide.tif"
    with rasterio.open(wide, "w", driver="GTiff", width=25_000, height=512, count=1,
                       dtype="float32", tiled=True, blockxsize=512, blockysize=512,
                       sparse_ok=True, crs="EPSG:32630",
                       transform=from_origin(400000.0, 4600000.0, 10.0, 10.0)) as dst:
        dst.nodata = float("nan")
    assert pipeline.gdal_cache_bytes(wide) == 2 * 49 * 512 * 512 * 4 <= most
    assert pipeline.gdal_cache_bytes(tmp_path / "missing.tif") == least
