"""The full-resolution mask refiner (core/models/mask_refiner.py) in a real model: outputs at
the input's own size, a neutral start, edge-weighted loss, training that sharpens an edge,
the checkpoint round trip, and adding one to a trained model for fine-tuning."""
from __future__ import annotations

import numpy as np
import torch

from crossearth_sar.core.models import checkpoints
from crossearth_sar.core.models.mask2former.head import semantic_probabilities
from crossearth_sar.core.models.mask_refiner import MaskRefiner, coarse_log_probabilities, edge_weights
from crossearth_sar.core.models.model import build_from_config
from crossearth_sar.train.classes import from_model_classes
from crossearth_sar.train.finetune import prepare_model

from _helpers_micro import micro_config


def _refined_model(seed=0):
    torch.manual_seed(seed)
    cfg = micro_config()
    cfg["refine"] = {"width": 8, "dilations": [1, 2], "loss_weight": 2.0, "edge_weight": 4.0}
    return build_from_config(cfg)


def test_refined_output_has_the_input_size_and_starts_neutral():
    model = _refined_model().eval()
    x, d = torch.rand(2, 3, 60, 44), torch.zeros(2, 3)
    with torch.no_grad():
        out = model(x, d)
        proba = model.predict_proba(x, d)
    assert tuple(out["refined_logits"].shape) == (2, 2, 60, 44)
    coarse = semantic_probabilities(out["pred_logits"], out["pred_masks"])
    neutral = coarse_log_probabilities(coarse, (60, 44)).softmax(1)
    assert torch.allclose(proba, neutral, atol=1e-5)      # the last layer starts at zero
    assert torch.allclose(proba.sum(1), torch.ones(2, 60, 44), atol=1e-5)


def test_edge_weights_emphasise_label_edges_and_drop_ignored_pixels():
    t = torch.zeros(1, 12, 12, dtype=torch.long)
    t[:, :, 6:] = 1
    t[:, 0, 0] = 255
    w = edge_weights(t, 255, 4.0)[0]
    assert w[0, 0] == 0 and w[5, 4] == 5.0 and w[5, 7] == 5.0 and w[5, 1] == 1.0 and w[5, 10] == 1.0


def test_training_the_refiner_sharpens_a_blurred_edge():
    torch.manual_seed(0)
    refiner = MaskRefiner(2, 3, width=8, dilations=(1, 2))
    x = torch.zeros(4, 3, 32, 32)
    x[..., 13:] = 1.0                               # a bright field right of column 13
    target = (x[:, 0] > 0.5).long()
    coarse = torch.linspace(-3, 3, 32).expand(4, 32, 32)   # a smooth score centred at column 16
    logp = torch.stack([torch.nn.functional.logsigmoid(-coarse), torch.nn.functional.logsigmoid(coarse)], 1)
    before = (refiner(logp, x).argmax(1) == target).float().mean()
    opt = torch.optim.Adam(refiner.parameters(), lr=0.02)
    for _ in range(60):
        loss = torch.nn.functional.cross_entropy(refiner(logp, x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = (refiner(logp, x).argmax(1) == target).float().mean()
    assert before < 0.95 and after == 1.0


def test_loss_includes_the_refinement_term_and_backpropagates():
    model = _refined_model().train()
    x, d = torch.rand(2, 3, 32, 32), torch.zeros(2, 3)
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    target[:, :, 16:] = 1
    loss, info = model.loss(model(x, d), target)
    loss.backward()
    assert info["loss_refine"] > 0
    assert model.refiner.out.weight.grad is not None and model.refiner.out.weight.grad.abs().sum() > 0


def test_checkpoint_round_trip_and_adding_a_refiner_to_a_trained_model(tmp_path):
    model = _refined_model().eval()
    path = tmp_path / "r.safetensors"
    checkpoints.save(model, path)
    loaded = checkpoints.load(path).eval()
    assert loaded.config["refine"]["width"] == 8
    x, d = torch.rand(1, 3, 28, 28), torch.zeros(1, 3)
    assert torch.allclose(loaded.predict_proba(x, d), model.predict_proba(x, d), atol=1e-6)

    torch.manual_seed(1)
    plain = build_from_config(micro_config())
    base = tmp_path / "plain.safetensors"
    checkpoints.save(plain, base)
    added, notes = prepare_model(base, from_model_classes(plain.config["classes"]), unfreeze=True,
                                 refine=True)
    assert added.refiner is not None and "refiner (new)" in notes["reinitialized"]
    for name, value in plain.state_dict().items():
        assert np.allclose(added.state_dict()[name].numpy(), value.numpy())
