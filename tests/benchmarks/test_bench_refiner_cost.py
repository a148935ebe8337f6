"""benchmarks/bench_refiner_cost.py on a small model with a refiner: both settings run on the
synthetic dB scene, the cost line is printed, and the refiner's change of the
class map is counted (a refiner with weights changes pixels; one set aside changes none)."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import torch

from crossearth_sar.core.models import checkpoints
from crossearth_sar.core.models.model import build_from_config

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

import bench_refiner_cost  # noqa: E402

from _helpers_train import tiny_model  # noqa: E402


def _model_with_refiner(path: Path, strength: float) -> Path:
    cfg = tiny_model().config
    cfg["refine"] = {"width": 8, "dilations": [1, 2], "loss_weight": 2.0, "edge_weight": 4.0}
    net = build_from_config(cfg)
    with torch.no_grad():   # a refiner that pushes every pixel towards class 1
        net.refiner.out.bias.copy_(torch.tensor([-strength, strength]))
    checkpoints.save(net, path)
    return path


def test_prints_the_cost_and_the_pixels_the_refiner_changed(tmp_path, capsys):
    model = _model_with_refiner(tmp_path / "refined.safetensors", 20.0)
    code = bench_refiner_cost.main(["--model", str(model), "--size", "256", "--repeat", "1",
                                    "--tile", "128", "--overlap", "32", "--batch", "2",
                                    "--no-demo"])
    out = capsys.readouterr().out
    assert code == 0, out
    for scene in ("synthetic_db_256.tif",):
        assert re.search(rf"^{scene} +with refiner: \d+ windows", out, re.M), out
        assert re.search(rf"^{scene} without refiner: \d+ windows", out, re.M), out
    cost, changed = map(float, re.search(r"^cost ([\d.]+) changed ([\d.]+)$", out, re.M).groups())
    assert 0.5 < cost < 5.0
    assert changed > 0.0    # a bias of 20 towards class 1 changes every class-0 pixel


def test_refuses_a_model_without_a_refiner(tmp_path, capsys):
    path = tmp_path / "plain.safetensors"
    checkpoints.save(tiny_model(), path)
    assert bench_refiner_cost.main(["--model", str(path)]) == 2
    assert "has no refiner" in capsys.readouterr().err
