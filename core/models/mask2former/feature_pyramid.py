"""ViT features (4 maps at stride 14) -> the 4 strides the pixel decoder expects (x4, x2, x1, x0.5).

``interpolate``: bilinear x4 / x2, identity, 2x2 max-pool (Rein / CrossEarth; no parameters).
``deconv``: learned 2x2 transposed convolutions for x4 and x2 (mmseg Feature2Pyramid, ViTDet
style), identity, 2x2 max-pool: recovers sub-patch detail for the stride-"4" map.

Inference can fold the pixel decoder's 1x1 lateral projection of the stride-4 map into the
pyramid (``fine_projection``): both are linear, so the last transposed convolution of ``deconv``
takes the composed weights (one [C, C', 2, 2] kernel instead of [C, C, 2, 2] then [C', C]),
and ``interpolate`` projects at stride 14 before the x4 upsampling (bilinear weights sum to 1,
so the bias commutes too). Same answer to float rounding; on the CPU the transposed
convolutions also run in channels-last memory layout, which oneDNN computes without a copy.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

PYRAMIDS = ("interpolate", "deconv")


class FeaturePyramid(nn.Module):
    """list of 4 maps [B, C, h, w] -> [B, C, 4h, 4w], [B, C, 2h, 2w], [B, C, h, w], [B, C, ceil(h/2), ceil(w/2)]."""

    def __init__(self, dim: int, mode: str = "interpolate"):
        super().__init__()
        if mode not in PYRAMIDS:
            raise ValueError(f"pyramid must be one of {', '.join(PYRAMIDS)}, got {mode!r}")
        self.mode = mode
        if mode == "deconv":
            self.up4 = nn.Sequential(nn.ConvTranspose2d(dim, dim, 2, stride=2),
                                     nn.GroupNorm(min(32, dim), dim), nn.GELU(),
                                     nn.ConvTranspose2d(dim, dim, 2, stride=2))
            self.up2 = nn.ConvTranspose2d(dim, dim, 2, stride=2)

    def forward(self, features: list[torch.Tensor],
                fine_projection: Optional[nn.Conv2d] = None) -> list[torch.Tensor]:
        """``fine_projection``: a 1x1 convolution C -> C' applied to the x4 map (inference:
        the first map then has C' channels)."""
        f0, f1, f2, f3 = features
        if self.mode == "deconv" and fine_projection is None:
            u4, u2 = self.up4(f0), self.up2(f1)
        elif self.mode == "deconv":
            f0, f1 = _channels_last(f0), _channels_last(f1)
            last = self.up4[-1]
            weight, bias = _compose(last.weight, last.bias, fine_projection)
            u4 = F.conv_transpose2d(self.up4[:-1](f0), weight, bias, stride=last.stride)
            u2 = self.up2(f1)
        else:
            if fine_projection is not None:
                f0 = fine_projection(f0)
            u4 = F.interpolate(f0, scale_factor=4.0, mode="bilinear", align_corners=False)
            u2 = F.interpolate(f1, scale_factor=2.0, mode="bilinear", align_corners=False)
        return [u4, u2, f2, F.max_pool2d(f3, kernel_size=2, stride=2, ceil_mode=True)]


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """x [B, C, H, W] in channels-last layout on the CPU (oneDNN's fast layout), else as is."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" else x


def _compose(weight: torch.Tensor, bias: Optional[torch.Tensor],
             projection: nn.Conv2d) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """A transposed convolution's weight [C_in, C, kh, kw] and bias [C], followed by the 1x1
    ``projection`` C -> C', as one transposed convolution: ([C_in, C', kh, kw], [C'] or None)."""
    p = projection.weight.flatten(1)  # [C', C]
    composed = torch.einsum("icjk,oc->iojk", weight, p)
    b = p @ bias if bias is not None else None
    if projection.bias is not None:
        b = projection.bias if b is None else b + projection.bias
    return composed, b
