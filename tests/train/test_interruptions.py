"""Checkpoints as one unit: an interruption at any instant leaves a checkpoint from which
``resume`` reaches the parameters of an uninterrupted run bit for bit.

Instants tried (36 in all, on a 4-iteration run with a save every 2):

* SIGINT (a real signal to this process) at 5 points of each of the 4 steps: while the
  batch is read, in the forward pass, in the backward pass, inside the optimizer update, and
  after the step (the progress callback): 20;
* SIGINT at each of the 4 phases of a checkpoint write: 4;
* a kill (the folder frozen as a SIGKILL would leave it) at each of the 4 phases of both
  scheduled writes, and in the middle of writing the state file or the model file of both
  (the temporary file cut short): 12.

One end-to-end run of ``ces finetune`` is interrupted by SIGINT before its first scheduled
save and continued with ``--resume`` to the parameter digest of an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from crossearth_sar.core.errors import InputError
from crossearth_sar.core.models import checkpoints
from crossearth_sar.core.models.model import build_from_config
from crossearth_sar.train import checkpoint_commit, datasets, labelled_scenes, training_loop

from _helpers_micro import micro_config
from _helpers_train import write_label, write_scene

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py: one intra-op thread

CFG = training_loop.TrainConfig(iters=4, batch=1, lr=1e-3, warmup=1, save_every=2, seed=3)
CROP = 56
PHASES = ("state-written", "model-written", "committed", "pruned")



@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    for i in range(2):
        truth = write_scene(folder / f"s{i}_img.tif", size=64, seed=i,
                            water_box=(4 + 8 * i, 50, 6, 40))
        write_label(folder / f"s{i}_lab.tif", truth)
    scenes, classes = labelled_scenes.load_labelled_scenes([folder / "s*_img.tif"], [folder / "s*_lab.tif"])
    return datasets.CropDataset(scenes, CROP, augment=None, seed=CFG.seed), classes


class Probe(torch.utils.data.Dataset):
    """The training set, calling ``on_item(n)`` before its n-th item (1-based)."""

    def __init__(self, inner, on_item=None):
        self.inner, self.on_item, self.n, self.size = inner, on_item, 0, inner.size

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        self.n += 1
        if self.on_item:
            self.on_item(self.n)
        return self.inner[i]


def _sigint() -> None:
    os.kill(os.getpid(), signal.SIGINT)


def _train(dataset, work: Path, resume=False, progress=None, on_item=None, on_model=None):
    ds, classes = dataset
    torch.manual_seed(0)
    model = build_from_config(micro_config(classes.to_config()))
    if on_model:
        on_model(model)
    training_loop.train(model, Probe(ds, on_item), work, CFG, resume=resume, progress=progress,
                 device=torch.device("cpu"))
    return model


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory):
    model = _train(dataset, tmp_path_factory.mktemp("reference") / "work")
    torch.manual_seed(0)
    first = build_from_config(micro_config(dataset[1].to_config())).state_dict()
    params = {k: v.clone() for k, v in model.state_dict().items()}
    assert sum(not torch.equal(first[k], params[k]) for k in params) > 10  # training moved them
    return params


def _assert_resumes_to(reference, dataset, work: Path, iteration: int) -> None:
    """``work`` holds a complete checkpoint of ``iteration``; resume reaches the reference and
    leaves only the final checkpoint (superseded and stray files cleaned)."""
    assert training_loop.checkpoint_iteration(work / "last.safetensors") == iteration
    assert (work / f"last.state-{iteration:08d}.pt").is_file()
    resumed = _train(dataset, work, resume=True)
    for k, v in resumed.state_dict().items():
        assert torch.equal(v, reference[k]), k
    assert sorted(p.name for p in work.iterdir()) == ["last.safetensors", "last.state-00000004.pt"]


class _StepHooks:
    """SIGINT at the k-th forward pass, backward pass or optimizer update."""

    def __init__(self, stage: str, k: int):
        self.stage, self.k, self.n, self.handles = stage, k, 0, []

    def _count(self, *args, **kwargs):
        self.n += 1
        if self.n == self.k:
            _sigint()

    def attach(self, model) -> None:
        if self.stage == "forward":
            self.handles.append(model.head.register_forward_pre_hook(self._count))
        elif self.stage == "backward":  # the first layer's gradient: the end of backward
            self.handles.append(model.backbone.patch_embed.proj.weight.register_hook(self._count))
        elif self.stage == "optimizer":
            self.handles.append(register_optimizer_step_pre_hook(self._count))

    def detach(self) -> None:
        for h in self.handles:
            h.remove()


@pytest.mark.parametrize("k", [1, 2, 3, 4])
@pytest.mark.parametrize("stage", ["data", "forward", "backward", "optimizer", "after-step"])
def test_sigint_during_a_step_resumes_bit_identically(stage, k, reference, dataset, tmp_path):
    work = tmp_path / "work"
    hooks = _StepHooks(stage, k)
    on_item = (lambda n: n == k and _sigint()) if stage == "data" else None
    progress = (lambda s, done, total: done == k and _sigint()) if stage == "after-step" else None
    try:
        with pytest.raises(KeyboardInterrupt):
            _train(dataset, work, on_item=on_item, progress=progress, on_model=hooks.attach)
    finally:
        hooks.detach()
    # a step cut before its update is abandoned; the update itself is finished first
    done = k if stage in ("optimizer", "after-step") else k - 1
    _assert_resumes_to(reference, dataset, work, done)


@pytest.mark.parametrize("phase", PHASES)
def test_sigint_during_a_checkpoint_write_finishes_it(phase, reference, dataset, tmp_path,
                                                      monkeypatch):
    work = tmp_path / "work"
    seen = []

    def hook(name, folder):
        if name == phase and not seen:
            seen.append(name)
            _sigint()
    monkeypatch.setattr(checkpoint_commit, "CHECKPOINT_HOOK", hook)
    with pytest.raises(KeyboardInterrupt):
        _train(dataset, work)
    monkeypatch.setattr(checkpoint_commit, "CHECKPOINT_HOOK", None)
    assert seen == [phase]
    _assert_resumes_to(reference, dataset, work, 2)


@pytest.fixture(scope="module")
def kill_snapshots(dataset, tmp_path_factory):
    """The work folder as a kill would leave it at each phase of both scheduled writes."""
    root = tmp_path_factory.mktemp("kills")
    snaps: dict[tuple[int, str], Path] = {}

    def hook(name, folder):
        it = len([k for k in snaps if k[1] == name]) * 2 + 2
        dst = root / f"{it}-{name}"
        shutil.copytree(folder, dst)
        snaps[(it, name)] = dst
    checkpoint_commit.CHECKPOINT_HOOK = hook
    try:
        _train(dataset, root / "run")
    finally:
        checkpoint_commit.CHECKPOINT_HOOK = None
    assert sorted(snaps) == sorted((it, p) for it in (2, 4) for p in PHASES)
    for it in (2, 4):   # killed while writing the state file, or the model file
        state = snaps[(it, "state-written")]
        cut = root / f"{it}-in-state"
        shutil.copytree(state, cut)
        new = cut / f"last.state-{it:08d}.pt"
        _cut_short(new, cut / f".{new.name}.tmp-12345")
        snaps[(it, "in-state")] = cut
        cut = root / f"{it}-in-model"
        shutil.copytree(snaps[(it, "model-written")], cut)
        (tmp,) = [p for p in cut.iterdir() if p.name.startswith(".last.tmp-")]
        _cut_short(tmp, tmp)
        snaps[(it, "in-model")] = cut
    return snaps


def _cut_short(src: Path, dst: Path) -> None:
    blob = src.read_bytes()
    src.unlink()
    dst.write_bytes(blob[: len(blob) // 2])


KILLS = [(it, p) for it in (2, 4) for p in ("in-state", "state-written", "in-model",
                                            "model-written", "committed", "pruned")]


@pytest.mark.parametrize("it,phase", KILLS)
def test_kill_at_any_instant_leaves_the_previous_or_the_new_checkpoint(it, phase, kill_snapshots,
                                                                       reference, dataset,
                                                                       tmp_path):
    work = tmp_path / "work"
    shutil.copytree(kill_snapshots[(it, phase)], work)
    committed = phase in ("committed", "pruned")
    expect = it if committed else it - 2
    if expect == 0:   # killed before the first checkpoint was committed: nothing to resume
        with pytest.raises(InputError, match="no checkpoint to resume from"):
            _train(dataset, work, resume=True)
        return
    _assert_resumes_to(reference, dataset, work, expect)


# -- end to end: Ctrl-C before the first scheduled save, then --resume ----------------------
def _ces(*args, **kw):
    return subprocess.Popen([str(Path(sys.executable).parent / "ces"), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, **kw)


def test_ctrl_c_before_the_first_save_then_resume(tmp_path):
    from crossearth_sar.train.finetune import default_work_dir

    from _helpers_train import write_png

    img, lab = tmp_path / "img", tmp_path / "lab"
    img.mkdir(), lab.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        v = np.where(np.arange(64)[None, :] < 20 + 8 * i, 30, 180) + rng.integers(0, 20, (64, 64))
        write_png(img / f"S1_after_{i:04d}.png", v)
        write_png(lab / f"S1_mask_{i:04d}.png", np.where(v < 100, 255, 0))
    base = tmp_path / "base.safetensors"
    torch.manual_seed(0)
    checkpoints.save(build_from_config(micro_config()), base)
    common = ["finetune", "--model", str(base), "--images", str(img), "--labels", str(lab),
              "--tile", str(CROP), "--iters", "8", "--batch", "1", "--progress", "json"]

    def digest(out: str) -> str:
        done = [json.loads(line) for line in out.splitlines() if '"done"' in line]
        return done[-1]["param_digests"][0]

    full = _ces(*common, "-o", str(tmp_path / "full.safetensors"))
    full_out, err = full.communicate(timeout=300)
    assert full.returncode == 0, err

    cut_out = tmp_path / "cut.safetensors"
    cut = _ces(*common, "-o", str(cut_out))
    for line in cut.stdout:   # interrupt once 3 of 8 steps are done (no save is scheduled)
        event = json.loads(line)
        if event.get("stage") == "train" and event.get("done", 0) >= 3:
            cut.send_signal(signal.SIGINT)
            break
    out, err = cut.communicate(timeout=120)
    assert cut.returncode == 130, err
    assert "continue with the same command and --resume" in err, err
    assert not cut_out.exists()
    work = default_work_dir(cut_out)
    assert training_loop.checkpoint_iteration(work / "last.safetensors") >= 3

    again = _ces(*common, "-o", str(cut_out), "--resume")
    out2, err2 = again.communicate(timeout=300)
    assert again.returncode == 0, err2
    assert digest(out2) == digest(full_out)
