"""benchmarks/gpu_suite.sh in its CPU smoke mode: every step runs (sizes shrunk) and writes
its figures under $OUT; the CUDA tests are collected and skip without CUDA."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("cuda_tests", "blend", "bf16", "ddp", "train", "segment")


def test_gpu_suite_smoke_on_the_cpu(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PY": sys.executable, "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}
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
    assert figures["blend"]["max_confidence_difference"] == 0.0  # CPU against CPU
    assert 0.9 <= figures["bf16"]["class_agreement"] <= 1.0
    assert figures["ddp"]["ok"] and figures["ddp"]["ranks_identical"]
    assert figures["train"]["ti_step_s"] > 0 and figures["train"]["s_step_s"] > 0
    seg = figures["segment"]["ti"]
    assert seg["windows"] > 0 and seg["windows_per_s"] > 0 and seg["wall_s"] > 0
