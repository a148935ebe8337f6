"""``torchrun --nproc-per-node 2`` (gloo, CPU): both ranks end with identical parameters and
one loadable checkpoint."""
from __future__ import annotations

import json
import os
import subprocess

from crossearth_sar.core.inference import scene_ranks
from crossearth_sar.core.models import checkpoints
from crossearth_sar.train.finetune import parameter_digest

from _helpers_train import tiny_model, write_label, write_scene


def test_torchrun_two_ranks_identical_parameters(tmp_path):
    for i in range(4):
        truth = write_scene(tmp_path / f"s{i}_img.tif", size=40, seed=i, water_box=(4, 20 + i, 6, 30))
        write_label(tmp_path / f"s{i}_lab.tif", truth)
    base = tmp_path / "base.safetensors"
    checkpoints.save(tiny_model(), base)
    out = tmp_path / "ddp.safetensors"
    cmd = scene_ranks.torchrun_command() + [
        "--standalone", "--nnodes", "1", "--nproc-per-node", "2",
        "-m", "crossearth_sar.crossearth_cli.main", "finetune",
        "--model", str(base), "--images", str(tmp_path / "s*_img.tif"),
        "--labels", str(tmp_path / "s*_lab.tif"), "--tile", "32", "--batch", "1",
        "--iters", "2", "--warmup", "0", "--lr", "1e-3", "--device", "cpu",
        "--progress", "json", "-o", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    done = [e for e in events if e.get("event") == "done"]
    assert len(done) == 1, proc.stdout            # rank 0 alone reports
    d = done[0]
    assert d["world_size"] == 2 and d["iterations"] == 2
    digests = d["param_digests"]
    assert len(digests) == 2 and digests[0] == digests[1]
    model = checkpoints.load(out)
    assert parameter_digest(model) == digests[0]
    assert parameter_digest(model) != parameter_digest(checkpoints.load(base))  # it trained
    assert model.config["provenance"]["iterations"] == 2
    assert (tmp_path / "ddp.ckpt" / "last.safetensors").is_file()
    assert not list(tmp_path.glob(".*tmp*"))      # nothing partial left
