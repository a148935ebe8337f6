"""ViT features (4 maps at stride 14) -> the 4 strides the pixel decoder expects (x4, x2, x1, x0.5).

``interpolate``: bilinear x4 / x2, identity, 2x2 max-pool (Rein / CrossEarth; no parameters).
``deconv``: learned 2x2 transposed convolutions for x4 and x2 (mmseg Feature2Pyramid, ViTDet
style), identity, 2x2 max-pool: recovers sub-patch detail for the stride-"4" map.
"""
from __future__ import annotations

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

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        f0, f1, f2, f3 = features
        if self.mode == "deconv":
            u4, u2 = self.up4(f0), self.up2(f1)
        else:
            u4 = F.interpolate(f0, scale_factor=4.0, mode="bilinear", align_corners=False)
            u2 = F.interpolate(f1, scale_factor=2.0, mode="bilinear", align_corners=False)
        return [u4, u2, f2, F.max_pool2d(f3, kernel_size=2, stride=2, ceil_mode=True)]
