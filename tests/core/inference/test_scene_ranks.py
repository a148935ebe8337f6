"""Many scenes across processes: inputs (files, folders, lists), rank r of N takes every N-th
scene, finished outputs skipped, per-rank logs, rank 0's summary; 2 real CPU processes
under torchrun, then a rerun under a Slurm-style environment after one output was deleted."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crossearth_sar.core.errors import InputError
from crossearth_sar.core.inference import scene_ranks
from crossearth_sar.core.models import checkpoints

from _helpers_segment import tiny_model, write_db_scene

CLASSES = [{"name": "land", "value": 0, "color": "#a0a060"},
           {"name": "water", "value": 1, "color": "#1f4fff"}]


def test_inputs_from_files_folders_and_lists(tmp_path):
    folder = tmp_path / "scenes"
    folder.mkdir()
    for name in ("b.tif", "a.tif", "notes.md"):
        (folder / name).write_bytes(b"")
    listed = tmp_path / "list.txt"
    listed.write_text("# my scenes\nscenes/b.tif\n\n/abs/c.tif\n")
    got = scene_ranks.expand_inputs([tmp_path / "x.tif", folder, listed])
    assert got == [tmp_path / "x.tif", folder / "a.tif", folder / "b.tif", folder / "b.tif",
                   Path("/abs/c.tif")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no raster"):
        scene_ranks.expand_inputs([tmp_path / "empty"])
    (tmp_path / "none.txt").write_text("# nothing\n")
    with pytest.raises(InputError, match="names no scene"):
        scene_ranks.expand_inputs([tmp_path / "none.txt"])


def test_ranks_from_torchrun_and_slurm_and_every_nth_scene():
    assert scene_ranks.current_rank({}) == scene_ranks.Rank(0, 1, 0, "single")
    torchrun = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "SLURM_PROCID": "0",
                "SLURM_NTASKS": "9"}
    assert scene_ranks.current_rank(torchrun) == scene_ranks.Rank(3, 4, 1, "torchrun")
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"}
    assert scene_ranks.current_rank(slurm) == scene_ranks.Rank(5, 8, 1, "slurm")
    with pytest.raises(InputError, match="not a valid rank"):
        scene_ranks.current_rank({"RANK": "2", "WORLD_SIZE": "2"})
    items = list("abcdefg")
    shares = [scene_ranks.share(items, r, 3) for r in range(3)]
    assert shares == [["a", "d", "g"], ["b", "e"], ["c", "f"]]
    assert sorted(sum(shares, [])) == items
    assert scene_ranks.rank_device("cpu", scene_ranks.Rank(1, 2, 1)) == "cpu"


def _segment_args(listing: Path, out: Path, model: Path) -> list[str]:
    return ["-m", "crossearth_sar.crossearth_cli.main", "segment", str(listing), "-o", str(out),
            "--model", str(model), "--tile", "64", "--overlap", "16", "--raster",
            "--device", "cpu", "--progress", "none"]


def test_two_processes_share_four_scenes_and_a_rerun_redoes_only_the_deleted(tmp_path):
    names = [f"s{i}" for i in range(4)]
    for i, name in enumerate(names):
        write_db_scene(tmp_path / f"{name}.tif", 48 + 4 * i, 40, seed=i)
    listing = tmp_path / "scenes.txt"
    listing.write_text("".join(f"{n}.tif\n" for n in names))
    model = tmp_path / "tiny.safetensors"
    checkpoints.save(tiny_model(CLASSES), model)
    out = tmp_path / "results"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS"):
        env.pop(k, None)

    # 1. torchrun, 2 processes: rank 0 takes s0, s2; rank 1 takes s1, s3
    cmd = scene_ranks.torchrun_command() + ["--standalone", "--nnodes", "1", "--nproc-per-node", "2"]
    proc = subprocess.run(cmd + _segment_args(listing, out, model), capture_output=True,
                          text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in names:
        assert (out / f"{name}.gpkg").is_file() and (out / f"{name}_classes.tif").is_file()
    logs = {r: (out / f"ces-segment.rank{r}.log").read_text() for r in (0, 1)}
    for r, mine in ((0, ("s0", "s2")), (1, ("s1", "s3"))):
        done = [n for n in names if f"done {tmp_path / n}.tif" in logs[r]]
        assert tuple(done) == mine, logs[r]
    lines = proc.stdout.splitlines()
    rows = [line.split() for line in lines if line.startswith("s") and ".tif " in line]
    assert sorted((r[0], r[1], r[2]) for r in rows) == [
        ("s0.tif", "0", "done"), ("s1.tif", "1", "done"), ("s2.tif", "0", "done"),
        ("s3.tif", "1", "done")]
    assert "4 scenes: 4 done, 0 skipped, 0 failed" in lines, proc.stdout
    assert not (out / scene_ranks.STATUS_FOLDER).exists()  # rank 0 cleaned the statuses up

    # 2. one output deleted, rerun as Slurm's srun would start it: only s3 is segmented
    mtimes = {n: (out / f"{n}.gpkg").stat().st_mtime_ns for n in names}
    (out / "s3_classes.tif").unlink()
    procs = [subprocess.Popen([sys.executable] + _segment_args(listing, out, model),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**env, "SLURM_PROCID": str(r), "SLURM_NTASKS": "2",
                                   "SLURM_LOCALID": str(r), "SLURM_JOB_ID": "42"},
                              cwd=tmp_path) for r in (0, 1)]
    results = [(p.wait(timeout=600), p.stdout.read(), p.stderr.read()) for p in procs]
    assert [rc for rc, _, _ in results] == [0, 0], results[1][2][-2000:] + results[0][2][-2000:]
    assert (out / "s3_classes.tif").is_file()
    assert (out / "s3.gpkg").stat().st_mtime_ns != mtimes["s3"]
    for n in names[:3]:
        assert (out / f"{n}.gpkg").stat().st_mtime_ns == mtimes[n]  # untouched
    rank1 = (out / "ces-segment.rank1.log").read_text().split("rank 1 of 2 (slurm")[-1]
    assert f"skipped {tmp_path / 's1'}.tif" in rank1 and f"done {tmp_path / 's3'}.tif" in rank1
    summary = results[0][1]
    assert "4 scenes: 1 done, 3 skipped, 0 failed" in summary, summary
    assert "rank 1" not in results[1][1] and "scenes:" not in results[1][1]  # rank 0 reports
