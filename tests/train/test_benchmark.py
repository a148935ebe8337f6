"""``ces benchmark``: a suite of tiny real rasters and a tiny random model, real
fine-tunes (1 iteration, decoder-only and Earth-Adapter) and real evaluations; the table in
three formats with the baseline changes, a rerun that recomputes nothing, resume from a
checkpoint, and bad suite files refused with one line before anything is written."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import rasterio
import yaml

from crossearth_sar.core.models import checkpoints
from crossearth_sar.crossearth_cli.main import main

from _helpers_micro import micro_model
from _helpers_train import tiny_model, write_label, write_png, write_scene

CLASSES = [{"name": "land", "value": 0, "color": "#33a02c"},
           {"name": "water", "value": 1, "color": "#1f78b4"}]


def _db_scenes(folder, n=2, size=48):
    """float32 dB scenes (georeferenced) with a dark water box; labels 0 land / 1 water."""
    img, lab = folder / "img", folder / "lab"
    img.mkdir(parents=True), lab.mkdir(parents=True)
    for i in range(n):
        truth = write_scene(img / f"s{i}.tif", size=size, seed=i, water_box=(8, 30 + 4 * i, 4, 28))
        write_label(lab / f"s{i}.tif", truth)
    return img, lab


def _quicklook_pngs(folder, n=2, size=48):
    """8-bit PNG quicklooks (no georeferencing) with 0 / 255 masks, like OMBRIA."""
    img, lab = folder / "AFTER", folder / "MASK"
    img.mkdir(parents=True), lab.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(n):
        v = np.clip(np.full((size, size), 170) + rng.normal(0, 12, (size, size)), 0, 255)
        v[10:34, : 12 + 6 * i] = 40
        write_png(img / f"S1_after_{i:04d}.png", v)
        write_png(lab / f"S1_mask_{i:04d}.png", np.where(v < 100, 255, 0))
    return img, lab


def _suite(folder, base, **changes) -> dict:
    db_img, db_lab = _db_scenes(folder / "db")
    q_img, q_lab = _quicklook_pngs(folder / "ql")
    doc = {
        "name": "tiny-dg",
        "classes": CLASSES,
        "datasets": [
            {"name": "db", "images": str(db_img.relative_to(folder)), "labels": str(db_lab.relative_to(folder)),
             "classes": {"land": 0, "water": 1}},
            {"name": "ql", "images": str(q_img.relative_to(folder)), "labels": str(q_lab.relative_to(folder)),
             "classes": {"land": 0, "water": 255}, "max_images": 1},
        ],
        "models": {"tiny": str(base)},
        "evaluate": {"tile": 64, "batch": 2},
        "baseline": {"base": "tiny", "method": "none"},
        "experiments": [{"base": "tiny", "source": "db", "targets": ["db", "ql"],
                         "methods": ["decoder-only", "earth-adapter"], "iters": 1, "tile": 32,
                         "batch": 2, "save_every": 1, "adapter_rank": 4}],
    }
    doc.update(changes)
    return doc


def _write(folder, doc) -> str:
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def _events(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    path = tmp_path_factory.mktemp("base") / "tiny.safetensors"
    checkpoints.save(micro_model(classes=CLASSES), path)
    return path


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, tiny_base):
    """One real run of the tiny suite: (suite path, output folder, JSON events)."""
    import contextlib
    import io

    folder = tmp_path_factory.mktemp("suite")
    suite = _write(folder, _suite(folder, tiny_base))
    out = folder / "results"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(["benchmark", suite, "-o", str(out), "--progress", "json", "--device", "cpu"])
    assert code == 0, stderr.getvalue()[-2000:]
    return suite, out, _events(stdout.getvalue())


def test_table_in_three_formats_with_baseline_changes(first_run):
    _, out, events = first_run
    done = events[-1]
    assert done["event"] == "done" and done["computed"] == {"finetune": 2, "evaluate": 6}
    assert {k: v.split("/")[-1] for k, v in done["outputs"].items()} == {
        "markdown": "table.md", "csv": "table.csv", "json": "table.json"}
    doc = json.loads((out / "table.json").read_text())
    (table,) = doc["tables"]
    assert table["source"] == "db" and table["targets"] == ["db", "ql"]
    rows = {r["method"]: r for r in table["rows"]}
    assert list(rows) == ["none", "decoder-only", "earth-adapter"] and rows["none"]["baseline"]
    assert rows["none"]["trainable_params"] == 0
    assert 0 < rows["decoder-only"]["trainable_params"] < rows["earth-adapter"]["trainable_params"]
    assert all(rows[m]["finetune_wall_s"] > 0 and rows[m]["iterations"] == 1
               for m in ("decoder-only", "earth-adapter"))
    assert doc["datasets"]["ql"]["images"] == 1          # max_images
    base = rows["none"]["targets"]
    for method, row in rows.items():
        for target in ("db", "ql"):
            cell = row["targets"][target]
            assert 0.0 <= cell["miou"] <= 1.0
            assert cell["delta"]["miou"] == pytest.approx(cell["miou"] - base[target]["miou"], abs=1e-6)
            for name in ("land", "water"):
                v, b = cell["per_class_iou"][name], base[target]["per_class_iou"][name]
                assert cell["delta"]["per_class_iou"][name] == pytest.approx(v - b, abs=1e-6)
            # the evaluation file is the product's evaluate report
            report = json.loads(next((out / "evaluate").glob(f"{row['model_id']}__{target}.*.json")).read_text())
            assert report["miou"] == cell["miou"] and "confusion_matrix" in report

    md = (out / "table.md").read_text()
    assert "## source: db" in md and "| db land | db water | db mIoU |" in md
    ea = rows["earth-adapter"]
    line = next(x for x in md.splitlines() if x.startswith("| tiny | earth-adapter |"))
    d = 100 * ea["targets"]["ql"]["delta"]["miou"]
    assert f"{100 * ea['targets']['ql']['miou']:.2f} ({d:+.2f})" in line
    assert f"{ea['trainable_params']:,}" in line
    assert "(+" not in next(x for x in md.splitlines() if x.startswith("| tiny | none (baseline) |"))

    with open(out / "table.csv") as f:
        lines = list(csv.DictReader(f))
    assert [x["method"] for x in lines] == ["none", "decoder-only", "earth-adapter"]
    dec = next(x for x in lines if x["method"] == "decoder-only")
    assert float(dec["db mIoU IoU %"]) == pytest.approx(100 * rows["decoder-only"]["targets"]["db"]["miou"], abs=0.006)
    assert float(dec["ql water change %"]) == pytest.approx(
        100 * rows["decoder-only"]["targets"]["ql"]["delta"]["per_class_iou"]["water"], abs=0.006)
    assert lines[0]["db mIoU change %"] == "0.00"
    assert int(dec["trainable_params"]) == rows["decoder-only"]["trainable_params"]

    # the Earth-Adapter cell's model carries its adapter with the suite's rank
    cfg = checkpoints.read_config(out / ea["finetune"]["id"].join(["finetune/", ".safetensors"]))
    assert cfg["backbone"]["adapter"]["rank"] == 4
    # its recorded command line reads back, through the real `ces finetune` parser, as the cell
    from crossearth_sar.crossearth_cli.main import cli

    command = ea["finetune"]["command"]
    finetune = cli.get_command(None, "finetune")
    params = finetune.make_context("finetune", command[2:]).params
    settings = ea["finetune"]["settings"]
    assert params["peft"] == "earth-adapter" and params["device"] == "cpu"
    assert {k: params[k] for k in settings} == settings and settings["adapter_rank"] == 4


def test_rerun_recomputes_nothing(first_run, capsys):
    suite, out, _ = first_run
    cells = sorted((out / "finetune").glob("*.safetensors")) + sorted((out / "evaluate").glob("*.json"))
    before = {p: p.stat().st_mtime_ns for p in cells}
    code = main(["benchmark", suite, "-o", str(out), "--progress", "json", "--device", "cpu"])
    events = _events(capsys.readouterr().out)
    assert code == 0
    stages = {e["stage"] for e in events if e["event"] == "progress"}
    assert not stages & {"train", "evaluate", "read labels"}, stages
    assert events[-1]["computed"] == {"finetune": 0, "evaluate": 0}
    assert events[-1]["reused"] == {"finetune": 2, "evaluate": 6}
    assert {p: p.stat().st_mtime_ns for p in cells} == before


def test_interrupted_finetune_resumes_from_its_checkpoint(first_run, tmp_path, capsys):
    """A cell whose model and record are gone but whose checkpoint is there continues from
    the checkpoint (``--resume``): no step is redone and the parameters are the same."""
    import shutil

    suite, out, _ = first_run
    copy = tmp_path / "results"
    shutil.copytree(out, copy)
    doc = json.loads((copy / "table.json").read_text())
    row = next(r for r in doc["tables"][0]["rows"] if r["method"] == "decoder-only")
    cell = row["finetune"]["id"]
    (copy / "finetune" / f"{cell}.safetensors").unlink()
    (copy / "finetune" / f"{cell}.json").unlink()
    for p in (copy / "evaluate").glob(f"{cell}__*.json"):
        p.unlink()
    code = main(["benchmark", suite, "-o", str(copy), "--progress", "json", "--device", "cpu"])
    events = _events(capsys.readouterr().out)
    assert code == 0 and events[-1]["computed"] == {"finetune": 1, "evaluate": 2}
    record = json.loads((copy / "finetune" / f"{cell}.json").read_text())
    assert record["resumed_from"] == 1 and record["param_digest"] == row["finetune"]["param_digest"]
    assert not [e for e in events if e["event"] == "progress" and e["stage"] == "train"
                and e["done"] < e["total"]]     # no training step redone


def _bad(doc, key, value):
    doc = json.loads(json.dumps(doc))
    parts = key.split(".")
    target = doc
    for p in parts[:-1]:
        target = target[int(p)] if p.isdigit() else target[p]
    last = int(parts[-1]) if parts[-1].isdigit() else parts[-1]
    if value is None:
        del target[last]
    else:
        target[last] = value
    return doc


@pytest.mark.parametrize("key, value, message", [
    ("colour", "red", "unknown key(s) colour"),
    ("experiments.0.methods", ["decoder-only", "lora"], "experiments[1].methods: 'lora' is not one of"),
    ("experiments.0.targets", ["db", "sentinel"], "experiments[1].targets: 'sentinel' is not a dataset"),
    ("experiments.0.source", "nowhere", "experiments[1].source: 'nowhere' is not a dataset"),
    ("experiments.0.iters", 0, "experiments[1].iters: 0 must be an integer >= 1"),
    ("experiments.0.iters", None, "experiments[1].iters: required"),
    ("experiments.0.lr", -1, "experiments[1].lr: -1 must be a number > 0"),
    ("experiments.0.base", "missing.safetensors", "experiments[1].base:"),
    ("baseline", None, "baseline: required"),
    ("baseline", {"base": "tiny", "method": "earth-adapter", "x": 1}, "baseline: required"),
    ("datasets.0.images", "nowhere/", ["datasets 'db': ", "nowhere: no such file or folder"]),
    ("datasets.1.classes", {"land": 0, "water": 254}, "label value 255 is not in"),
    ("datasets.1.stretch", "tile", "dataset 'ql': stretch 'tile' is not one of"),
    ("datasets.1.max_images", 0, "max_images: 0 must be an integer >= 1"),
    ("evaluate", {"tile": 8}, "evaluate.tile: 8 must be an integer >= 16"),
])
def test_bad_suite_files_exit_2_with_one_line(tmp_path, tiny_base, capsys, key, value, message):
    doc = _bad(_suite(tmp_path, tiny_base), key, value)
    suite = _write(tmp_path, doc)
    out = tmp_path / "results"
    code = main(["benchmark", suite, "-o", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    messages = message if isinstance(message, list) else [message]
    assert err[0].startswith("ces: error: ") and "suite.yaml" in err[0], err
    assert all(m in err[0] for m in messages), err
    assert not out.exists()


def test_as_is_row_needs_the_suites_classes(tmp_path, capsys):
    other = tmp_path / "other.safetensors"
    checkpoints.save(tiny_model(num_classes=3), other)      # classes class_0..class_2
    doc = _suite(tmp_path, other)
    code = main(["benchmark", _write(tmp_path, doc), "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "experiments" not in err[0]
    assert "baseline.base" in err[0] and "the suite (land, water)" in err[0], err
    assert not (tmp_path / "r").exists()


def test_unreadable_raster_is_named_before_anything_is_written(tmp_path, tiny_base, capsys):
    doc = _suite(tmp_path, tiny_base)
    broken = tmp_path / "db" / "img" / "s1.tif"
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    with rasterio.Env():
        code = main(["benchmark", _write(tmp_path, doc), "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "s1.tif" in err[0], err
    assert not (tmp_path / "r").exists()


def test_finetune_interrupted_mid_training_resumes(tmp_path, tiny_base):
    """Ctrl-C at the first of two steps (raised from the progress callback, inside the
    training loop): the loop saves iteration 1, the rerun continues from it, and the time
    of the interrupted attempt counts in the record's wall time."""
    from crossearth_sar.train.benchmark import load_suite, run_suite

    doc = _suite(tmp_path, tiny_base)
    doc["experiments"][0].update(methods=["decoder-only"], targets=["ql"], iters=2)
    suite = load_suite(_write(tmp_path, doc))
    out = tmp_path / "results"

    def interrupt(stage, done, total):
        if stage == "train" and done == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_suite(suite, out, device="cpu", progress=interrupt)
    (ft,) = suite.finetunes
    assert not (out / "finetune" / f"{ft.id}.json").exists()
    first = json.loads((out / "finetune" / f"{ft.id}.wall.json").read_text())["elapsed_s"]
    steps = []
    result = run_suite(suite, out, device="cpu",
                       progress=lambda s, d, t: steps.append(d) if s == "train" else None)
    record = json.loads((out / "finetune" / f"{ft.id}.json").read_text())
    assert record["resumed_from"] == 1 and record["iterations"] == 2 and steps == [1, 2]
    assert record["wall_s"] >= first and not (out / "finetune" / f"{ft.id}.wall.json").exists()
    # the baseline's evaluation, finished before the interruption, is reused
    assert result["computed"] == {"finetune": 1, "evaluate": 1}
    assert result["reused"] == {"finetune": 0, "evaluate": 1}
