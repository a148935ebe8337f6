"""Mask2Former pixel decoder: deformable-attention encoder over strides 8/16/32 plus an FPN
step to stride 4 that yields the per-pixel mask features.

Inference may leave out the two linear 1x1 projections at stride 4, for the neighbours to
fold into their own linear steps: the lateral projection of the stride-4 input
(``fine_projected``: the feature pyramid applied it, see mask2former.feature_pyramid) and
the final mask-feature projection (``project_masks`` False: the transformer decoder folds it
into its mask embeddings, see mask2former.transformer_decoder).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .ms_deform_attn import MultiScaleDeformableAttention
from .position_encoding import sine_position_encoding


class GroupNorm(nn.GroupNorm):
    """nn.GroupNorm that also takes a group of a single value (one window whose stride-32
    map is 1 x 1, with one channel per group: normalized to 0, so the output is the bias);
    torch.nn.functional.group_norm refuses it. Same parameters and state dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Group norm of ``x`` [B, C, H, W] (same shape)."""
        return torch.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)


def _norm(dim: int) -> nn.GroupNorm:
    return GroupNorm(min(32, dim), dim)


class DeformableEncoderLayer(nn.Module):
    """Post-norm layer: deformable self-attention over all levels, then an FFN.

    On the gathered (CPU inference) path the values are projected once and the queries then
    go through attention, norms and FFN ``QUERY_CHUNK`` at a time: every step after the value
    table is row-wise, so the answer is the same, and the temporaries (sampling positions,
    the FFN's hidden layer) stay a few MB, in cache, instead of tens of MB per window.
    """

    QUERY_CHUNK = 1024  # queries per batch item and chunk on the gathered path

    def __init__(self, dim: int, heads: int, levels: int, points: int, ffn_dim: int):
        super().__init__()
        self.attn = MultiScaleDeformableAttention(dim, heads, levels, points)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.ReLU(inplace=True), nn.Linear(ffn_dim, dim))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, reference_points: torch.Tensor,
                shapes: list[tuple[int, int]]) -> torch.Tensor:
        """src, pos [B, N, D], reference_points [B, N, L, 2] -> [B, N, D]."""
        if self.attn.gathers(src):
            return self._chunked(src, pos, reference_points, shapes)
        src = self.norm1(src + self.attn(src + pos, reference_points, src, shapes))
        return self.norm2(src + self.ffn(src))

    def _chunked(self, src, pos, reference_points, shapes):
        values = self.attn.value_table(src, shapes)
        out = torch.empty_like(src)
        for lo in range(0, src.shape[1], self.QUERY_CHUNK):
            part = slice(lo, lo + self.QUERY_CHUNK)
            s = src[:, part]
            s = self.norm1(s + self.attn.attend(s + pos[:, part], reference_points[:, part], values, shapes))
            out[:, part] = self.norm2(s + self.ffn(s))
        return out


def reference_points(shapes: list[tuple[int, int]], batch: int, device: torch.device,
                     dtype: torch.dtype) -> torch.Tensor:
    """Pixel centres of every level, normalized to [0, 1]: [B, sum(h*w), L, 2] (x, y)."""
    refs = []
    for h, w in shapes:
        ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w
        gy, gx = torch.meshgrid(ys, xs, indexing="ij")
        refs.append(torch.stack((gx.flatten(), gy.flatten()), -1))
    ref = torch.cat(refs, 0)  # [N, 2]; no padding, so the same point on every level
    return ref[None, :, None, :].expand(batch, -1, len(shapes), -1)


class PixelDecoder(nn.Module):
    """Features at strides (4, 8, 16, 32) -> (mask_features [B, D, H/4, W/4],
    multi-scale features [stride 32, 16, 8], each [B, D, h, w])."""

    def __init__(self, in_channels: list[int], dim: int = 256, layers: int = 6, heads: int = 8,
                 points: int = 4, ffn_dim: int = 1024, mask_dim: int = 256):
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError("the pixel decoder takes 4 feature maps (strides 4, 8, 16, 32)")
        self.dim, self.levels = dim, 3
        # input projections of the 3 coarse levels, listed coarse -> fine (32, 16, 8)
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, dim, 1), _norm(dim)) for c in reversed(in_channels[1:]))
        self.level_embed = nn.Parameter(torch.zeros(self.levels, dim))
        self.encoder = nn.ModuleList(
            DeformableEncoderLayer(dim, heads, self.levels, points, ffn_dim) for _ in range(layers))
        self.lateral = nn.Sequential(nn.Conv2d(in_channels[0], dim, 1, bias=False), _norm(dim))
        self.output = nn.Sequential(nn.Conv2d(dim, dim, 3, padding=1, bias=False), _norm(dim),
                                    nn.ReLU(inplace=True))
        self.mask_features = nn.Conv2d(dim, mask_dim, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialize the projections and level embeddings as Mask2Former does."""
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)
        nn.init.normal_(self.level_embed)
        for conv in (self.lateral[0], self.output[0]):
            nn.init.kaiming_uniform_(conv.weight, a=1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)

    def forward(self, features: list[torch.Tensor], fine_projected: bool = False,
                project_masks: bool = True) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``fine_projected``: features[0] already went through ``lateral[0]``;
        ``project_masks`` False: the first output is the input of ``mask_features``
        ([B, dim, H/4, W/4]) instead of its output."""
        coarse = list(reversed(features[1:]))  # strides 32, 16, 8
        srcs, pos, shapes = [], [], []
        for lvl, (proj, f) in enumerate(zip(self.input_proj, coarse)):
            s = proj(f)
            h, w = s.shape[-2:]
            shapes.append((h, w))
            srcs.append(s.flatten(2).transpose(1, 2))
            p = sine_position_encoding(h, w, self.dim, device=s.device, dtype=s.dtype)
            pos.append(p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1))
        src = torch.cat(srcs, 1)
        pos_all = torch.cat(pos, 1)
        ref = reference_points(shapes, src.shape[0], src.device, src.dtype)
        for layer in self.encoder:
            src = layer(src, pos_all, ref, shapes)
        outs, start = [], 0
        for h, w in shapes:
            outs.append(src[:, start:start + h * w].transpose(1, 2).reshape(src.shape[0], self.dim, h, w))
            start += h * w
        fine = features[0]
        lateral = self.lateral[1](fine) if fine_projected else self.lateral(fine)
        y = lateral + F.interpolate(outs[-1], size=fine.shape[-2:], mode="bilinear",
                                    align_corners=False)
        y = self.output(y)
        return (self.mask_features(y) if project_masks else y), outs
