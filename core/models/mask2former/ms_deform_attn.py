"""Multi-scale deformable attention (Deformable DETR) in pure PyTorch.

No compiled operator. Two samplers with the same answer (to float rounding):

* :func:`deformable_sample` (training, and every device but the CPU): bilinear samples via
  ``grid_sample``, weighted and summed; differentiable everywhere.
* :func:`gathered_sample` (inference on the CPU, about 3x faster there): the 4 bilinear taps of
  every sampling point, their bilinear weights times the attention weights, summed by one
  ``embedding_bag`` over zero-padded value maps; no [B*M, Dh, Nq, L, P] temporaries.
"""
from __future__ import annotations

import math
from typing import NamedTuple

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


def gathered_sample(value: torch.Tensor, shapes: list[tuple[int, int]], px: torch.Tensor,
                    py: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """:func:`deformable_sample` as one weighted gather (``embedding_bag``) per bilinear tap.

    value [B, Nv, M, Dh] as there; px, py [B, Nq, M, L, P] the sampling positions in each
    level's pixel index coordinates (pixel centre i at i; location * size - 0.5), weights
    [B, Nq, M, L, P] -> [B, Nq, M * Dh]. Zero padding outside the maps, as grid_sample's.
    px and py are overwritten (they are scratch).

    Every per-point constant is a row of M * L * P values broadcast over the B * Nq rows, the
    one broadcast pattern that element-wise CPU kernels run at full speed.
    """
    return gather_from_table(padded_table(value, shapes, px.shape[-1]), px, py, weights)


class ValueTable(NamedTuple):
    """The value maps of every level, zero-padded, as the rows of one embedding table, and
    the per-column constants of gathering from it (columns (m, l, p), M * L * P of them):

    * ``table`` [(B * Np) * M, Dh], row ((b * Np + position) * M + m), Np = ``offset`` padded
      positions per batch item;
    * ``x_max``, ``y_max`` [M * L * P]: each level's width and height (positions are clamped
      to [-1, size]);
    * ``row`` [M * L * P]: one padded row of the level, in table rows;
    * ``first`` [M * L * P]: the table row of tap (0, 0) at position (0, 0) within a batch
      item, (level start + w + 4) * M + m.
    """

    table: torch.Tensor
    offset: int
    x_max: torch.Tensor
    y_max: torch.Tensor
    row: torch.Tensor
    first: torch.Tensor


def padded_table(value: torch.Tensor, shapes: list[tuple[int, int]], points: int) -> ValueTable:
    """value [B, Nv, M, Dh] (levels flattened in ``shapes`` order) -> its :class:`ValueTable`
    for ``points`` sampling points per level and head.

    Each level is padded with one zero row/column before and two after, so that a position
    clamped to [-1, size] has its 4 taps inside the padded map (clamping changes nothing:
    outside [-1, size] all taps are zeros, at the clamp the inner taps get weight 0).
    """
    b, _, heads, dh = value.shape
    levels = len(shapes)
    tables, starts, start, offset = [], [], 0, 0
    for h, w in shapes:
        padded = value.new_zeros(b, h + 3, w + 3, heads, dh)
        padded[:, 1:h + 1, 1:w + 1] = value[:, start:start + h * w].view(b, h, w, heads, dh)
        tables.append(padded.view(b, -1, heads, dh))
        starts.append(offset)
        start += h * w
        offset += (h + 3) * (w + 3)

    def per_column(per_level) -> torch.Tensor:
        """[M, L, P]: per_level[l] for the columns of level l."""
        row = torch.tensor(per_level, dtype=value.dtype, device=value.device).view(1, levels, 1)
        return row.expand(heads, levels, points)

    head = torch.arange(heads, dtype=value.dtype, device=value.device).view(heads, 1, 1)
    first = per_column([(s + w + 4) * heads for s, (_, w) in zip(starts, shapes)]) + head
    return ValueTable(torch.cat(tables, 1).view(-1, dh), offset,
                      per_column([w for _, w in shapes]).reshape(-1),
                      per_column([h for h, _ in shapes]).reshape(-1),
                      per_column([(w + 3) * heads for _, w in shapes]).reshape(-1),
                      first.reshape(-1))


def gather_from_table(values: ValueTable, px: torch.Tensor, py: torch.Tensor,
                      weights: torch.Tensor) -> torch.Tensor:
    """:func:`gathered_sample` on a :class:`ValueTable` (built once, sampled by any number of
    query chunks): px, py, weights [B, Nq, M, L, P] -> [B, Nq, M * Dh]."""
    b, nq, heads, levels, points = px.shape
    k = heads * levels * points
    table, offset = values.table, values.offset
    dh, dtype = table.shape[1], table.dtype
    px, py = px.view(b * nq, k), py.view(b * nq, k)
    px = torch.minimum(px.clamp_min_(-1.0), values.x_max)
    py = torch.minimum(py.clamp_min_(-1.0), values.y_max)
    x0, y0 = px.floor(), py.floor()
    fx, fy = px.sub_(x0), py.sub_(y0)
    # table row of tap (0, 0): first + y * row + x * M, plus the batch item's rows
    local = y0.mul_(values.row).add_(x0, alpha=heads).add_(values.first).int()  # exact: < 2^24 per item
    local = local.view(b, nq * k).add_(
        torch.arange(b, dtype=torch.int32, device=px.device).view(b, 1) * (offset * heads)
    ).view(b * nq, k)
    w = weights.reshape(b * nq, k)
    bottom = w * fy
    top = w - bottom
    out = None
    for index, wy in ((local, top), (local + values.row.int(), bottom)):  # one bag of L * P
        right = wy * fx                                                  # taps per (b, query,
        for idx, wt in ((index, wy.sub_(right)), (index + heads, right)):  # head) and tap
            part = F.embedding_bag(idx.view(b * nq * heads, levels * points), table,
                                   per_sample_weights=wt.view(b * nq * heads, -1).to(dtype),
                                   mode="sum")
            out = part if out is None else out.add_(part)
    return out.view(b, nq, heads * dh)


class MultiScaleDeformableAttention(nn.Module):
    """Each query attends to ``points`` learned offsets around its reference point per level/head.

    In eval mode on the CPU (with ``fast_inference``) the samples are gathered
    (:func:`gathered_sample`); otherwise ``grid_sample`` (:func:`deformable_sample`). Both give
    the same result.
    """

    fast_inference = True

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

    def _pixel_positions(self, query: torch.Tensor, reference_points: torch.Tensor,
                         shapes: list[tuple[int, int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampling positions (x, y), each [B, Nq, M, L, P], in each level's pixel index
        coordinates: reference * size - 0.5 + offset, the x and y rows of
        ``sampling_offsets`` as two matrix products and the reference term as a rank-1
        update per level (no [.., 2] interleaving, no inner broadcasts)."""
        b, nq, d = query.shape
        m, lv, p = self.heads, self.levels, self.points
        weight = self.sampling_offsets.weight.view(m, lv, p, 2, d)
        bias = self.sampling_offsets.bias.view(m, lv, p, 2)
        q = query.reshape(b * nq, d)
        out = []
        for c in (0, 1):  # x, y
            pos = torch.addmm(bias[..., c].reshape(-1) - 0.5, q, weight[..., c, :].reshape(-1, d).t())
            for lvl, (h, w) in enumerate(shapes):
                scale = query.new_zeros(m, lv, p)
                scale[:, lvl] = w if c == 0 else h
                pos.addr_(reference_points[:, :, lvl, c].reshape(-1), scale.view(-1))
            out.append(pos.view(b, nq, m, lv, p))
        return out[0], out[1]

    def gathers(self, query: torch.Tensor) -> bool:
        """Whether this call samples by the gathered path (eval mode on the CPU, switch on)."""
        return not self.training and self.fast_inference and query.device.type == "cpu"

    def _values(self, value: torch.Tensor) -> torch.Tensor:
        """Projected values per head: [B, Nv, D] -> [B, Nv, M, D / M]."""
        b, nv, _ = value.shape
        return self.value_proj(value).view(b, nv, self.heads, self.dim // self.heads)

    def _weights(self, query: torch.Tensor) -> torch.Tensor:
        """Attention weights, softmax over each head's L * P points: [B, Nq, M, L, P]."""
        b, nq, _ = query.shape
        m, lv, p = self.heads, self.levels, self.points
        return self.attention_weights(query).view(b, nq, m, lv * p).softmax(-1).view(b, nq, m, lv, p)

    def value_table(self, value: torch.Tensor, shapes: list[tuple[int, int]]) -> ValueTable:
        """The projected values [B, Nv, D] as the gathered path's table (build once per layer)."""
        return padded_table(self._values(value), shapes, self.points)

    def attend(self, query: torch.Tensor, reference_points: torch.Tensor, values: ValueTable,
               shapes: list[tuple[int, int]]) -> torch.Tensor:
        """The gathered path for any subset of the queries: query [B, n, D],
        reference_points [B, n, L, 2] -> [B, n, D]."""
        px, py = self._pixel_positions(query, reference_points, shapes)
        return self.output_proj(gather_from_table(values, px, py, self._weights(query)))

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor, value: torch.Tensor,
                shapes: list[tuple[int, int]]) -> torch.Tensor:
        """query [B, Nq, D], reference_points [B, Nq, L, 2] (x, y in [0, 1]),
        value [B, Nv, D] (all levels, flattened) -> [B, Nq, D]."""
        if self.gathers(query):
            return self.attend(query, reference_points, self.value_table(value, shapes), shapes)
        b, nq, _ = query.shape
        m, lv, p = self.heads, self.levels, self.points
        offsets = self.sampling_offsets(query).view(b, nq, m, lv, p, 2)  # in level pixels
        size = torch.tensor([[w, h] for h, w in shapes], dtype=query.dtype,
                            device=query.device)  # [L, 2] as (x, y)
        locations = (reference_points[:, :, None, :, None, :]
                     + offsets / size[None, None, None, :, None, :])
        return self.output_proj(deformable_sample(self._values(value), shapes, locations,
                                                  self._weights(query)))
