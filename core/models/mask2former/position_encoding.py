"""Fixed 2-D sine positional encoding (DETR / Mask2Former style, normalized coordinates)."""
from __future__ import annotations

import math

import torch


def sine_position_encoding(height: int, width: int, dim: int, *, temperature: float = 10000.0,
                           device: torch.device | None = None,
                           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sine/cosine encoding of pixel positions: [1, dim, height, width] (dim even).

    Half of the channels encode y, half encode x; positions are normalized to (0, 2*pi], so
    the encoding does not depend on the absolute feature-map size.
    """
    if dim % 2:
        raise ValueError(f"positional encoding dim must be even, got {dim}")
    feats = dim // 2
    eps = 1e-6
    y = torch.arange(1, height + 1, device=device, dtype=torch.float32)
    x = torch.arange(1, width + 1, device=device, dtype=torch.float32)
    y = y / (height + eps) * 2 * math.pi
    x = x / (width + eps) * 2 * math.pi
    k = torch.arange(feats, device=device, dtype=torch.float32)
    freqs = temperature ** (2 * torch.div(k, 2, rounding_mode="floor") / feats)
    py = y[:, None] / freqs  # [H, feats]
    px = x[:, None] / freqs  # [W, feats]
    py = torch.stack((py[:, 0::2].sin(), py[:, 1::2].cos()), dim=2).flatten(1)
    px = torch.stack((px[:, 0::2].sin(), px[:, 1::2].cos()), dim=2).flatten(1)
    pos = torch.cat((py[:, None, :].expand(height, width, feats),
                     px[None, :, :].expand(height, width, feats)), dim=2)
    return pos.permute(2, 0, 1).unsqueeze(0).to(dtype)
