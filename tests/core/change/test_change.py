"""``ces change`` / core.change.detect on a real pair whose truth is known: the change
classes are those of each date's own segmentation brought onto the after grid, pixel for
pixel, across CRSs and pixel sizes, partial footprints, nodata in either date and several
references; bad pairs are refused in one line naming both files, with nothing written."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject

from crossearth_sar.core.change import detect as change
from crossearth_sar.core.change.classes import WATER_CHANGE, change_lookup
from crossearth_sar.core.inference import pipeline
from crossearth_sar.core.products.class_raster import raster_classes
from crossearth_sar.crossearth_cli.segment_cmd import default_model_path

from _helpers_change import LABELS, SCENE, write_pair
from _helpers_segment import raster_class_areas_m2

MODEL = default_model_path()
CES = [sys.executable, "-m", "crossearth_sar.crossearth_cli.main"]
FLOOD, PERMANENT, RECEDED, NO_WATER = 1, 2, 3, 0


@pytest.fixture(scope="module")
def net():
    from crossearth_sar.core.models import checkpoints

    return checkpoints.load(MODEL, map_location="cpu")


def _segment(scene: Path, net, out: Path) -> np.ndarray:
    """The class raster of ``ces segment`` on the scene's own grid (no sieve)."""
    pipeline.segment_scene(scene, net, out.with_suffix(".gpkg"), raster=out, min_area=0,
                           device="cpu", overwrite=True)
    with rasterio.open(out) as src:
        return src.read(1)


def _onto(src_path: Path, grid_path: Path) -> np.ndarray:
    """A class raster warped onto another raster's grid, whole (nearest; 255 outside)."""
    with rasterio.open(src_path) as src, rasterio.open(grid_path) as grid:
        out = np.full((grid.height, grid.width), 255, np.uint8)
        reproject(src.read(1), out, src_transform=src.transform, src_crs=src.crs,
                  src_nodata=255, dst_transform=grid.transform, dst_crs=grid.crs,
                  dst_nodata=255, resampling=Resampling.nearest)
    return out


def _expected(after_cls: np.ndarray, before_on_after: np.ndarray, net) -> np.ndarray:
    return change_lookup(raster_classes(net.classes))[before_on_after, after_cls]


def _run(after, befores, net, out: Path, **kw) -> tuple[dict, np.ndarray]:
    result = change.change_scenes(after, befores, net, out, raster=out.with_suffix(".tif"),
                                  min_area=0, device="cpu", overwrite=True, **kw)
    with rasterio.open(out.with_suffix(".tif")) as src:
        return result, src.read(1)


def _to_utm(src_path: Path, dst_path: Path, pixel_m: float = 15.0) -> Path:
    """The scene reprojected to UTM 30N with another pixel size (a reference from another
    processing chain)."""
    with rasterio.open(src_path) as src:
        transform, w, h = calculate_default_transform(src.crs, "EPSG:32630", src.width,
                                                      src.height, *src.bounds,
                                                      resolution=pixel_m)
        profile = {**src.profile, "crs": "EPSG:32630", "transform": transform, "width": w,
                   "height": h}
        with rasterio.open(dst_path, "w", **profile) as dst:
            for b in range(1, src.count + 1):
                out = np.full((h, w), np.nan, np.float32)
                reproject(rasterio.band(src, b), out, dst_transform=transform,
                          dst_crs="EPSG:32630", dst_nodata=np.nan, resampling=Resampling.bilinear)
                dst.write(out, b)
            dst.descriptions = src.descriptions
    return dst_path


