"""Hungarian matching of predicted (class, mask) pairs to target masks (scipy)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from .point_sampling import pixel_center_coords, point_sample
from .targets import TargetsLike, as_targets


def mask_bce_cost(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Pairwise mean binary cross-entropy: logits [..., Q, P], targets [..., T, P] in 0..1 -> [..., Q, T].

    ``weights`` [..., P] (0..1) weight the points (ignored pixels get 0); the mean is over weights.
    """
    w = torch.ones(logits.shape[-1], dtype=logits.dtype, device=logits.device) if weights is None else weights
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    wt = w[..., None, :]
    cost = pos @ (targets * wt).transpose(-1, -2) + neg @ ((1 - targets) * wt).transpose(-1, -2)
    return cost / w.sum(-1).clamp_min(1e-6)[..., None, None]


def mask_dice_cost(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Pairwise dice loss 1 - (2|p t| + 1) / (|p| + |t| + 1), p = sigmoid(logits): [..., Q, T]."""
    p = logits.sigmoid()
    if weights is not None:
        p, targets = p * weights[..., None, :], targets * weights[..., None, :]
    num = 2 * p @ targets.transpose(-1, -2)
    den = p.sum(-1)[..., :, None] + targets.sum(-1)[..., None, :]
    return 1 - (num + 1) / (den + 1)


class HungarianMatcher:
    """Cost = class_weight * (-p(class)) + mask_weight * BCE + dice_weight * dice, over
    ``num_points`` random points shared by all pairs of one image (None: every target pixel).
    The costs of the whole batch are computed together and read back to the host once."""

    def __init__(self, class_weight: float = 2.0, mask_weight: float = 5.0, dice_weight: float = 5.0,
                 num_points: int | None = 12544):
        self.class_weight, self.mask_weight, self.dice_weight = class_weight, mask_weight, dice_weight
        self.num_points = num_points

    def batch_cost(self, logits: torch.Tensor, masks: torch.Tensor, targets: TargetsLike,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """logits [B, Q, K+1], masks [B, Q, h, w], targets (T slots) -> cost [B, Q, T]
        (slots that are not present get a cost too; the assignment skips them)."""
        tg = as_targets(targets)
        b, q = logits.shape[:2]
        tgt_masks = tg.masks.to(masks.device, masks.dtype)
        if self.num_points is None:
            coords = pixel_center_coords(*tgt_masks.shape[-2:], device=masks.device)[None].expand(b, -1, -1)
        else:
            coords = torch.rand(b, self.num_points, 2, device=masks.device, generator=generator)
        t = point_sample(tgt_masks, coords)                                            # [B, T, P]
        m = point_sample(masks, coords)                                                # [B, Q, P]
        w = point_sample(tg.valid.to(masks.device, masks.dtype)[:, None], coords)[:, 0]  # [B, P]
        labels = tg.labels.to(logits.device)[:, None, :].expand(b, q, -1)
        cost_class = -logits.softmax(-1).gather(-1, labels)
        return (self.class_weight * cost_class + self.mask_weight * mask_bce_cost(m, t, w)
                + self.dice_weight * mask_dice_cost(m, t, w))

    def cost_matrix(self, logits: torch.Tensor, masks: torch.Tensor, target: dict,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """One image: logits [Q, K+1], masks [Q, h, w], target {labels [T], masks [T, H, W],
        valid [H, W] optional} -> cost [Q, T]."""
        n = len(target["labels"])
        return self.batch_cost(logits[None], masks[None], [target], generator)[0, :, :n]

    @torch.no_grad()
    def __call__(self, pred_logits: torch.Tensor, pred_masks: torch.Tensor, targets: TargetsLike,
                 generator: torch.Generator | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image: (query indexes, target slot indexes), both int64, of the optimal assignment."""
        tg = as_targets(targets)
        empty = torch.empty(0, dtype=torch.int64)
        if not tg.present_np.any():
            return [(empty, empty) for _ in range(len(tg.present_np))]
        cost = self.batch_cost(pred_logits.float(), pred_masks.float(), tg, generator)
        cost = cost.float().cpu().numpy()
        out = []
        for b, present in enumerate(tg.present_np):
            slots = np.flatnonzero(present)
            if len(slots) == 0:
                out.append((empty, empty))
                continue
            rows, cols = linear_sum_assignment(cost[b][:, slots])
            out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(slots[cols], dtype=torch.int64)))
        return out
