"""ces evaluate's boundary F-score, per-image figures and --multilook, on the demo chip with
the default model (real GDAL reads, a real model pass)."""
from __future__ import annotations

import json
from pathlib import Path

from crossearth_sar.crossearth_cli.main import main

REPO = Path(__file__).resolve().parents[2]
CHIP = REPO / "examples" / "Spain_7370579_S1Hand.tif"
LABEL = REPO / "examples" / "Spain_7370579_LabelHand.tif"
CLASSES = REPO / "scripts" / "default_model" / "s1f_classes.yaml"


def _evaluate(tmp_path, name, *extra):
    out = tmp_path / f"{name}.json"
    code = main(["evaluate", "--images", str(CHIP), "--labels", str(LABEL), "--classes", str(CLASSES),
                 "--json", str(out), "--progress", "none", *extra])
    return code, (json.loads(out.read_text()) if out.exists() else None)


def test_boundary_f_per_image_and_multilook(tmp_path, capsys):
    code, native = _evaluate(tmp_path, "native")
    assert code == 0
    out = capsys.readouterr().out
    assert "boundary F (2 px)" in out
    b = native["boundary"]
    assert b["tolerance_px"] == 2.0 and 0.2 < b["f_score"] < 1.0 and native["multilook"] == 1
    [image] = native["per_image"]
    assert image["image"] == CHIP.name and image["miou"] == native["miou"]
    assert sum(map(sum, image["confusion_matrix"])) == native["pixels"]

    code, loose = _evaluate(tmp_path, "loose", "--boundary-tolerance", "5")
    assert code == 0 and loose["boundary"]["f_score"] > b["f_score"]
    assert loose["miou"] == native["miou"]

    code, coarse = _evaluate(tmp_path, "coarse", "--multilook", "2")
    assert code == 0 and coarse["multilook"] == 2
    # scored on the labels' own 10 m grid: the same pixels, other predictions
    assert coarse["pixels"] == native["pixels"] and coarse["miou"] != native["miou"]
    assert 0.4 < coarse["miou"] < 0.9


def test_multilook_refusals_are_one_line(tmp_path, capsys):
    code, _ = _evaluate(tmp_path, "x", "--multilook", "2", "--before", str(CHIP))
    err = capsys.readouterr().err
    assert code == 2 and "--multilook" in err and len(err.strip().splitlines()) == 1
    code, _ = _evaluate(tmp_path, "y", "--multilook", "0")
    err = capsys.readouterr().err
    assert code == 2 and "--multilook" in err and "Traceback" not in err
