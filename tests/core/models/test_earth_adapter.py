"""Earth-Adapter : the frequency split, any token grid, and PEFT training
that leaves the frozen backbone bit-identical while the adapters learn."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from crossearth_sar.core.models import checkpoints
from crossearth_sar.core.models.adapter import EarthAdapterLayer, frequency_split
from crossearth_sar.core.models.vit import build_backbone
from crossearth_sar.crossearth_cli import model_description
from crossearth_sar.crossearth_cli.main import main

from _helpers_train import tiny_model, write_png


@pytest.mark.parametrize("grid", [(6, 6), (5, 9), (1, 4)])
def test_low_and_high_parts_sum_to_the_tokens(grid):
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(2, grid[0] * grid[1], 8, generator=g)
    low, high = frequency_split(tokens, grid, 0.3)
    torch.testing.assert_close(low + high, tokens, atol=1e-6, rtol=0)
    # a constant field is all low frequency: the zero frequency is inside the mask
    const = torch.full((1, grid[0] * grid[1], 3), 2.5)
    lo, hi = frequency_split(const, grid, 0.3)
    torch.testing.assert_close(lo, const, atol=1e-5, rtol=0)
    assert hi.abs().max() < 1e-5


def test_high_part_holds_the_fine_pattern():
    h = w = 10
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    checker = ((yy + xx) % 2).float().reshape(1, h * w, 1) * 2 - 1     # highest frequency
    low, high = frequency_split(checker, (h, w), 0.3)
    assert low.abs().max() < 1e-5 and torch.allclose(high, checker, atol=1e-5)


def test_any_grid_with_registers_and_a_new_adapter_changes_nothing():
    torch.manual_seed(0)
    plain = build_backbone("ti", experts=2, num_register_tokens=4)
    cfg = dict(plain.config, adapter={"kind": "earth-adapter", "rank": 8, "cutoff": 0.3})
    from crossearth_sar.core.models.vit import build_backbone_from_config

    adapted = build_backbone_from_config(cfg)
    missing, unexpected = adapted.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("adapter.") for k in missing)
    x = torch.rand(1, 3, 5 * 14, 9 * 14)                  # a 5 x 9 token grid
    d = torch.zeros(1, 3)
    plain.eval(), adapted.eval()
    a = plain.forward_features(x, d)["x_norm_patchtokens"]
    b = adapted.forward_features(x, d)["x_norm_patchtokens"]
    assert b.shape == (1, 45, 192)
    torch.testing.assert_close(a, b)                       # up-projections start at zero
    layer = EarthAdapterLayer(16, rank=4)
    assert float(layer.scale) == pytest.approx(0.1)


def _pngs(folder, n=2):
    img, lab = folder / "img", folder / "lab"
    img.mkdir(), lab.mkdir()
    for i in range(n):
        v = np.full((28, 28), 180, np.uint8)
        v[:, : 8 + 4 * i] = 30
        write_png(img / f"S1_after_{i:04d}.png", v)
        write_png(lab / f"S1_mask_{i:04d}.png", np.where(v < 100, 255, 0))
    return img, lab


def test_peft_training_freezes_the_backbone_and_trains_the_adapters(tmp_path, capsys):
    base = tmp_path / "base.safetensors"
    checkpoints.save(tiny_model(), base)
    img, lab = _pngs(tmp_path)
    out = tmp_path / "peft.safetensors"
    code = main(["finetune", "--model", str(base), "--images", str(img), "--labels", str(lab),
                 "--tile", "28", "--batch", "2", "--iters", "3", "--lr", "1e-2", "--peft",
                 "earth-adapter", "--adapter-rank", "8", "--progress", "none", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    before = checkpoints.load(base).state_dict()
    after = checkpoints.load(out).state_dict()
    frozen = [k for k in before if k.startswith("backbone.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    adapter = [k for k in after if k.startswith("backbone.adapter.")]
    assert adapter and not set(adapter) & set(before)
    # a new adapter starts with zero up-projections and scales of 0.1: training moved them
    assert any(after[k].abs().sum() > 0 for k in adapter if ".up." in k)
    assert any(float(after[k]) != pytest.approx(0.1) for k in adapter if k.endswith(".scale"))
    described = model_description.describe(out)
    assert described["adapter"] == {"kind": "earth-adapter", "rank": 8, "cutoff": 0.3}
    assert described["adapter_params"] == sum(after[k].numel() for k in adapter)

    # the adapters are used where the model is used: evaluate runs through them
    js = tmp_path / "e.json"
    assert main(["evaluate", "--model", str(out), "--images", str(img), "--labels", str(lab),
                 "--tile", "28", "--json", str(js), "--progress", "none"]) == 0
    assert json.loads(js.read_text())["pixels"] == 2 * 28 * 28


def test_peft_with_unfreeze_is_refused(tmp_path, capsys):
    base = tmp_path / "base.safetensors"
    checkpoints.save(tiny_model(), base)
    img, lab = _pngs(tmp_path)
    code = main(["finetune", "--model", str(base), "--images", str(img), "--labels", str(lab),
                 "--peft", "earth-adapter", "--unfreeze", "-o", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--unfreeze" in err[0]
