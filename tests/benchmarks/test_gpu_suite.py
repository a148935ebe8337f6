"""benchmarks/gpu_suite.sh in its CPU smoke mode: every step runs (sizes shrunk) and writes
its figures under $OUT; the CUDA tests are collected and skip without CUDA.

On the CPU the "blend" step compares two genuinely different computations of the blended
maps: the tiler's streamed blend (sliding band, batches, read-ahead thread), at the suite's
batch and at a batch wider than a row of windows, against an untiled whole-scene reference
(every window alone, summed in float64). They must agree to float32 rounding."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("cuda_tests", "blend", "bf16", "ddp", "train", "segment")
CPU_ENV = {"PY": sys.executable, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
BLEND_TOLERANCE = 1e-5   # float32 rounding of sums of a few windows' weighted probabilities


def check_blend_figures(blend: dict) -> None:
    """The smoke blend figures: the streamed tiler against the untiled reference."""
    assert blend["smoke"] is True and blend["device"] == "cpu"
    assert blend["scene"] == 300
    assert "untiled" in blend["compared"]
    # smoke sizes: tile 64, overlap 16 over 300 px -> starts 0, 48, 96, 144, 192 and 236
    assert blend["windows_per_row"] == 6
    assert sorted(blend["runs"]) == ["batch_2", "batch_7"]      # the suite's batch; one spanning two rows
    for run in blend["runs"].values():
        assert run["class_agreement"] == 1.0, blend
        assert 0.0 <= run["max_confidence_difference"] < BLEND_TOLERANCE, blend
        assert run["nodata_agree"] is True
    assert blend["class_agreement"] == 1.0 and blend["nodata_agree"] is True
    assert blend["max_confidence_difference"] == max(r["max_confidence_difference"] for r in blend["runs"].values())
    # the scene's slanted nodata border (bench_segment.write_synthetic_scene: x < 0.05 y + 40)
    # is nodata in both maps: the valid fraction is the rest
    xx = np.arange(300, dtype=np.float32)[None, :]
    yy = np.arange(300, dtype=np.float32)[:, None]
    valid = 1.0 - float((xx < yy * 0.05 + 40).mean())
    assert abs(blend["valid_fraction"] - valid) < 1e-6, (blend["valid_fraction"], valid)


def test_blend_smoke_compares_the_streamed_tiler_with_an_untiled_reference(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "blend", "--out", str(out),
                           "--smoke", "--work", str(tmp_path)],
                          capture_output=True, text=True, env={**os.environ, **CPU_ENV}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    blend = json.loads((out / "blend.json").read_text())
    check_blend_figures(blend)
    assert proc.stdout.startswith("blend: device cpu, ")
    assert list(tmp_path.iterdir()) == [out]                     # the scratch folder is removed


@pytest.mark.slow   # about a minute on 2 CPU cores: every step of the suite
def test_gpu_suite_smoke_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, **CPU_ENV, "OUT": str(out)}
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), "--smoke"],
                          capture_output=True, text=True, env=env, timeout=1800)
    summary = (out / "summary.txt").read_text()
    assert proc.returncode == 0, summary + proc.stderr[-2000:]
    for step in STEPS:
        assert f"{step} rc 0 " in summary, summary
        assert (out / f"{step}.log").is_file()
    assert "skipped" in (out / "cuda_tests.log").read_text()  # no CUDA here: they skip
    figures = {s: json.loads((out / f"{s}.json").read_text()) for s in STEPS[1:]}
    assert all(f["smoke"] and f["device"] == "cpu" for f in figures.values())
    check_blend_figures(figures["blend"])
    assert 0.9 <= figures["bf16"]["class_agreement"] <= 1.0
    assert figures["ddp"]["ok"] and figures["ddp"]["ranks_identical"]
    assert figures["train"]["ti_step_s"] > 0 and figures["train"]["s_step_s"] > 0
    seg = figures["segment"]["ti"]
    assert seg["windows"] > 0 and seg["windows_per_s"] > 0 and seg["wall_s"] > 0
