"""A full disk, end to end: ``ces segment``, ``ces change``, ``ces finetune`` and ``ces evaluate
--json`` writing onto a small tmpfs, and the pre-flight check that refuses a disk clearly too
small before any work.

Each case mounts a tmpfs of a chosen size as the output folder (root only; skipped, with the
reason, where mounting is not allowed) and runs ``ces`` in-process (crossearth_cli.main.main,
as the console script does, like tests/cli/test_bad_inputs.py), capturing file descriptor 2
(libtiff and GDAL write there themselves). It asserts: exit status 2, exactly one line
``ces: error: no space left on device writing PATH (about N MB needed, M MB free)`` with
PATH the user's output as given on the command line (never a hidden temporary) and N > M,
no traceback and no library line (libtiff, GDAL, torch), and nothing left in the output
folder; for training, the previous checkpoint whole, no orphan state file, and ``--resume``
continuing from it. The tmpfs is unmounted by the fixture's finalizer.

``ces prepare`` and the temporary prepared scene of ``ces segment PRODUCT.zip`` use a real
Sentinel-1 product's metadata reduced 32 times (tests/_helpers_s1.py; skipped where
../shared/data/s1_safe is absent).

The sizes are measured, not assumed: a first segmentation on the ordinary disk measures its
temporary rasters and outputs, and each case's tmpfs fits everything written before the file
it is meant to fail on, and half of that file. The mid-run cases lower the pre-flight
estimates to zero (else the check would refuse these small disks at once, as its own cases
show).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crossearth_sar.core.models import checkpoints
from crossearth_sar.core.products import outputs
from crossearth_sar.core.scene.sentinel1 import prepared
from crossearth_sar.crossearth_cli.main import main

from _helpers_micro import micro_model
from _helpers_train import write_label, write_scene

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: one intra-op thread

MESSAGE = re.compile(r"^ces: error: no space left on device writing (?P<path>\S+) "
                     r"\(about (?P<need>\d+) MB needed, (?P<free>\d+) MB free\)$")
LIBRARY_WORDS = ("Traceback", "ERROR", "_tiff", "TIFF", "inline_container", "RuntimeError",
                 "Warning", "CPLE_")
PAGE = 4096
SLACK = 4 * PAGE         # bytes a tmpfs is given beyond what must fit: side files, directories
TILING = ["--tile", "64", "--overlap", "8"]


def _mount(folder: Path, size: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={int(size)}", "tmpfs",
                           str(folder)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {' '.join(done.stderr.split())}")


@pytest.fixture
def small_disk():
    """``small_disk(folder, bytes)`` mounts a tmpfs of that size on ``folder``; all are
    unmounted at the end of the test."""
    if not sys.platform.startswith("linux"):
        pytest.skip("tmpfs mounts are a Linux feature")
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mounted: list[Path] = []

    def make(folder: Path, size: int) -> Path:
        _mount(folder, size)
        mounted.append(folder)
        return folder
    yield make
    for folder in reversed(mounted):
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@pytest.fixture
def no_preflight(monkeypatch):
    """The pre-flight estimates at zero, so that a run starts on a disk too small for it."""
    for name in ("CONFIDENCE_BYTES", "CLASS_BYTES", "PICTURE_BYTES"):
        monkeypatch.setattr(outputs, name, 0.0)
    monkeypatch.setattr(outputs, "VECTOR_BYTES", {})
    monkeypatch.setattr(prepared, "BYTES_PER_PIXEL_AND_BAND", 0)


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    """A 256 x 256 scene and its labels, a second date, and the micro model."""
    d = tmp_path_factory.mktemp("disk")
    truth = write_scene(d / "a_img.tif", size=256, water_box=(40, 200, 30, 180))
    write_label(d / "a_lab.tif", truth)
    write_scene(d / "b_img.tif", size=256, seed=1, water_box=(40, 120, 30, 100))
    checkpoints.save(micro_model(), d / "micro.safetensors")
    return d


def _disk_use(path: Path) -> int:
    """Bytes a file takes on a tmpfs (whole pages)."""
    return -(-path.stat().st_size // PAGE) * PAGE


@pytest.fixture(scope="module")
def sizes(ws, tmp_path_factory) -> dict[str, int]:
    """What a segmentation of a_img.tif writes, measured on the ordinary disk: its temporary
    rasters ("temporary") and each output."""
    from crossearth_sar.core.inference import pipeline

    out = tmp_path_factory.mktemp("measured")
    real = pipeline.temporary_folder
    measured: dict[str, int] = {}

    @contextlib.contextmanager
    def measuring(*args, **kwargs):
        with real(*args, **kwargs) as tmp:
            yield tmp
            measured["temporary"] = sum(_disk_use(p) for p in tmp.iterdir())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipeline, "temporary_folder", measuring)
        code = main(["segment", str(ws / "a_img.tif"), "-o", str(out / "o.gpkg"), "--model",
                     str(ws / "micro.safetensors"), *TILING, "--confidence", "--preview"])
    assert code == 0
    measured.update(vector=_disk_use(out / "o.gpkg"),
                    confidence=_disk_use(out / "o_confidence.tif"),
                    preview=_disk_use(out / "o_preview.png"))
    assert all(v > 2 * SLACK + PAGE for v in measured.values()), measured   # halves don't fit
    return measured


def _one_error(capfd, allowed_prefix: str = "") -> re.Match:
    """The run's only error line, parsed; no other line but ``allowed_prefix`` ones."""
    out, err = capfd.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ces: error: ")]
    assert len(errors) == 1, err
    others = [line for line in lines if line not in errors
              and not (allowed_prefix and line.startswith(allowed_prefix))]
    assert others == [], err
    assert not any(word in err + out for word in LIBRARY_WORDS), err
    match = MESSAGE.match(errors[0])
    assert match, errors[0]
    assert int(match["need"]) > int(match["free"]), errors[0]
    return match


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- ces segment ---------------------------------------------------------------------------------
SEGMENT_CASES = {
    # case: (extra flags, the file that must not fit, what fits before it, the path named)
    "temporary-rasters": ([], "temporary", (), "o.gpkg"),
    "vector": ([], "vector", ("temporary",), "o.gpkg"),
    "confidence": (["--confidence"], "confidence", ("temporary", "vector"), "o_confidence.tif"),
    "preview": (["--preview"], "preview", ("temporary", "vector"), "o_preview.png"),
}


