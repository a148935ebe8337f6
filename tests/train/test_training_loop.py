"""The training loop: schedule, exact resume after an interruption, checkpointing."""
from __future__ import annotations

import pytest
import torch

from crossearth_sar.core.models import checkpoints
from crossearth_sar.train import datasets, labelled_scenes, training_loop

from _helpers_train import tiny_model, write_label, write_scene


def test_warmup_then_poly_and_cosine():
    for schedule in ("poly", "cosine"):
        cfg = training_loop.TrainConfig(iters=100, warmup=10, schedule=schedule, min_lr_ratio=0.01)
        f = [training_loop.lr_factor(s, cfg) for s in range(101)]
        assert f[0] < 0.01 and all(a < b for a, b in zip(f[:10], f[1:11]))  # warm-up rises
        assert f[10] == pytest.approx(1.0)
        assert all(a >= b for a, b in zip(f[10:], f[11:]))                  # then decays
        assert f[100] == pytest.approx(0.01)


@pytest.fixture()
def two_scenes(tmp_path):
    for i in range(2):
        truth = write_scene(tmp_path / f"s{i}_img.tif", size=48, seed=i,
                            water_box=(4 + 8 * i, 30, 6, 40))
        write_label(tmp_path / f"s{i}_lab.tif", truth)
    scenes, classes = labelled_scenes.load_labelled_scenes([tmp_path / "s*_img.tif"], [tmp_path / "s*_lab.tif"])
    return scenes, classes


def _run(scenes, classes, work, cfg, resume=False, interrupt_at=None):
    model = tiny_model(classes=classes.to_config())
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    ds = datasets.CropDataset(scenes, 32, augment=None, seed=cfg.seed)

    def progress(stage, done, total):
        if interrupt_at is not None and done == interrupt_at:
            raise KeyboardInterrupt
    result = training_loop.train(model, ds, work, cfg, resume=resume, progress=progress,
                          device=torch.device("cpu"))
    return model, result


def test_interrupt_then_resume_matches_uninterrupted(tmp_path, two_scenes):
    scenes, classes = two_scenes
    cfg = training_loop.TrainConfig(iters=4, batch=1, lr=1e-3, warmup=1, save_every=2, seed=3)
    full, res_full = _run(scenes, classes, tmp_path / "full", cfg)
    with pytest.raises(KeyboardInterrupt):
        _run(scenes, classes, tmp_path / "cut", cfg, interrupt_at=3)
    # the interruption saved the 3 completed iterations (the scheduled save was at 2)
    state = training_loop.load_checkpoint_state(tmp_path / "cut" / "last.safetensors")
    assert state["iteration"] == 3
    assert sorted(p.name for p in (tmp_path / "cut").iterdir()) == [
        "last.safetensors", "last.state-00000003.pt"]
    resumed, res = _run(scenes, classes, tmp_path / "cut", cfg, resume=True)
    assert len(res.losses) == 1 and res.iterations == 4       # continued from iteration 3
    assert res.losses == pytest.approx(res_full.losses[3:], rel=1e-6, abs=1e-7)
    a, b = full.state_dict(), resumed.state_dict()
    changed = 0
    for k in a:
        assert torch.equal(a[k], b[k]), k
    first = tiny_model(classes=classes.to_config()).state_dict()
    changed = sum(not torch.equal(first[k], a[k]) for k in a)
    assert changed > 0  # training did move parameters
    loaded = checkpoints.load(tmp_path / "cut" / "last.safetensors")
    assert all(torch.equal(loaded.state_dict()[k], b[k]) for k in b)


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    x, d = torch.rand(1, 3, 28, 28), torch.rand(1, 3)
    target = (torch.rand(1, 28, 28) > 0.5).long()
    model = tiny_model()
    model.criterion.num_points = model.criterion.matcher.num_points = None  # no sampling
    grads = []
    for ckpt in (False, True):
        if ckpt:
            training_loop.enable_gradient_checkpointing(model.backbone)
        model.zero_grad(set_to_none=True)
        loss, _ = model.loss(model(x, d), target)
        loss.backward()
        grads.append(model.backbone.blocks[0].attn.qkv.weight.grad.clone())
    assert grads[0].abs().sum() > 0
    torch.testing.assert_close(grads[0], grads[1])


def test_one_iteration_trains_and_logs_the_rate_it_used(tmp_path, two_scenes):
    """The shortest run (1 iteration) changes the weights, and its log shows the
    learning rate the step ran with, not the 0 the schedule reaches after it."""
    scenes, classes = two_scenes
    model = tiny_model(classes=classes.to_config())
    before = {k: v.clone() for k, v in model.head.state_dict().items()}
    ds = datasets.CropDataset(scenes, 32, augment=None, seed=0)
    lines = []
    cfg = training_loop.TrainConfig(iters=1, batch=2, lr=1e-3, save_every=1000, seed=0)
    training_loop.train(model, ds, tmp_path / "w", cfg, log=lines.append, device=torch.device("cpu"))
    changed = sum(not torch.equal(before[k], v) for k, v in model.head.state_dict().items())
    assert changed > 0
    line = next(x for x in lines if x.startswith("iter 1/1"))
    assert "lr 0.001 " in line, line


def test_time_estimate_after_the_first_iterations():
    ends = [10.0, 14.0, 18.0, 22.0]                       # 4 s per step after the first
    text = training_loop.time_estimate(ends, it=4, iters=454)
    assert text.startswith("measured 4.0 s per iteration on iterations 2-4")
    assert "the remaining 450 take about 30 min" in text
    assert training_loop.time_estimate(ends[:3], it=3, iters=454) is None
    assert training_loop.time_estimate(ends, it=4, iters=4) is None
