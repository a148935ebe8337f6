"""Hungarian matching of predicted (class, mask) pairs to target masks (scipy)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from .point_sampling import pixel_center_coords, point_sample


def mask_bce_cost(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Pairwise mean binary cross-entropy: logits [Q, P], targets [T, P] in 0..1 -> [Q, T].

    ``weights`` [P] (0..1) weight the points (ignored pixels get 0); the mean is over weights.
    """
    w = torch.ones(logits.shape[1], dtype=logits.dtype, device=logits.device) if weights is None else weights
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    cost = pos @ (targets * w).T + neg @ ((1 - targets) * w).T
    return cost / w.sum().clamp_min(1e-6)


def mask_dice_cost(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Pairwise dice loss 1 - (2|p t| + 1) / (|p| + |t| + 1), p = sigmoid(logits): [Q, T]."""
    p = logits.sigmoid()
    if weights is not None:
        p, targets = p * weights, targets * weights
    num = 2 * p @ targets.T
    den = p.sum(-1)[:, None] + targets.sum(-1)[None, :]
    return 1 - (num + 1) / (den + 1)


class HungarianMatcher:
    """Cost = class_weight * (-p(class)) + mask_weight * BCE + dice_weight * dice, over
    ``num_points`` random points shared by all pairs of one image (None: every target pixel)."""

    def __init__(self, class_weight: float = 2.0, mask_weight: float = 5.0, dice_weight: float = 5.0,
                 num_points: int | None = 12544):
        self.class_weight, self.mask_weight, self.dice_weight = class_weight, mask_weight, dice_weight
        self.num_points = num_points

    def cost_matrix(self, logits: torch.Tensor, masks: torch.Tensor, target: dict,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """One image: logits [Q, K+1], masks [Q, h, w], target {labels [T], masks [T, H, W],
        valid [H, W] optional} -> cost [Q, T]."""
        tgt_masks = target["masks"].to(masks.dtype)
        if self.num_points is None:
            coords = pixel_center_coords(*tgt_masks.shape[-2:], device=masks.device)
        else:
            coords = torch.rand(self.num_points, 2, device=masks.device, generator=generator)
        t = point_sample(tgt_masks[:, None], coords[None].expand(len(tgt_masks), -1, -1))[:, 0]
        m = point_sample(masks[:, None], coords[None].expand(len(masks), -1, -1))[:, 0]
        w = None
        if target.get("valid") is not None:
            w = point_sample(target["valid"].to(masks.dtype)[None, None], coords[None])[0, 0]
        cost_class = -logits.softmax(-1)[:, target["labels"]]
        return (self.class_weight * cost_class + self.mask_weight * mask_bce_cost(m, t, w)
                + self.dice_weight * mask_dice_cost(m, t, w))

    @torch.no_grad()
    def __call__(self, pred_logits: torch.Tensor, pred_masks: torch.Tensor, targets: list[dict],
                 generator: torch.Generator | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image: (query indexes, target indexes), both int64, of the optimal assignment."""
        out = []
        for b, target in enumerate(targets):
            if len(target["labels"]) == 0:
                empty = torch.empty(0, dtype=torch.int64)
                out.append((empty, empty))
                continue
            cost = self.cost_matrix(pred_logits[b].float(), pred_masks[b].float(), target, generator)
            rows, cols = linear_sum_assignment(cost.cpu().numpy())
            out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(np.asarray(cols), dtype=torch.int64)))
        return out