@pytest.mark.parametrize("case", list(SEGMENT_CASES))
def test_segment_onto_a_full_disk_names_the_output(case, ws, sizes, small_disk, no_preflight,
                                                   tmp_path, capfd, monkeypatch):
    flags, failing, fitting, named = SEGMENT_CASES[case]
    size = sum(sizes[k] for k in fitting) + (SLACK if fitting else 0) + sizes[failing] // 2
    out = small_disk(tmp_path / "out", size)
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    code = main(["segment", str(ws / "a_img.tif"), "-o", "out/o.gpkg", "--model",
                 str(ws / "micro.safetensors"), *TILING, *flags])
    match = _one_error(capfd)
    assert code == 2
    assert match["path"] == f"out/{named}"
    assert _listing(out) == [], "something was left in the output folder"


def test_json_progress_gives_the_same_message_as_one_error_event(ws, sizes, small_disk,
                                                                 no_preflight, tmp_path, capfd,
                                                                 monkeypatch):
    small_disk(tmp_path / "out", sizes["temporary"] // 2)
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    code = main(["segment", str(ws / "a_img.tif"), "-o", "out/o.gpkg", "--model",
                 str(ws / "micro.safetensors"), *TILING, "--progress", "json"])
    out, err = capfd.readouterr()
    assert code == 2
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["event"] for e in events if e["event"] != "progress"] == ["error"]
    assert events[-1]["message"] == err.strip()[len("ces: error: "):]
    assert MESSAGE.match(err.strip())


@pytest.mark.parametrize("command, output", [
    (["segment", "a_img.tif", "--confidence"], "out/o.gpkg"),
    (["change", "a_img.tif", "--before", "b_img.tif"], "out/flood.gpkg")])
def test_segment_and_change_are_refused_at_once_on_a_disk_clearly_too_small(
        command, output, ws, small_disk, tmp_path, capfd, monkeypatch):
    out = small_disk(tmp_path / "out", 16 * PAGE)
    monkeypatch.chdir(tmp_path)

    def never(*args, **kwargs):
        raise AssertionError("the model was loaded: the check came too late")
    monkeypatch.setattr(checkpoints, "load", never)
    capfd.readouterr()
    args = [str(ws / a) if a.endswith(".tif") else a for a in command]
    code = main([*args, "-o", output, "--model", str(ws / "micro.safetensors"), *TILING])
    match = _one_error(capfd)
    assert code == 2 and match["path"] == output
    assert _listing(out) == []


# -- ces change ----------------------------------------------------------------------------------
def test_change_onto_a_full_disk_names_the_output(ws, sizes, small_disk, no_preflight, tmp_path,
                                                  capfd, monkeypatch):
    """Two scenes' temporary rasters fill the disk that one scene's would fit in."""
    out = small_disk(tmp_path / "out", sizes["temporary"] + SLACK)
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    code = main(["change", str(ws / "a_img.tif"), "--before", str(ws / "b_img.tif"), "-o",
                 "out/flood.gpkg", "--model", str(ws / "micro.safetensors"), *TILING])
    match = _one_error(capfd)
    assert code == 2 and match["path"] == "out/flood.gpkg"
    assert _listing(out) == []


# -- ces finetune --------------------------------------------------------------------------------
def _finetune(ws: Path, *extra: str) -> list[str]:
    return ["finetune", "--model", str(ws / "micro.safetensors"), "--images",
            str(ws / "a_img.tif"), "--labels", str(ws / "a_lab.tif"), "--iters", "4",
            "--save-every", "2", "--tile", "32", "--batch", "2", "-o", "model/ft.safetensors",
            "--work-dir", "work", *extra]


