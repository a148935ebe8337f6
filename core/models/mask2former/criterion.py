"""Mask2Former set criterion: class cross-entropy (no-object weight), point-sampled mask BCE
and dice with uncertainty-based importance sampling, deep supervision on every prediction."""
from __future__ import annotations

from typing import NamedTuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .matcher import HungarianMatcher
from .point_sampling import pixel_center_coords, point_sample, uncertain_point_coords
from .targets import TargetsLike, as_targets


class FlatMatches(NamedTuple):
    """The matches of a batch as index vectors [M]: image, query and target slot."""
    image: torch.Tensor
    query: torch.Tensor
    slot: torch.Tensor


MatchesLike = Union[FlatMatches, list]


def flat_matches(matches: MatchesLike, device: torch.device) -> FlatMatches:
    """Per-image (rows, cols) from the matcher -> :class:`FlatMatches` on ``device`` (moved
    there in one transfer); already flat matches are returned as they are."""
    if isinstance(matches, FlatMatches):
        return matches
    if not matches:
        empty = torch.empty(0, dtype=torch.int64, device=device)
        return FlatMatches(empty, empty, empty)
    image = torch.cat([torch.full((len(r),), i, dtype=torch.int64) for i, (r, _) in enumerate(matches)])
    rows = torch.cat([r.cpu() for r, _ in matches])
    cols = torch.cat([c.cpu() for _, c in matches])
    idx = torch.stack((image, rows, cols)).to(device, non_blocking=True)
    return FlatMatches(idx[0], idx[1], idx[2])


def class_loss(logits: torch.Tensor, matches: MatchesLike, targets: TargetsLike, no_object_weight: float) -> torch.Tensor:
    """Weighted cross-entropy over all queries: logits [B, Q, K+1]; unmatched queries must
    predict the no-object class K, whose weight is ``no_object_weight`` (others 1)."""
    tg = as_targets(targets)
    b, q, k1 = logits.shape
    image, rows, cols = flat_matches(matches, logits.device)
    labels = torch.full((b, q), k1 - 1, dtype=torch.int64, device=logits.device)
    labels[image, rows] = tg.labels.to(logits.device)[image, cols]
    weight = torch.ones(k1, dtype=logits.dtype, device=logits.device)
    weight[-1] = no_object_weight
    return F.cross_entropy(logits.transpose(1, 2), labels, weight=weight)


def sigmoid_bce_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Per-mask (weighted) mean BCE over points, summed and divided by ``num_masks``;
    logits, labels, weights [M, P]."""
    bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none")
    per_mask = (bce * weights).sum(1) / weights.sum(1).clamp_min(1e-6)
    return per_mask.sum() / num_masks


def dice_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Sum over masks of 1 - (2 sum(p t) + 1) / (sum p + sum t + 1), divided by ``num_masks``."""
    p = logits.sigmoid() * weights
    t = labels * weights
    per_mask = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return per_mask.sum() / num_masks


class SetCriterion(nn.Module):
    """Matches every prediction set to the targets and sums the weighted losses.

    ``num_points=None`` evaluates the mask losses on every target pixel (exact, for tests and
    tiny inputs); otherwise ``num_points`` importance-sampled points per mask.
    """

    def __init__(self, num_classes: int, class_weight: float = 2.0, mask_weight: float = 5.0,
                 dice_weight: float = 5.0, no_object_weight: float = 0.1,
                 num_points: int | None = 12544, oversample_ratio: float = 3.0,
                 importance_sample_ratio: float = 0.75, deep_supervision: bool = True):
        super().__init__()
        self.num_classes = num_classes
        self.class_weight, self.mask_weight, self.dice_weight = class_weight, mask_weight, dice_weight
        self.no_object_weight = no_object_weight
        self.num_points, self.oversample_ratio = num_points, oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.deep_supervision = deep_supervision
        self.matcher = HungarianMatcher(class_weight, mask_weight, dice_weight, num_points)

    def mask_losses(self, masks: torch.Tensor, matches: MatchesLike, targets: TargetsLike,
                    num_masks: float, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(BCE, dice) of the matched masks; masks [B, Q, h, w] logits."""
        tg = as_targets(targets)
        image, rows, cols = flat_matches(matches, masks.device)
        if len(rows) == 0:
            zero = masks.sum() * 0.0
            return zero, zero
        src = masks[image, rows]
        tgt = tg.masks.to(masks.device, masks.dtype)[image, cols]
        valid = tg.valid.to(masks.device, masks.dtype)[image]
        src, tgt, valid = src[:, None], tgt[:, None], valid[:, None]
        with torch.no_grad():
            if self.num_points is None:
                coords = pixel_center_coords(*tgt.shape[-2:], device=masks.device)
                coords = coords[None].expand(len(src), -1, -1)
            else:
                coords = uncertain_point_coords(src.float(), self.num_points, self.oversample_ratio,
                                                self.importance_sample_ratio, generator)
            labels = point_sample(tgt, coords)[:, 0]
            weights = point_sample(valid, coords)[:, 0]
        logits = point_sample(src, coords)[:, 0]
        return (sigmoid_bce_loss(logits, labels, weights, num_masks),
                dice_loss(logits, labels, weights, num_masks))

    def single(self, logits: torch.Tensor, masks: torch.Tensor, targets: TargetsLike,
               num_masks: float, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Unweighted losses of one prediction set: {"ce", "mask", "dice"}."""
        matches = flat_matches(self.matcher(logits, masks, targets, generator), masks.device)
        ce = class_loss(logits, matches, targets, self.no_object_weight)
        bce, dice = self.mask_losses(masks, matches, targets, num_masks, generator)
        return {"ce": ce, "mask": bce, "dice": dice}

    def forward(self, outputs: dict, targets: TargetsLike,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """outputs {pred_logits, pred_masks, aux_outputs [{pred_logits, pred_masks}, ...]} ->
        (weighted total, {"loss_ce", "loss_mask", "loss_dice" (final set, weighted), "loss_aux"})."""
        targets = as_targets(targets)
        num_masks = max(float(targets.num_masks), 1.0)
        weights = {"ce": self.class_weight, "mask": self.mask_weight, "dice": self.dice_weight}
        final = self.single(outputs["pred_logits"], outputs["pred_masks"], targets, num_masks, generator)
        terms = {f"loss_{k}": v * weights[k] for k, v in final.items()}
        total = sum(terms.values())
        aux = outputs["pred_logits"].sum() * 0.0
        if self.deep_supervision:
            for a in outputs.get("aux_outputs", []):
                losses = self.single(a["pred_logits"], a["pred_masks"], targets, num_masks, generator)
                aux = aux + sum(v * weights[k] for k, v in losses.items())
        terms["loss_aux"] = aux
        return total + aux, terms