def test_change_is_each_dates_segmentation_on_the_after_grid_across_crs(tmp_path, net):
    """The whole Spain chip: the before scene in UTM at 15 m, the after in EPSG:4326 at ~10 m.
    Classes pixel for pixel = lookup(before's own segmentation warped nearest, after's own);
    the labelled water (all of it new water) comes out as flood, the land as no water, up to
    the model's own errors."""
    from rasterio.windows import Window

    after, before_4326, _, water = write_pair(tmp_path, window=Window(0, 0, 512, 512))
    before = _to_utm(before_4326, tmp_path / "S1_20190101_before_utm.tif")
    result, got = _run(after, [before], net, tmp_path / "flood.gpkg")
    after_cls = _segment(after, net, tmp_path / "after_classes.tif")
    before_cls = _segment(before, net, tmp_path / "before_classes.tif")
    with rasterio.open(tmp_path / "before_classes.tif") as b:
        assert b.crs.to_epsg() == 32630 and abs(b.transform.a - 15.0) < 1e-6   # its own grid
    want = _expected(after_cls, _onto(tmp_path / "before_classes.tif", after), net)
    assert (got == want).mean() > 0.999, (got != want).sum()
    with rasterio.open(tmp_path / "flood.tif") as out, rasterio.open(after) as a:
        assert out.crs == a.crs and out.transform == a.transform   # the after scene's grid
    labelled = np.isfinite(rasterio.open(after).read(1)) & (got != 255)
    flood_on_water = (got[water & labelled] == FLOOD).mean()
    flood_on_land = (got[~water & labelled] == FLOOD).mean()
    assert flood_on_water > 0.3 and flood_on_land < 0.1, (flood_on_water, flood_on_land)
    assert flood_on_water > 5 * flood_on_land
    assert (before_cls != 255).any()
    # the GeoPackage: change classes, geodesic areas that add up to the class raster's
    import geopandas as gpd

    frame = gpd.read_file(tmp_path / "flood.gpkg", layer="landcover")
    assert set(frame.class_name) <= {c["name"] for c in WATER_CHANGE} and "flood" in set(frame.class_name)
    assert result["class_area_m2"]["flood"] == pytest.approx(
        frame.loc[frame.class_name == "flood", "area_m2"].sum())
    px_m2 = raster_class_areas_m2(tmp_path / "flood.tif")[FLOOD]
    assert result["class_area_m2"]["flood"] == pytest.approx(px_m2, rel=0.02)


def test_output_covers_only_the_common_footprint_and_nodata_of_either_date(tmp_path, net):
    after, before, _, _ = write_pair(tmp_path)
    with rasterio.open(after) as src:
        a = src.read()
        profile = src.profile
    a[:, :40, :] = np.nan                                       # nodata in the after scene
    with rasterio.open(after, "w", **profile) as dst:
        dst.write(a)
        dst.descriptions = ("VV", "VH")
    with rasterio.open(before) as src:
        b = src.read()
        part = rasterio.windows.Window(0, 0, 150, 256)          # the before covers 150 columns
        profile = {**src.profile, "width": 150, "transform": src.window_transform(part)}
    b = b[:, :, :150].copy()
    b[:, 200:, :] = np.nan                                      # and has nodata at the bottom
    partial = tmp_path / "S1_20190101_before_part.tif"
    with rasterio.open(partial, "w", **profile) as dst:
        dst.write(b)
        dst.descriptions = ("VV", "VH")
    _, got = _run(after, [partial], net, tmp_path / "flood.gpkg")
    assert (got[:40] == 255).all()                  # after nodata
    assert (got[200:] == 255).all()                 # before nodata
    assert (got[:, 150:] == 255).all()              # outside the before footprint
    assert (got[41:199, :149] != 255).all()         # both dates have data: classified


def test_three_references_one_of_them_wrong(tmp_path, net):
    """Two good references and one that is the flooded scene itself: reference water is water
    in at least half of them, so the wrong one changes nothing; alone, it hides the flood."""
    after, before, _, water = write_pair(tmp_path)
    second = tmp_path / "S1_20190115_before.tif"
    second.write_bytes(before.read_bytes())
    wrong = tmp_path / "S1_20190201_wrong.tif"
    wrong.write_bytes(after.read_bytes())
    _, single = _run(after, [before], net, tmp_path / "one.gpkg")
    _, voted = _run(after, [before, wrong, second], net, tmp_path / "three.gpkg")
    _, alone = _run(after, [wrong], net, tmp_path / "wrong.gpkg")
    np.testing.assert_array_equal(voted, single)
    assert (single == FLOOD).sum() > 100
    assert (alone == FLOOD).sum() < 0.05 * (single == FLOOD).sum()   # the flood hidden
    assert (alone[single == FLOOD] == PERMANENT).mean() > 0.9


def _ces(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*CES, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=600)