def _checkpoint_bytes(ws: Path) -> int:
    """A checkpoint of the micro model fine-tuned (backbone frozen): the model file and
    AdamW's two float32 moments of the decoder's parameters."""
    model = micro_model()
    trainable = sum(p.numel() for name, p in model.named_parameters()
                    if not name.startswith("backbone."))
    return (ws / "micro.safetensors").stat().st_size + 8 * trainable


def test_finetune_a_later_checkpoint_that_does_not_fit_leaves_the_previous_one(
        ws, small_disk, tmp_path, capfd, monkeypatch):
    """The first checkpoint fits, the second does not (the previous one stays until the new
    one is committed): exit 2 naming the checkpoint, the checkpoint of iteration 2 whole with
    no orphan state file, and --resume continues from it once there is room."""
    work = small_disk(tmp_path / "work", int(1.5 * _checkpoint_bytes(ws)))
    (tmp_path / "model").mkdir()
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    code = main(_finetune(ws))
    match = _one_error(capfd, allowed_prefix="ces finetune: ")
    assert code == 2 and match["path"] == "work/last.safetensors"
    assert _listing(work) == ["last.safetensors", "last.state-00000002.pt"]
    assert _listing(tmp_path / "model") == []
    assert checkpoints.read_config(work / "last.safetensors")["provenance"]["iteration"] == 2

    subprocess.run(["mount", "-o", f"remount,size={4 * _checkpoint_bytes(ws)}", str(work)],
                   check=True, capture_output=True)
    code = main(_finetune(ws, "--resume"))
    err = capfd.readouterr().err
    assert code == 0, err
    assert "resumed from work/last.safetensors at iteration 2" in err
    assert _listing(work) == ["last.safetensors", "last.state-00000004.pt"]
    assert (tmp_path / "model" / "ft.safetensors").is_file()


def test_finetune_is_refused_before_training_on_a_disk_clearly_too_small(
        ws, small_disk, tmp_path, capfd, monkeypatch):
    from crossearth_sar.train import finetune

    work = small_disk(tmp_path / "work", _checkpoint_bytes(ws) // 2)
    (tmp_path / "model").mkdir()
    monkeypatch.chdir(tmp_path)

    def never(*args, **kwargs):
        raise AssertionError("training started: the check came too late")
    monkeypatch.setattr(finetune, "train", never)
    capfd.readouterr()
    code = main(_finetune(ws))
    match = _one_error(capfd, allowed_prefix="ces finetune: ")
    assert code == 2 and match["path"] == "work/last.safetensors"
    assert _listing(work) == [] and _listing(tmp_path / "model") == []


# -- ces evaluate --json -------------------------------------------------------------------------
def test_evaluate_json_onto_a_full_disk_names_the_report(ws, small_disk, tmp_path, capfd,
                                                         monkeypatch):
    out = small_disk(tmp_path / "out", 4 * PAGE)
    (out / "already-there.bin").write_bytes(b"\0" * 4 * PAGE)   # the disk is full
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    code = main(["evaluate", "--model", str(ws / "micro.safetensors"), "--images",
                 str(ws / "a_img.tif"), "--labels", str(ws / "a_lab.tif"), *TILING,
                 "--json", "out/report.json", "--experts-plot", "experts.png"])
    match = _one_error(capfd)
    assert code == 2 and match["path"] == "out/report.json"
    assert _listing(out) == ["already-there.bin"]


# -- ces prepare and the prepared scene of ces segment PRODUCT.zip -------------------------------
@pytest.fixture(scope="module")
def product(tmp_path_factory) -> Path:
    """A Sentinel-1 GRD product (zip), its real metadata reduced 32 times."""
    from _helpers_s1 import PRODUCTS, reduce_product

    if not PRODUCTS["new_noise"].is_file():
        pytest.skip("../shared/data/s1_safe is absent")
    return reduce_product(PRODUCTS["new_noise"], tmp_path_factory.mktemp("s1"), factor=32)


@pytest.mark.parametrize("preflight", [True, False], ids=["refused-at-once", "mid-run"])
def test_prepare_onto_a_full_disk_names_the_output(preflight, product, small_disk, tmp_path,
                                                   capfd, monkeypatch):
    if not preflight:
        monkeypatch.setattr(prepared, "BYTES_PER_PIXEL_AND_BAND", 0)
    out = small_disk(tmp_path / "out", 64 * PAGE)
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    code = main(["prepare", str(product), "-o", "out/scene.tif"])
    match = _one_error(capfd)
    assert code == 2 and match["path"] == "out/scene.tif"
    assert _listing(out) == []


def test_segment_a_product_onto_a_full_disk_names_the_output_not_the_prepared_scene(
        product, ws, small_disk, no_preflight, tmp_path, capfd, monkeypatch):
    out = small_disk(tmp_path / "out", 64 * PAGE)
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    code = main(["segment", str(product), "-o", "out/o.gpkg", "--model",
                 str(ws / "micro.safetensors"), *TILING])
    match = _one_error(capfd)
    assert code == 2 and match["path"] == "out/o.gpkg"
    assert _listing(out) == []
