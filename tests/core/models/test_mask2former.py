"""Mask2Former head: point sampling, deformable sampling, matcher, each loss term and semantic
inference checked against values computed by hand (plain Python loops) on tiny inputs."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from crossearth_sar.core.models.mask2former.criterion import SetCriterion, class_loss
from crossearth_sar.core.models.mask2former.head import Mask2FormerHead, semantic_probabilities
from crossearth_sar.core.models.mask2former.matcher import HungarianMatcher
from crossearth_sar.core.models.mask2former.ms_deform_attn import deformable_sample
from crossearth_sar.core.models.mask2former.point_sampling import pixel_center_coords, point_sample, uncertain_point_coords
from crossearth_sar.core.models.mask2former.targets import Targets, semantic_targets
from crossearth_sar.core.models.mask2former.transformer_decoder import CrossAttentionLayer


def semantic_to_targets(target: torch.Tensor, num_classes: int, ignore_index: int = 255) -> list[dict]:
    """target [B, H, W] -> per image {labels [T] int64 (sorted), masks [T, H, W] float 0/1,
    valid [H, W] float 0/1}: ``semantic_targets`` as a list of the classes present."""
    return semantic_targets(target, num_classes, ignore_index).to_list()


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def _bce(logit: float, label: float) -> float:
    p = _sigmoid(logit)
    return -(label * math.log(p) + (1 - label) * math.log(1 - p))


def _softmax(row: list[float]) -> list[float]:
    e = [math.exp(v) for v in row]
    return [v / sum(e) for v in e]


def _dice(logits: list[float], labels: list[float], weights: list[float]) -> float:
    p = [_sigmoid(v) * w for v, w in zip(logits, weights)]
    t = [v * w for v, w in zip(labels, weights)]
    inter = sum(a * b for a, b in zip(p, t))
    return 1 - (2 * inter + 1) / (sum(p) + sum(t) + 1)


def _mean_bce(logits: list[float], labels: list[float], weights: list[float]) -> float:
    return sum(w * _bce(v, t) for v, t, w in zip(logits, labels, weights)) / sum(weights)


# a tiny problem: 3 queries, 2 classes (+ no-object), 2x3 masks, 2 targets
LOGITS = torch.tensor([[0.5, -1.0, 0.2], [2.0, 0.1, -0.5], [-0.3, 1.5, 0.0]])
MASKS = torch.tensor([[[2.0, -1.0, 0.5], [-2.0, 1.0, 0.0]],
                      [[-1.5, 3.0, -0.5], [1.0, -3.0, 2.5]],
                      [[0.3, 0.3, -0.7], [1.2, -0.4, -2.0]]])
LABEL_MAP = torch.tensor([[0, 1, 1], [0, 0, 255]])


def _target() -> dict:
    return semantic_to_targets(LABEL_MAP[None], num_classes=2)[0]


def _hand_cost(q: int, t: int, target: dict) -> float:
    label = int(target["labels"][t])
    logits = MASKS[q].flatten().tolist()
    labels = target["masks"][t].flatten().tolist()
    weights = target["valid"].flatten().tolist()
    return (2.0 * -_softmax(LOGITS[q].tolist())[label]
            + 5.0 * _mean_bce(logits, labels, weights) + 5.0 * _dice(logits, labels, weights))


def test_semantic_to_targets_one_mask_per_present_class():
    target = _target()
    assert target["labels"].tolist() == [0, 1]
    assert target["masks"].tolist() == [[[1, 0, 0], [1, 1, 0]], [[0, 1, 1], [0, 0, 0]]]
    assert target["valid"].tolist() == [[1, 1, 1], [1, 1, 0]]
    with pytest.raises(ValueError, match="label 3"):
        semantic_to_targets(torch.tensor([[[0, 3]]]), num_classes=2)


def test_point_sample_at_pixel_centres_returns_the_pixels():
    maps = torch.randn(2, 3, 4, 5)
    coords = pixel_center_coords(4, 5)[None].expand(2, -1, -1)
    assert torch.allclose(point_sample(maps, coords), maps.flatten(2), atol=1e-6)
    # halfway between the centres of two horizontal neighbours: their mean
    mid = torch.tensor([[[1.0 / 5, 0.5 / 4]]])
    assert torch.allclose(point_sample(maps[:1], mid)[0, :, 0], maps[0, :, 0, :2].mean(-1), atol=1e-6)


def test_importance_sampling_picks_the_uncertain_half():
    logits = torch.full((1, 1, 8, 8), 20.0)
    logits[..., :4] = 0.0  # left half: maximal uncertainty
    g = torch.Generator().manual_seed(0)
    coords = uncertain_point_coords(logits, num_points=60, oversample_ratio=3.0,
                                    importance_sample_ratio=1.0, generator=g)
    assert coords.shape == (1, 60, 2)
    assert (coords[0, :, 0] < 0.5).all()
    mixed = uncertain_point_coords(logits, 40, 3.0, 0.75, generator=g)
    assert mixed.shape == (1, 40, 2)
    assert (mixed[0, :30, 0] < 0.5).all()


def test_matcher_cost_and_assignment_match_hand_computation():
    target = _target()
    matcher = HungarianMatcher(num_points=None)
    cost = matcher.cost_matrix(LOGITS, MASKS, target)
    hand = torch.tensor([[_hand_cost(q, t, target) for t in range(2)] for q in range(3)])
    assert torch.allclose(cost, hand, atol=1e-5)
    (rows, cols), = matcher(LOGITS[None], MASKS[None], [target])
    best = min(itertools.permutations(range(3), 2), key=lambda qs: sum(hand[q, t] for t, q in enumerate(qs)))
    assert sorted(zip(cols.tolist(), rows.tolist())) == list(enumerate(best))


def test_matcher_assigns_the_obvious_pairs():
    labels = torch.tensor([[[0, 0, 1, 1]]])
    target = semantic_to_targets(labels, 2)[0]
    logits = torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0]])
    masks = torch.tensor([[[-9.0, -9.0, 9.0, 9.0]], [[9.0, 9.0, 9.0, 9.0]], [[9.0, 9.0, -9.0, -9.0]]])
    (rows, cols), = HungarianMatcher(num_points=None)(logits[None], masks[None], [target])
    assert dict(zip(cols.tolist(), rows.tolist())) == {0: 2, 1: 0}


def test_class_loss_matches_hand_computation():
    target = _target()
    matches = [(torch.tensor([2, 0]), torch.tensor([0, 1]))]  # query 2 -> class 0, query 0 -> class 1
    got = class_loss(LOGITS[None], matches, [target], no_object_weight=0.1)
    wanted = {0: 1, 1: 2, 2: 0}  # query -> class (2 = no object)
    weight = {0: 1.0, 1: 1.0, 2: 0.1}
    num = sum(weight[c] * -math.log(_softmax(LOGITS[q].tolist())[c]) for q, c in wanted.items())
    den = sum(weight[c] for c in wanted.values())
    assert got.item() == pytest.approx(num / den, rel=1e-6)


def test_mask_bce_and_dice_match_hand_computation_and_skip_ignored_pixels():
    target = _target()
    crit = SetCriterion(2, num_points=None)
    matches = [(torch.tensor([2, 0]), torch.tensor([0, 1]))]
    bce, dice = crit.mask_losses(MASKS[None], matches, [target], num_masks=2.0)
    weights = target["valid"].flatten().tolist()
    hand_bce = hand_dice = 0.0
    for q, t in [(2, 0), (0, 1)]:
        logits, labels = MASKS[q].flatten().tolist(), target["masks"][t].flatten().tolist()
        hand_bce += _mean_bce(logits, labels, weights)
        hand_dice += _dice(logits, labels, weights)
    assert bce.item() == pytest.approx(hand_bce / 2, rel=1e-5)
    assert dice.item() == pytest.approx(hand_dice / 2, rel=1e-5)
    # the ignored pixel's logit does not matter
    changed = MASKS.clone()
    changed[:, 1, 2] = 50.0
    bce2, dice2 = crit.mask_losses(changed[None], matches, [target], num_masks=2.0)
    assert bce2.item() == pytest.approx(bce.item(), rel=1e-6)
    assert dice2.item() == pytest.approx(dice.item(), rel=1e-6)


def test_point_sampled_mask_losses_approach_the_dense_values():
    g = torch.Generator().manual_seed(1)
    labels = torch.zeros(1, 32, 32, dtype=torch.long)
    labels[:, 8:24, 6:18] = 1
    target = semantic_to_targets(labels, 2)[0]
    ramp = torch.linspace(-3, 3, 32)
    masks = torch.stack((ramp[None, :].expand(32, 32), ramp[:, None].expand(32, 32)))  # smooth
    matches = [(torch.tensor([0, 1]), torch.tensor([0, 1]))]
    dense = SetCriterion(2, num_points=None).mask_losses(masks[None], matches, [target], 2.0)
    sampled = SetCriterion(2, num_points=20000, importance_sample_ratio=0.0).mask_losses(
        masks[None], matches, [target], 2.0, generator=g)
    # uniform points on the bilinear surface vs the pixel centres: close, not equal
    for a, b in zip(dense, sampled):
        assert b.item() == pytest.approx(a.item(), rel=0.1)


def test_criterion_total_is_weighted_sum_over_all_prediction_sets():
    target = _target()
    crit = SetCriterion(2, num_points=None)
    aux_logits, aux_masks = LOGITS.flip(0), MASKS.flip(0) * 0.5
    outputs = {"pred_logits": LOGITS[None], "pred_masks": MASKS[None],
               "aux_outputs": [{"pred_logits": aux_logits[None], "pred_masks": aux_masks[None]}]}
    total, terms = crit(outputs, [target])
    final = crit.single(LOGITS[None], MASKS[None], [target], 2.0)
    aux = crit.single(aux_logits[None], aux_masks[None], [target], 2.0)
    for name, w in (("ce", 2.0), ("mask", 5.0), ("dice", 5.0)):
        assert terms[f"loss_{name}"].item() == pytest.approx(w * final[name].item(), rel=1e-6)
    hand_aux = 2.0 * aux["ce"] + 5.0 * aux["mask"] + 5.0 * aux["dice"]
    assert terms["loss_aux"].item() == pytest.approx(hand_aux.item(), rel=1e-6)
    assert total.item() == pytest.approx(sum(v.item() for v in terms.values()), rel=1e-6)
    no_aux = SetCriterion(2, num_points=None, deep_supervision=False)(outputs, [target])[0]
    assert no_aux.item() == pytest.approx(total.item() - hand_aux.item(), rel=1e-6)


def test_criterion_with_no_labelled_pixel_only_pushes_to_no_object():
    target = semantic_to_targets(torch.full((1, 2, 3), 255), 2)
    total, terms = SetCriterion(2)({"pred_logits": LOGITS[None], "pred_masks": MASKS[None]}, target)
    assert terms["loss_mask"].item() == 0.0 and terms["loss_dice"].item() == 0.0
    hand = sum(-math.log(_softmax(r)[2]) for r in LOGITS.tolist()) / 3
    assert terms["loss_ce"].item() == pytest.approx(2.0 * hand, rel=1e-6)


def test_batched_targets_match_image_by_image():
    """A batch with different classes per image (one image unlabelled): the padded batch
    (Targets, one slot per class) gives each image the assignment it gets alone, and the same
    losses as the per-image lists."""
    g = torch.Generator().manual_seed(3)
    labels = torch.zeros(3, 6, 6, dtype=torch.long)
    labels[0, :, 3:] = 1
    labels[1] = 255
    labels[2] = 2
    labels[2, :2] = 255
    logits, masks = torch.randn(3, 4, 4, generator=g), torch.randn(3, 4, 6, 6, generator=g)
    batched = semantic_targets(labels, 3)
    assert isinstance(batched, Targets) and batched.num_masks == 3
    assert batched.present.tolist() == [[True, True, False], [False, False, False], [False, False, True]]
    as_list = semantic_to_targets(labels, 3)
    assert [t["labels"].tolist() for t in as_list] == [[0, 1], [], [2]]
    matcher = HungarianMatcher(num_points=None)
    together = matcher(logits, masks, batched)
    for i, (rows, cols) in enumerate(together):
        (r1, c1), = matcher(logits[i:i + 1], masks[i:i + 1], [as_list[i]])
        assert rows.tolist() == r1.tolist()
        assert cols.tolist() == as_list[i]["labels"][c1].tolist()  # slot = class index
    assert len(together[1][0]) == 0
    crit = SetCriterion(3, num_points=None)
    outputs = {"pred_logits": logits, "pred_masks": masks}
    total, terms = crit(outputs, batched)
    total_list, terms_list = crit(outputs, as_list)
    assert total.item() == pytest.approx(total_list.item(), rel=1e-6)
    for k in terms:
        assert terms[k].item() == pytest.approx(terms_list[k].item(), rel=1e-6, abs=1e-7)


def test_semantic_probabilities_match_hand_computation():
    logits = torch.tensor([[[1.0, 0.0, -1.0], [0.0, 2.0, 0.5]]])  # 2 queries, 2 classes
    masks = torch.tensor([[[[0.0, 3.0]], [[-1.0, 1.0]]]])  # 1x2 pixels
    probs = semantic_probabilities(logits, masks, eps=0.0)
    for px in range(2):
        score = [sum(_softmax(logits[0, q].tolist())[k] * _sigmoid(masks[0, q, 0, px].item())
                     for q in range(2)) for k in range(2)]
        for k in range(2):
            assert probs[0, k, 0, px].item() == pytest.approx(score[k] / sum(score), rel=1e-6)
    up = semantic_probabilities(logits, masks, size=(3, 8))
    assert up.shape == (1, 2, 3, 8)
    assert torch.allclose(up.sum(1), torch.ones(1, 3, 8), atol=1e-6)


def test_deformable_sampling_is_weighted_bilinear_sampling():
    g = torch.Generator().manual_seed(2)
    shapes = [(3, 4), (2, 2)]
    value = torch.randn(1, 12 + 4, 2, 5, generator=g)  # B, Nv, heads, Dh
    level0 = value[0, :12].reshape(3, 4, 2, 5)
    level1 = value[0, 12:].reshape(2, 2, 2, 5)
    # query 0: level 0 at the centre of pixel (row 1, col 2); level 1 halfway between (0,0),(0,1)
    loc = torch.zeros(1, 1, 2, 2, 1, 2)
    loc[..., 0, 0, :] = torch.tensor([2.5 / 4, 1.5 / 3])
    loc[..., 1, 0, :] = torch.tensor([1.0 / 2, 0.5 / 2])
    weights = torch.tensor([0.3, 0.7]).view(1, 1, 1, 2, 1).expand(1, 1, 2, 2, 1)
    out = deformable_sample(value, shapes, loc, weights)
    hand = 0.3 * level0[1, 2] + 0.7 * (level1[0, 0] + level1[0, 1]) / 2  # [heads, Dh]
    assert torch.allclose(out[0, 0], hand.flatten(), atol=1e-6)


def test_masked_cross_attention_ignores_masked_out_pixels():
    torch.manual_seed(0)
    layer = CrossAttentionLayer(16, 4).eval()
    tgt, pos_q = torch.randn(1, 2, 16), torch.randn(1, 2, 16)
    memory, pos = torch.randn(1, 6, 16), torch.randn(1, 6, 16)
    mask = torch.zeros(1, 2, 6, dtype=torch.bool)  # [B, Q, S], shared by the 4 heads
    mask[:, 0, 3:] = True  # query 0 may only look at pixels 0..2
    memory2 = memory.clone()
    memory2[:, 3:] += 5.0
    results = []
    for shared in (False, True):  # nn.MultiheadAttention (per-head copies) and the inference SDPA
        before = layer(tgt, memory, mask, pos, pos_q, shared_mask=shared)
        after = layer(tgt, memory2, mask, pos, pos_q, shared_mask=shared)
        assert torch.allclose(before[0, 0], after[0, 0], atol=1e-6)
        assert not torch.allclose(before[0, 1], after[0, 1])
        results.append(before)
    assert torch.allclose(results[0], results[1], atol=1e-5)


def test_head_outputs_and_gradients():
    torch.manual_seed(0)
    head = Mask2FormerHead([24] * 4, num_classes=3, hidden_dim=32, mask_dim=32, num_queries=7,
                           enc_layers=1, enc_ffn_dim=64, dec_ffn_dim=64)
    feats = [torch.randn(2, 24, 4 * s, 4 * s) for s in (4, 2, 1)] + [torch.randn(2, 24, 2, 2)]
    out = head(feats)
    assert out["pred_logits"].shape == (2, 7, 4)
    assert out["pred_masks"].shape == (2, 7, 16, 16)
    assert len(out["aux_outputs"]) == 9
    labels = torch.zeros(2, 32, 32, dtype=torch.long)
    labels[:, :, 10:] = 2
    labels[1, :5] = 255
    total, _ = SetCriterion(3, num_points=500)(out, semantic_to_targets(labels, 3))
    total.backward()
    offsets = head.pixel_decoder.encoder[0].attn.sampling_offsets.weight.grad
    assert offsets is not None and offsets.abs().sum() > 0
    assert head.transformer_decoder.query_feat.weight.grad.abs().sum() > 0