def test_cli_summary_preview_and_a_reference_dated_after(tmp_path):
    """A reference named with a later date than the after scene: one warning, exit 0; the
    summary gives geodesic km² per class; the preview has three panels and a legend."""
    after, before, _, _ = write_pair(tmp_path, before_name="S1_20190501_before.tif")
    out = tmp_path / "flood.gpkg"
    proc = _ces("change", after, "--before", before, "-o", out, "--summary", "--preview",
                "--raster", "--confidence")
    assert proc.returncode == 0, proc.stderr
    dated = [l for l in proc.stderr.splitlines() if "dated 2019-05-01" in l]
    assert len(dated) == 1 and "S1_20190501_before.tif" in dated[0], proc.stderr
    lines = proc.stdout.splitlines()
    assert any(l.split()[:1] == ["flood"] and l.endswith("km²") for l in lines), proc.stdout
    for suffix in (".gpkg", "_classes.tif", "_confidence.tif", "_preview.png"):
        assert (tmp_path / f"flood{suffix}").is_file(), suffix
    from PIL import Image

    from crossearth_sar.core.change.preview import GAP, TITLE

    picture = np.asarray(Image.open(tmp_path / "flood_preview.png").convert("RGB"))
    assert picture.shape[1] == 3 * 256 + 2 * GAP                          # three panels
    panels = picture[TITLE:TITLE + 256]                                   # the maps, no legend
    rgb = panels.astype(int)
    flood_red = rgb[..., 0] - rgb[..., 1:].max(axis=-1) > 80   # red over the grey scene
    with rasterio.open(tmp_path / "flood_classes.tif") as src:
        flood_px = int((src.read(1) == FLOOD).sum())
    assert flood_px > 100
    assert flood_red[:, :2 * 256].sum() == 0                              # before, after: no red
    assert flood_red[:, 2 * (256 + GAP):].sum() == pytest.approx(flood_px, rel=0.1)
    with rasterio.open(tmp_path / "flood_confidence.tif") as src:
        conf = src.read(1)
        assert src.dtypes[0] == "float32" and np.nanmin(conf) >= 0 and np.nanmax(conf) <= 1


def _assert_refused(proc, *names, tmp_path):
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    errors = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for name in names:
        assert str(name) in errors[0], errors[0]
    assert not list(tmp_path.glob("out*")) and not list(tmp_path.glob(".ces-*"))


def test_bad_pairs_are_refused_naming_both_files(tmp_path):
    after, before, _, _ = write_pair(tmp_path)
    # 1. the same file twice
    _assert_refused(_ces("change", after, "--before", after, "-o", tmp_path / "out.gpkg"),
                    after, tmp_path=tmp_path)
    # 2. footprints that do not overlap: the before moved 5,000 pixels (0.45 degrees) north
    far = tmp_path / "S1_20190101_far.tif"
    with rasterio.open(before) as src:
        profile = {**src.profile, "transform": src.transform @ src.transform.translation(0, -5000)}
        with rasterio.open(far, "w", **profile) as dst:
            dst.write(src.read())
            dst.descriptions = src.descriptions
    proc = _ces("change", after, "--before", far, "-o", tmp_path / "out.gpkg")
    _assert_refused(proc, after, far, tmp_path=tmp_path)
    assert "do not overlap" in proc.stderr
    # 3. another polarization: an HH reference for a VV scene
    hh = tmp_path / "S1_20190101_hh.tif"
    with rasterio.open(before) as src:
        with rasterio.open(hh, "w", **{**src.profile, "count": 1}) as dst:
            dst.write(src.read(1), 1)
            dst.descriptions = ("HH",)
    proc = _ces("change", after, "--before", hh, "-o", tmp_path / "out.gpkg")
    _assert_refused(proc, after, hh, tmp_path=tmp_path)
    assert "polarization" in proc.stderr


def test_evaluate_scores_a_change_product_by_the_labels_meaning(tmp_path):
    """The labels of the pair are all new water: scored as new water and as water after,
    next to the single date, on the same pixels (water after = single date there)."""
    after, before, labels, _ = write_pair(tmp_path)
    classes = SCENE.parent / "sen1floods11_classes.yaml"
    out = tmp_path / "report.json"
    proc = _ces("evaluate", "--images", after, "--before", before, "--labels", labels,
                "--classes", classes, "--label-meaning", "new-water", "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert "change: flood (new water) (the labels' meaning)" in proc.stdout
    report = json.loads(out.read_text())
    assert report["declared"] == "new-water" and report["images"] == 1
    single, new, after_all = report["single_date"], report["new-water"], report["water-after"]
    assert single["confusion_matrix"] == after_all["confusion_matrix"]
    assert new["pixels"] == single["pixels"] > 0
    # new water never counts more water pixels than water after
    assert sum(r[1] for r in new["confusion_matrix"]) <= sum(r[1] for r in single["confusion_matrix"])
    assert os.path.getsize(out) > 0 and LABELS.is_file()
