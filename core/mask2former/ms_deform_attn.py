"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch via ``grid_sample``.

No compiled operator: runs wherever ``torch.nn.functional.grid_sample`` runs (CPU, CUDA).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def deformable_sample(value: torch.Tensor, shapes: list[tuple[int, int]],
                      locations: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted sum of bilinear samples of multi-level value maps.

    value [B, Nv, M, Dh] (levels flattened and concatenated in ``shapes`` order),
    locations [B, Nq, M, L, P, 2] (x, y) in [0, 1] of each level, weights [B, Nq, M, L, P]
    -> [B, Nq, M * Dh].
    """
    b, _, heads, dh = value.shape
    _, nq, _, levels, points, _ = locations.shape
    grids = 2.0 * locations - 1.0
    sampled = []
    start = 0
    for lvl, (h, w) in enumerate(shapes):
        v = value[:, start:start + h * w]  # [B, h*w, M, Dh]
        start += h * w
        v = v.permute(0, 2, 3, 1).reshape(b * heads, dh, h, w)
        g = grids[:, :, :, lvl].permute(0, 2, 1, 3, 4).reshape(b * heads, nq, points, 2)
        sampled.append(F.grid_sample(v, g.to(v.dtype), mode="bilinear", padding_mode="zeros",
                                     align_corners=False))  # [B*M, Dh, Nq, P]
    stacked = torch.stack(sampled, dim=3)  # [B*M, Dh, Nq, L, P]
    w = weights.permute(0, 2, 1, 3, 4).reshape(b * heads, 1, nq, levels, points)
    out = (stacked * w.to(stacked.dtype)).sum(dim=(3, 4))  # [B*M, Dh, Nq]
    return out.view(b, heads * dh, nq).transpose(1, 2)


class MultiScaleDeformableAttention(nn.Module):
    """Each query attends to ``points`` learned offsets around its reference point per level/head."""

    def __init__(self, dim: int, heads: int = 8, levels: int = 3, points: int = 4):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} not divisible by heads {heads}")
        self.dim, self.heads, self.levels, self.points = dim, heads, levels, points
        self.sampling_offsets = nn.Linear(dim, heads * levels * points * 2)
        self.attention_weights = nn.Linear(dim, heads * levels * points)
        self.value_proj = nn.Linear(dim, dim)
        self.output_proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR init: offsets start on rings of directions, uniform attention."""
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.heads, dtype=torch.float32) * (2.0 * math.pi / self.heads)
        grid = torch.stack((theta.cos(), theta.sin()), -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.heads, 1, 1, 2).repeat(1, self.levels, self.points, 1)
        grid = grid * torch.arange(1, self.points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor, value: torch.Tensor,
                shapes: list[tuple[int, int]]) -> torch.Tensor:
        """query [B, Nq, D], reference_points [B, Nq, L, 2] (x, y in [0, 1]),
        value [B, Nv, D] (all levels, flattened) -> [B, Nq, D]."""
        b, nq, _ = query.shape
        m, lv, p = self.heads, self.levels, self.points
        v = self.value_proj(value).view(b, value.shape[1], m, self.dim // m)
        offsets = self.sampling_offsets(query).view(b, nq, m, lv, p, 2)
        weights = self.attention_weights(query).view(b, nq, m, lv * p).softmax(-1)
        weights = weights.view(b, nq, m, lv, p)
        normalizer = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype,
                                  device=query.device)  # [L, 2] as (x, y)
        locations = (reference_points[:, :, None, :, None, :]
                     + offsets / normalizer[None, None, None, :, None, :])
        return self.output_proj(deformable_sample(v, shapes, locations, weights))
