"""CrossEarthSAR (core/models/model.py): config round trip, shapes at any input size, probabilities,
loss with ignore pixels, the router gradient from the segmentation loss, and the overfit run on
two real OMBRIA tiles."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from crossearth_sar.core.models import model as model_mod
from crossearth_sar.core.scene import descriptors as descriptors_mod

SMALL = {"experts": 2, "num_queries": 10, "dec_ffn_dim": 64, "enc_ffn_dim": 64, "enc_layers": 1,
         "num_points": 2000}


@pytest.fixture(scope="module")
def small_model():
    torch.manual_seed(0)
    return model_mod.build("ti", num_classes=3, **SMALL)


def test_config_is_json_and_rebuilds_an_identical_model(small_model):
    config = json.loads(json.dumps(small_model.config))
    assert config["kind"] == "model" and config["variant"] == "ti"
    assert config["experts"] == 2 and config["top_k"] == 1
    assert config["feature_layers"] == [2, 5, 8, 11]
    assert config["head"]["num_queries"] == 10 and config["head"]["dec_layers"] == 9
    assert [c["value"] for c in config["classes"]] == [0, 1, 2]
    assert all(c["color"].startswith("#") and len(c["color"]) == 7 for c in config["classes"])
    assert set(config["input"]) == {"mean", "std", "bands", "contract"}
    assert set(config["descriptors"]) >= {"bins", "block", "scaling", "train_stats"}
    assert config["descriptors"]["train_stats"] is None
    rebuilt = model_mod.build_from_config(config)
    assert rebuilt.config == small_model.config
    mine = small_model.state_dict()
    theirs = rebuilt.state_dict()
    assert {k: v.shape for k, v in mine.items()} == {k: v.shape for k, v in theirs.items()}
    rebuilt.load_state_dict(mine)
    x, d = torch.rand(1, 3, 30, 44), torch.rand(1, 3)
    small_model.eval(), rebuilt.eval()
    assert torch.equal(small_model.predict_proba(x, d), rebuilt.predict_proba(x, d))


def test_any_input_size_gives_probabilities_at_that_size(small_model):
    small_model.eval()
    x = torch.rand(2, 3, 45, 61)
    d = torch.randn(2, 3)
    out = small_model(x, d)
    # 45 x 61 -> 42 x 56 (nearest multiples of 14) -> 3 x 4 patches -> stride-"4" maps 12 x 16
    assert out["pred_logits"].shape == (2, 10, 4)
    assert out["pred_masks"].shape == (2, 10, 12, 16)
    assert out["aux_outputs"] == []  # eval mode: the inference path (final prediction only)
    assert len(small_model.train()(x, d)["aux_outputs"]) == 9
    small_model.eval()
    assert out["l_bc"].dim() == 0 and out["l_bc"].item() > 0
    probs = small_model.predict_proba(x, d)
    assert probs.shape == (2, 3, 45, 61)
    assert (probs >= 0).all()
    assert torch.allclose(probs.sum(1), torch.ones(2, 45, 61), atol=1e-5)


def test_classes_are_validated_and_set_the_class_count():
    classes = [{"name": "land", "value": 0, "color": "#00AA00"},
               {"name": "water", "value": 1, "color": "#0000ff"}]
    config = model_mod.model_config("ti", classes=classes, num_queries=5)
    assert [c["name"] for c in config["classes"]] == ["land", "water"]
    assert config["classes"][0]["color"] == "#00aa00"
    with pytest.raises(ValueError, match="color"):
        model_mod.model_config("ti", classes=[{"name": "x", "value": 0, "color": "blue"}])
    with pytest.raises(ValueError, match="unknown model options"):
        model_mod.model_config("ti", queries=5)
    with pytest.raises(ValueError, match="unknown variant"):
        model_mod.model_config("xl")


def test_variant_registry_defaults():
    for variant in model_mod.VARIANTS:
        config = model_mod.model_config(variant)
        assert config["head"]["dec_layers"] == 9
        assert config["head"]["num_queries"] == 100
        assert config["experts"] == 6 and config["top_k"] == 1
    assert model_mod.model_config("ti")["head"]["hidden_dim"] == 128
    assert model_mod.model_config("ti")["head"]["pyramid"] == "deconv"
    assert model_mod.model_config("s")["head"]["hidden_dim"] == 256
    assert model_mod.model_config("s")["head"]["pyramid"] == "interpolate"
    assert model_mod.model_config("l")["feature_layers"] == [7, 11, 15, 23]


def test_compute_descriptors_follows_the_model_config(small_model):
    g = torch.Generator().manual_seed(3)
    phys = torch.rand(2, 40, 40, generator=g) * 4
    valid = torch.ones(2, 40, 40, dtype=torch.bool)
    valid[1, :10] = False
    got = small_model.compute_descriptors(phys, valid)
    cfg = small_model.config["descriptors"]
    raw = descriptors_mod.raw_descriptors(phys, valid, bins=cfg["bins"], block=cfg["block"])
    assert torch.allclose(got, descriptors_mod.scale_descriptors(raw, cfg["scaling"]))
    assert got.shape == (2, 3)


def test_loss_adds_balance_loss_and_handles_ignore(small_model):
    small_model.train()
    torch.manual_seed(1)
    x, d = torch.rand(2, 3, 28, 28), torch.randn(2, 3)
    target = torch.zeros(2, 28, 28, dtype=torch.long)
    target[:, :, 14:] = 2
    target[1] = 255  # the second image is unlabelled
    out = small_model(x, d)
    total, info = small_model.loss(out, target)
    assert set(info) >= {"loss_ce", "loss_mask", "loss_dice", "loss_aux", "loss_seg", "l_bc", "total"}
    assert all(isinstance(v, float) for v in info.values())
    assert info["total"] == pytest.approx(info["loss_seg"] + info["l_bc"], rel=1e-6)
    assert info["l_bc"] == pytest.approx(out["l_bc"].item())
    assert torch.isfinite(total)
    with pytest.raises(ValueError, match="label 7"):
        small_model.loss(out, torch.full((2, 28, 28), 7))


def test_router_weights_get_gradient_from_the_segmentation_loss():
    torch.manual_seed(2)
    model = model_mod.build("ti", balance_weight=0.0, **SMALL)  # L_BC = 0: only L_seg remains
    model.train()
    x, d = torch.rand(1, 3, 28, 28), torch.randn(1, 3)
    target = torch.zeros(1, 28, 28, dtype=torch.long)
    target[:, 10:20, 5:25] = 1
    out = model(x, d)
    assert out["l_bc"].item() == 0.0
    total, _ = model.loss(out, target)
    total.backward()
    for i, layer in enumerate(model.backbone.moe_layers()):
        grad = layer.router.weight.grad
        assert grad is not None and grad.abs().sum() > 0, f"router of block {i} got no gradient"


def test_parameter_counts_count_one_expert_per_token(small_model):
    counts = small_model.parameter_counts()
    assert counts["total"] == sum(p.numel() for p in small_model.parameters())
    per_layer = small_model.backbone.moe_layers()[0].expert_parameters()
    assert counts["total"] - counts["active"] == 12 * per_layer  # 12 blocks, 2 experts, top-1


# ---- overfit on two real OMBRIA tiles ----------------------------------------------------------
OVERFIT_TILES = ("0001", "0002")


def _read_ombria(root, tile: str):
    """(x [3, H, W] 0..1, phys [H, W] log1p of the pixel values, water [H, W] 0/1)."""
    import rasterio

    with rasterio.open(root / "AFTER" / f"S1_after_{tile}.png") as src:
        pixels = src.read(1).astype(np.float32)
    with rasterio.open(root / "MASK" / f"S1_mask_{tile}.png") as src:
        water = (src.read(1) == 255).astype(np.int64)
    x = np.repeat(pixels[None] / 255.0, 3, axis=0)
    return x, np.log1p(pixels), water


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_overfit_two_ombria_tiles(shared_data):
    root = shared_data / "ombria" / "train"
    if not (root / "AFTER").is_dir():
        pytest.skip(f"OMBRIA tiles not present under {root}")
    xs, phys, ys = zip(*(_read_ombria(root, t) for t in OVERFIT_TILES))
    x, y = torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))
    phys = torch.from_numpy(np.stack(phys))
    torch.manual_seed(0)
    # ti as built by default except 20 queries and 4096 points (2 classes; keeps the run short)
    model = model_mod.build("ti", num_classes=2, num_queries=20, num_points=4096)
    descriptors = model.compute_descriptors(phys, torch.ones_like(phys, dtype=torch.bool))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.05)
    model.train()
    for _ in range(60):
        total, _ = model.loss(model(x, descriptors), y)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
    model.eval()
    accuracy = (model.predict_proba(x, descriptors).argmax(1) == y).float().mean().item()
    print(f"pixel accuracy after 60 steps: {accuracy:.4f}")
    assert accuracy >= 0.95, f"pixel accuracy {accuracy:.4f} after 60 steps"
