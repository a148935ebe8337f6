"""Full-resolution mask refinement: the radar's own edges in the class map.

Mask2Former predicts its masks at a quarter of the input resolution; upsampled, they are
smooth blobs that cut the corners of straight field and shore edges. The refiner is a light
fully convolutional head at the input's full resolution:

    coarse class log-probabilities [B, K, h, w] (the Mask2Former semantic inference at the
    mask resolution, h, w ~ H/4, W/4), upsampled bilinearly to [B, K, H, W]
    + the model input x [B, C, H, W] (0..1, the scene's representation, core/scene/sar_io.py)
    -> class logits [B, K, H, W] = coarse log-probabilities + a learnt correction.

The correction comes from 3 x 3 convolutions of ``width`` channels with dilations 1, 2, 4
(receptive field 15 px: enough to see which side of an edge a pixel lies on through
speckle, too small to redraw the map). Its last layer starts at zero, so a refiner added to
a trained model leaves its predictions unchanged until it is trained.

Cost at 512 x 512 with width 16: about 1.4 GMAC per window (docs/performance.md).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: the refiner's defaults (``model.config["refine"]``)
REFINE_DEFAULTS: dict = {"width": 16, "dilations": [1, 2, 4], "loss_weight": 2.0, "edge_weight": 4.0}


class MaskRefiner(nn.Module):
    """(coarse [B, K, H, W] log-probabilities, x [B, C, H, W] in 0..1) -> logits [B, K, H, W]."""

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 16,
                 dilations: tuple[int, ...] | list[int] = (1, 2, 4)):
        super().__init__()
        layers: list[nn.Module] = []
        channels = num_classes + in_channels
        for d in dilations:
            layers += [nn.Conv2d(channels, width, 3, padding=int(d), dilation=int(d)), nn.ReLU(inplace=True)]
            channels = width
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(channels, num_classes, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, coarse: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """coarse [B, K, H, W] log-probabilities, x [B, C, H, W] -> refined logits [B, K, H, W]."""
        z = torch.cat([coarse, (x.to(coarse.dtype) - 0.5) * 4.0], 1)
        return coarse + self.out(self.body(z))


def coarse_log_probabilities(probabilities: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Semantic probabilities [B, K, h, w] (sum 1 over K) -> log-probabilities [B, K, H, W]
    upsampled bilinearly to ``size`` (log first: the upsampled map stays a smooth score)."""
    logp = probabilities.clamp_min(1e-6).log()
    if tuple(logp.shape[-2:]) != tuple(size):
        logp = F.interpolate(logp, size=size, mode="bilinear", align_corners=False)
    return logp


def edge_weights(target: torch.Tensor, ignore_index: int, edge_weight: float) -> torch.Tensor:
    """Per-pixel loss weights [B, H, W]: 1, or ``1 + edge_weight`` within 2 px of a label edge
    (a pixel whose 5 x 5 neighbourhood holds another class); 0 where ``target`` is ignored."""
    t = target.float()[:, None]
    valid = (target != ignore_index)
    hi = F.max_pool2d(torch.where(valid[:, None], t, torch.full_like(t, -1.0)), 5, 1, 2)
    lo = -F.max_pool2d(torch.where(valid[:, None], -t, torch.full_like(t, -1e9)), 5, 1, 2)
    edge = (hi != lo)[:, 0] & valid
    return valid.float() * (1.0 + edge_weight * edge.float())


def refine_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int,
                edge_weight: float) -> torch.Tensor:
    """Edge-weighted cross-entropy of refined logits [B, K, H, W] against target [B, H', W']
    (class indexes, ``ignore_index`` ignored; resized by nearest neighbour when H' != H)."""
    if tuple(target.shape[-2:]) != tuple(logits.shape[-2:]):
        target = F.interpolate(target[:, None].float(), size=logits.shape[-2:], mode="nearest")[:, 0].long()
    w = edge_weights(target, ignore_index, edge_weight)
    ce = F.cross_entropy(logits.float(), target.clamp_max(logits.shape[1] - 1) * (target != ignore_index),
                         reduction="none")
    return (ce * w).sum() / w.sum().clamp_min(1.0)
