"""The Mask2Former inference path gives the plain (training) path's answer: the gathered
deformable sampling against grid_sample, the head's final prediction, and the class map of
the default model on the demo chip."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from crossearth_sar.core.models.mask2former.head import Mask2FormerHead, set_fast_inference
from crossearth_sar.core.models.mask2former.ms_deform_attn import deformable_sample, gathered_sample

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "examples" / "Spain_7370579_S1Hand.tif"


def _positions(locations: torch.Tensor, shapes) -> tuple[torch.Tensor, torch.Tensor]:
    """(px, py) [B, Nq, M, L, P] in pixel index coordinates (fresh tensors: the sampler
    overwrites them)."""
    size = torch.tensor([[w, h] for h, w in shapes], dtype=locations.dtype)
    pixels = locations * size[None, None, None, :, None, :] - 0.5
    return pixels[..., 0].contiguous(), pixels[..., 1].contiguous()


def test_gathered_sampling_equals_grid_sampling_inside_on_and_past_the_edges():
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 5), (6, 4), (1, 2)]
    nv = sum(h * w for h, w in shapes)
    value = torch.randn(2, nv, 4, 3, generator=g)  # B, Nv, heads, Dh
    # locations from well outside (-0.6) to well past (1.6) the maps, plus exact edges and
    # pixel centres
    loc = torch.rand(2, 7, 4, 3, 5, 2, generator=g) * 2.2 - 0.6
    loc[:, 0] = 0.0
    loc[:, 1] = 1.0
    loc[:, 2, ..., 0] = 0.5 / 5
    weights = torch.rand(2, 7, 4, 3, 5, generator=g)
    plain = deformable_sample(value, shapes, loc, weights)
    gathered = gathered_sample(value, shapes, *_positions(loc, shapes), weights)
    assert gathered.shape == plain.shape == (2, 7, 12)
    assert torch.allclose(gathered, plain, atol=1e-5)
    far = torch.full_like(loc, 5.0)  # every tap outside: zero, as grid_sample's zero padding
    assert gathered_sample(value, shapes, *_positions(far, shapes), weights).abs().max() == 0


def _head() -> Mask2FormerHead:
    torch.manual_seed(0)
    return Mask2FormerHead([24] * 4, num_classes=3, hidden_dim=32, mask_dim=32, num_queries=7,
                           enc_layers=2, enc_ffn_dim=64, dec_ffn_dim=64)


def test_head_inference_path_gives_the_plain_final_prediction_without_aux():
    head = _head().eval()
    feats = [torch.randn(2, 24, 4 * s, 4 * s) for s in (4, 2, 1)] + [torch.randn(2, 24, 2, 2)]
    with torch.no_grad():
        fast = head(feats)
        set_fast_inference(head, False)
        plain = head(feats)
    assert fast["aux_outputs"] == [] and len(plain["aux_outputs"]) == 9
    assert torch.allclose(fast["pred_logits"], plain["pred_logits"], atol=1e-5)
    assert torch.allclose(fast["pred_masks"], plain["pred_masks"], atol=1e-4)
    # training is the plain path whatever the switch says (deep supervision needs the aux)
    set_fast_inference(head, True)
    trained = head.train()(feats)
    assert len(trained["aux_outputs"]) == 9
    assert torch.allclose(trained["pred_masks"], plain["pred_masks"], atol=1e-6)


def test_default_model_class_map_agrees_between_paths_on_the_demo_chip():
    from crossearth_sar.core.models import checkpoints
    from crossearth_sar.core.models.model import trained_bands
    from crossearth_sar.core.scene import sar_io
    from crossearth_sar.crossearth_cli.segment_cmd import default_model_path

    path = default_model_path()
    if not path.is_file():
        pytest.skip(f"no default model at {path}")
    net = checkpoints.load(path, map_location="cpu")
    with sar_io.open_scene(DEMO, prefer=trained_bands(net.config)) as scene:
        from rasterio.windows import Window

        data = scene.read_window(Window(0, 0, scene.width, scene.height))
    x = torch.from_numpy(data.x)[None]
    desc = net.compute_descriptors(torch.from_numpy(data.phys)[None],
                                   torch.from_numpy(data.valid)[None])
    with torch.inference_mode():
        fast = net.predict_proba(x, desc)
        set_fast_inference(net, False)
        plain = net.predict_proba(x, desc)
    valid = torch.from_numpy(data.valid)
    agree = (fast.argmax(1)[0] == plain.argmax(1)[0])[valid].float().mean().item()
    assert agree >= 0.999
    assert (fast - plain).abs().max().item() < 1e-3
    assert np.isfinite(fast.numpy()).all()


@pytest.mark.parametrize("pyramid", ["deconv", "interpolate"])
def test_folded_projections_give_the_plain_probabilities(pyramid):
    """The inference path folds the stride-4 lateral projection into the pyramid and the mask
    projection into the mask embeddings; with random (non-zero) biases it still gives the
    plain path's probabilities, for both pyramids."""
    from crossearth_sar.core.models.model import build_from_config

    from _helpers_micro import micro_config

    cfg = micro_config()
    cfg["head"]["pyramid"] = pyramid
    torch.manual_seed(1)
    net = build_from_config(cfg).eval()
    with torch.no_grad():  # biases that the init leaves at zero, so folding them is checked
        net.head.pixel_decoder.mask_features.bias.normal_()
        if pyramid == "deconv":
            net.pyramid.up4[-1].bias.normal_()
    x, desc = torch.rand(2, 3, 70, 84), torch.rand(2, 3)
    with torch.inference_mode():
        fast = net.predict_proba(x, desc)
        set_fast_inference(net, False)
        plain = net.predict_proba(x, desc)
    assert fast.shape == plain.shape == (2, 2, 70, 84)
    assert (fast - plain).abs().max().item() < 1e-5
    assert fast.argmax(1).eq(plain.argmax(1)).float().mean().item() == 1.0


def test_folded_inputs_are_refused_outside_the_inference_path():
    head = _head().train()
    feats = [torch.randn(2, 32, 16, 16)] + [torch.randn(2, 24, 4 * s, 4 * s) for s in (2, 1)] \
        + [torch.randn(2, 24, 2, 2)]
    with pytest.raises(ValueError, match="inference path"):
        head(feats, fine_projected=True)
