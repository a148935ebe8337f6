"""Our own sweep of bad inputs: scenes, models, labels, classes files, outputs and flags.

Each case runs ``ces`` in-process (crossearth_cli.main.main, as the console script does)
in a folder of real files (GDAL rasters, safetensors models, YAML classes files) and
asserts: exit status 2, exactly one stderr line ``ces: error: ...`` naming the file or flag
at fault, no traceback, and no file created, changed or removed (the folder's names,
contents and modes are hashed before and after). The cases first reported by users are marked
in their ids (why-...).
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from rasterio.control import GroundControlPoint
from rasterio.transform import from_origin

from crossearth_sar.core.models import checkpoints
from crossearth_sar.core.models.vit import build_backbone_from_config
from crossearth_sar.crossearth_cli.main import main

from _helpers_micro import micro_config, micro_model
from _helpers_train import write_label, write_scene

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: one intra-op thread

UTM = "EPSG:32630"


class Payload:
    """A pickle that creates a file when unpickled by anything weaker than weights_only."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))



def _cut_cog(src_values: np.ndarray, path: Path, dtype: str) -> None:
    """A COG of ``src_values`` cut to 70 % of its bytes: header and overviews survive."""
    tmp = path.with_name(path.stem + "_full.tif")
    h, w = src_values.shape
    with rasterio.open(tmp, "w", driver="GTiff", width=w, height=h, count=1, dtype=dtype,
                       crs=UTM, transform=from_origin(500000, 4400000, 10, 10)) as dst:
        dst.write(src_values.astype(dtype), 1)
    full = path.with_name(path.stem + "_cog.tif")
    rasterio.shutil.copy(str(tmp), str(full), driver="COG", blocksize=256, compress="deflate")
    blob = full.read_bytes()
    path.write_bytes(blob[: int(len(blob) * 0.7)])
    tmp.unlink()
    full.unlink()
    with rasterio.open(path) as src:   # the premise: overviews read, full resolution does not
        assert src.overviews(1)
        src.read(1, out_shape=(h // 8, w // 8))
        with pytest.raises(rasterio.errors.RasterioIOError):
            src.read(1)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """The folder of bad (and a few good) inputs every case runs in."""
    d = tmp_path_factory.mktemp("bad")
    truth = write_scene(d / "a_img.tif", size=64)
    write_label(d / "a_lab.tif", truth)
    write_label(d / "small_lab.tif", truth[:32, :32],   # elsewhere: does not overlap a_img.tif
                transform=from_origin(600000, 4400000, 10, 10))
    rng = np.random.default_rng(0)
    _cut_cog(rng.integers(1, 4000, (2048, 2048)), d / "cut.tif", "uint16")
    _cut_cog(rng.integers(0, 2, (2048, 2048)), d / "cut_lab.tif", "uint8")
    write_scene(d / "gone_src.tif", size=64)
    rasterio.shutil.copy(str(d / "gone_src.tif"), str(d / "gone.vrt"), driver="VRT")
    (d / "gone_src.tif").unlink()
    (d / "text.tif").write_text("not a raster\n")
    (d / "empty.tif").write_bytes(b"")
    (d / "dir.tif").mkdir()
    with rasterio.open(d / "nodata.tif", "w", driver="GTiff", width=16, height=16, count=1,
                       dtype="float32", crs=UTM, transform=from_origin(500000, 4400000, 10, 10),
                       nodata=np.nan) as dst:
        dst.write(np.full((1, 16, 16), np.nan, np.float32))
    gcps = [GroundControlPoint(0, 0, -3.0, 40.0), GroundControlPoint(0, 16, -2.9, 40.0),
            GroundControlPoint(16, 0, -3.0, 39.9)]
    with rasterio.open(d / "gcps.tif", "w", driver="GTiff", width=16, height=16, count=1,
                       dtype="float32", gcps=gcps, crs="EPSG:4326") as dst:
        dst.write(rng.normal(-10, 2, (1, 16, 16)).astype(np.float32))
    write_scene(d / "one.tif", size=1, water_box=(0, 0, 0, 0))
    checkpoints.save(micro_model(), d / "micro.safetensors")
    checkpoints.save(micro_model(seed=1), d / "micro2.safetensors")
    checkpoints.save(micro_model([{"name": "land", "value": 0, "color": "#000000"},
                                 {"name": "sea", "value": 1, "color": "#0000ff"}]),
                     d / "other_classes.safetensors")
    bb = micro_config()["backbone"]
    checkpoints.save(build_backbone_from_config(bb), d / "backbone.safetensors")
    blob = (d / "micro.safetensors").read_bytes()
    (d / "cut.safetensors").write_bytes(blob[: len(blob) // 2])
    from safetensors.numpy import save_file

    save_file({"w": np.zeros(3, np.float32)}, str(d / "foreign.safetensors"))
    with open(d / "evil.pth", "wb") as f:
        pickle.dump({"w": Payload(str(d / "PWNED"))}, f)
    (d / "bad.yaml").write_text("classes: [{name: water, value: 1\n")
    (d / "dup.yaml").write_text("classes: [{name: a, value: 1}, {name: b, value: 1}]\n")
    (d / "color.yaml").write_text("classes: [{name: a, value: 0, color: 'green-ish'}, "
                                  "{name: b, value: 1}]\n")
    (d / "lacking.yaml").write_text('classes: [{name: background, value: 0, color: "#000000"}]\n')
    (d / "out").mkdir()
    (d / "out" / "existing.gpkg").write_bytes(b"an existing output\n")
    (d / "out" / "existing.md").write_text("an existing output\n")
    return d


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        st = p.lstat()
        h.update(f"{p.relative_to(folder)}|{st.st_mode:o}".encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


SEG = "segment a_img.tif -o out/o.gpkg --model micro.safetensors"
FT = ("finetune --model micro.safetensors --images a_img.tif --labels a_lab.tif --iters 2 "
      "--tile 32 -o out/ft.safetensors")
EV = ("evaluate --model micro.safetensors --images a_img.tif --labels a_lab.tif --tile 32 "
      "--overlap 8")
AG = "agreement --models micro.safetensors micro2.safetensors --images a_img.tif --tile 32"

# (id, command line, what the one error line must name)
CASES = [
    # scenes
    ("info-missing", "info missing.tif", "missing.tif"),
    ("info-folder", "info dir.tif", "dir.tif"),
    ("info-text", "info text.tif", "text.tif"),
    ("info-empty", "info empty.tif", "empty.tif"),
    ("why-info-cut-cog", "info cut.tif", "cut.tif"),
    ("why-info-vrt-source-gone", "info gone.vrt", "gone.vrt"),
    ("info-all-nodata", "info nodata.tif", "nodata.tif"),
    ("info-gcps-only", "info gcps.tif", "gcps.tif"),
    ("info-band-7", "info a_img.tif --bands 7", "a_img.tif"),
    ("info-band-name", "info a_img.tif --bands XX", "a_img.tif"),
    ("info-domain-complex", "info a_img.tif --domain complex", "a_img.tif"),
    ("why-segment-cut-cog", "segment cut.tif -o out/o.gpkg --model micro.safetensors", "cut.tif"),
    ("why-segment-vrt-source-gone", "segment gone.vrt -o out/o.gpkg --model micro.safetensors",
     "gone.vrt"),
    ("segment-missing-scene", "segment missing.tif -o out/o.gpkg", "missing.tif"),
    ("segment-all-nodata", "segment nodata.tif -o out/o.gpkg --model micro.safetensors",
     "nodata.tif"),
    ("why-descriptors-cut-cog", "descriptors cut.tif -o out/d.tif", "cut.tif"),
    # models
    ("why-segment-backbone-model", f"{SEG.replace('micro.', 'backbone.')}", "backbone.safetensors"),
    ("segment-missing-model", f"{SEG.replace('micro.', 'missing.')}", "missing.safetensors"),
    ("segment-cut-model", f"{SEG.replace('micro.', 'cut.')}", "cut.safetensors"),
    ("segment-foreign-model", f"{SEG.replace('micro.', 'foreign.')}", "foreign.safetensors"),
    ("info-cut-model", "info cut.safetensors", "cut.safetensors"),
    ("info-foreign-model", "info foreign.safetensors", "foreign.safetensors"),
    ("finetune-pickle-model", FT.replace("micro.safetensors", "evil.pth"), "evil.pth"),
    ("evaluate-backbone-model", EV.replace("micro.", "backbone."), "backbone.safetensors"),
    ("import-pickle-never-runs", "models import-dinov2 evil.pth --variant ti -o out/i.safetensors",
     "evil.pth"),
    ("convert-missing-model", "models convert missing.safetensors -o out/c.safetensors",
     "missing.safetensors"),
    # labels
    ("why-finetune-cut-image", FT.replace("a_img.tif", "cut.tif"), "cut.tif"),
    ("why-finetune-cut-label", FT.replace("a_lab.tif", "cut_lab.tif"), "cut_lab.tif"),
    ("why-evaluate-cut-label", EV.replace("a_lab.tif", "cut_lab.tif"), "cut_lab.tif"),
    ("finetune-label-other-grid", FT.replace("a_lab.tif", "small_lab.tif"), "small_lab.tif"),
    ("finetune-missing-images", FT.replace("a_img.tif", "nothing/"), "nothing"),
    ("finetune-resume-nothing", FT + " --resume", "out/ft.ckpt"),
    # classes files
    ("classes-missing", FT + " --classes missing.yaml", "missing.yaml"),
    ("classes-bad-yaml", FT + " --classes bad.yaml", "bad.yaml"),
    ("classes-duplicate-values", FT + " --classes dup.yaml", "dup.yaml"),
    ("classes-bad-colour", FT + " --classes color.yaml", "color.yaml"),
    ("classes-lacking-a-label-value", FT + " --classes lacking.yaml", "a_lab.tif"),
    # outputs
    ("segment-unknown-vector-format", SEG.replace("o.gpkg", "o.txt"), "o.txt"),
    ("segment-output-folder-missing", SEG.replace("out/o.gpkg", "nowhere/o.gpkg"), "nowhere"),
    ("segment-output-exists", SEG.replace("o.gpkg", "existing.gpkg"), "existing.gpkg"),
    ("segment-raster-not-tif", SEG + " --raster out/classes.png", "classes.png"),
    ("why-descriptors-png", "descriptors a_img.tif -o out/desc.png", "desc.png"),
    ("finetune-output-not-safetensors", FT.replace("ft.safetensors", "ft.pt"), "ft.pt"),
    ("evaluate-json-not-json", EV + " --json out/r.txt", "r.txt"),
    ("evaluate-plot-not-png", EV + " --json out/r.json --experts-plot out/p.jpg", "p.jpg"),
    ("convert-output-not-safetensors", "models convert micro.safetensors -o out/c.pt", "c.pt"),
    # flags
    ("why-min-area-nan", SEG + " --min-area nan", "--min-area"),
    ("min-area-inf", SEG + " --min-area inf", "--min-area"),
    ("min-area-negative", SEG + " --min-area -1", "--min-area"),
    ("why-min-area-over-the-scene", SEG + " --min-area 1000000", "--min-area"),
    ("why-min-area-1x1-scene", SEG.replace("a_img.tif", "one.tif") + " --min-area 1000",
     "--min-area"),
    ("simplify-negative", SEG + " --simplify -1", "--simplify"),
    ("simplify-nan", SEG + " --simplify nan", "--simplify"),
    ("tile-too-small", SEG + " --tile 8", "--tile"),
    ("overlap-negative", SEG + " --overlap -1", "--overlap"),
    ("overlap-not-under-tile", SEG + " --tile 64 --overlap 64", "--overlap"),
    ("batch-zero", SEG + " --batch 0", "--batch"),
    ("device-bogus", SEG + " --device bogus", "--device"),
    ("why-domain-bogus-one-line", SEG + " --domain bogus", "--domain"),
    ("unknown-option", SEG + " --foo", "--foo"),
    ("missing-output-option", "segment a_img.tif", "--output"),
    ("descriptors-tile", "descriptors a_img.tif -o out/d.tif --tile 4", "--tile"),
    ("descriptors-domain", "descriptors a_img.tif -o out/d.tif --domain bogus", "--domain"),
    ("why-lr-negative", FT + " --lr -0.001", "--lr"),
    ("lr-nan", FT + " --lr nan", "--lr"),
    ("pretrain-lr-zero", FT.replace("finetune", "pretrain") + " --lr 0", "--lr"),
    ("iters-zero", FT.replace("--iters 2", "--iters 0"), "--iters"),
    ("batch-train-zero", FT + " --batch 0", "--batch"),
    ("weight-decay-inf", FT + " --weight-decay inf", "--weight-decay"),
    ("grad-clip-negative", FT + " --grad-clip -1", "--grad-clip"),
    ("accum-zero", FT + " --accum 0", "--accum"),
    ("warmup-below-auto", FT + " --warmup -2", "--warmup"),
    ("save-every-negative", FT + " --save-every -1", "--save-every"),
    ("workers-negative", FT + " --workers -1", "--workers"),
    ("train-tile-too-small", FT.replace("--tile 32", "--tile 8"), "--tile"),
    ("evaluate-overlap-over-tile", EV.replace("--overlap 8", "--overlap 32"), "--overlap"),
    ("import-top-k-over-experts",
     "models import-dinov2 evil.pth --variant ti --experts 2 --top-k 3 -o out/i.safetensors",
     "--top-k"),
    ("unknown-command", "bogus a_img.tif", "bogus"),
    # ces agreement
    ("agreement-one-model", f"{AG.replace(' micro2.safetensors', '')}", "--models"),
    ("agreement-missing-model", AG.replace("micro2.", "missing."), "missing.safetensors"),
    ("agreement-model-twice", AG.replace("micro2.", "micro."), "micro.safetensors"),
    ("agreement-backbone-model", AG.replace("micro2.", "backbone."), "backbone.safetensors"),
    ("agreement-other-class-names", AG.replace("micro2.", "other_classes."),
     "other_classes.safetensors"),
    ("agreement-no-images", AG.replace(" --images a_img.tif", ""), "--images"),
    ("agreement-missing-images", AG.replace("a_img.tif", "nothing/"), "nothing"),
    ("agreement-labels-elsewhere", AG + " --labels small_lab.tif", "small_lab.tif"),
    ("agreement-json-not-json", AG + " -o out/r.txt", "r.txt"),
    ("agreement-markdown-not-md", AG + " -o out/r.json --markdown out/r.json", "--markdown"),
    ("agreement-output-exists", AG + " --markdown out/existing.md", "existing.md"),
    ("agreement-overlap-over-tile", AG + " --tile 32 --overlap 32", "--overlap"),
]


def test_the_table_is_large_and_distinct():
    assert len(CASES) >= 40
    assert len({c[0] for c in CASES}) == len(CASES)
    assert len({c[1] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("argv,expect", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(argv, expect, ws, capsys,
                                                             monkeypatch):
    monkeypatch.chdir(ws)
    before = _digest(ws)
    code = main(argv.split())
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("ces: error: ") and expect in lines[0], lines[0]
    assert "Traceback" not in err + out
    assert _digest(ws) == before, "a file was created, changed or removed"
    assert not (ws / "PWNED").exists()


def test_json_progress_reports_the_same_error_as_one_event(ws, capsys, monkeypatch):
    monkeypatch.chdir(ws)
    code = main((SEG + " --min-area nan --progress json").split())
    out, err = capsys.readouterr()
    assert code == 2
    events = [json.loads(line) for line in out.splitlines()]
    assert events == [{"event": "error", "message": err.strip()[len("ces: error: "):]}]


# -- what was assumed is said -------------------------------------------------------------
def test_five_bands_without_descriptions_are_named_with_the_way_to_choose(tmp_path, capsys):
    path = tmp_path / "five.tif"
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=5, dtype="float32",
                       crs=UTM, transform=from_origin(500000, 4400000, 10, 10)) as dst:
        dst.write(np.random.default_rng(0).normal(-10, 2, (5, 32, 32)).astype(np.float32))
    assert main(["info", "--json", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    (warning,) = info["warnings"]
    assert "5 bands without descriptions" in warning and "bands 1, 2, 3" in warning
    assert "--bands" in warning
    assert main(["info", "--json", str(path), "--bands", "2"]) == 0   # chosen: nothing assumed
    assert json.loads(capsys.readouterr().out)["warnings"] == []


def test_ungeoreferenced_scene_warns_in_our_words_only(tmp_path, capsys):
    """Segmenting a raster without georeferencing: one ``ces: warning:`` line about it, and
    none of rasterio's raw NotGeoreferencedWarning (with its source path and line)."""
    scene = tmp_path / "nogeo.tif"
    write_scene(scene, size=40, crs=None)
    with rasterio.open(scene, "r+") as dst:   # no geotransform either
        dst.transform = rasterio.Affine.identity()
    model = tmp_path / "micro.safetensors"
    checkpoints.save(micro_model(), model)
    code = main(["segment", str(scene), "-o", str(tmp_path / "o.gpkg"), "--model", str(model),
                 "--tile", "32", "--overlap", "8"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "NotGeoreferencedWarning" not in err and ".py:" not in err, err
    assert all(line.startswith("ces: warning: ") for line in err.splitlines() if line.strip())
    assert "nogeo.tif has no coordinate reference system" in err


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_model_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = checkpoints.save(micro_model(), tmp_path / "m.safetensors")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == 0o666 & ~umask


def test_one_pixel_scene_segments(tmp_path, capsys):
    scene = tmp_path / "one.tif"
    write_scene(scene, size=1, water_box=(0, 0, 0, 0))
    model = tmp_path / "micro.safetensors"
    checkpoints.save(micro_model(), model)
    out = tmp_path / "one.gpkg"
    code = main(["segment", str(scene), "-o", str(out), "--model", str(model), "--raster",
                 "--summary"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    with rasterio.open(tmp_path / "one_classes.tif") as src:
        assert src.shape == (1, 1) and int(src.read(1)[0, 0]) in (0, 1)
    assert "one.tif: 1 polygons" in captured.out


def test_a_read_failure_mid_run_names_the_file_and_the_window(ws):
    """The cut COG opens (its statistics come from the surviving overviews); a window of the
    lost full-resolution blocks fails with the file, the window and GDAL's own words."""
    from rasterio.windows import Window

    from crossearth_sar.core.errors import InputError
    from crossearth_sar.core.scene.sar_io import open_scene

    with open_scene(ws / "cut.tif") as scene:
        scene.read_window(Window(0, 0, 256, 256))   # an early block survived
        with pytest.raises(InputError) as e:
            scene.read_window(Window(1792, 1792, 256, 256))
    message = str(e.value)
    assert "cut.tif" in message and "window col 1792, row 1792, 256 x 256 px" in message
    assert "IReadBlock failed" in message or "TIFFReadEncodedTile" in message
