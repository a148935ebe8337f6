"""Point sampling of mask logits and targets (PointRend), for the matcher and the mask losses."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def point_sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values of ``maps`` [N, C, H, W] at ``coords`` [N, P, 2] -> [N, C, P].

    ``coords`` are (x, y) in [0, 1] relative to the whole map (0 = left/top edge, 1 = right/
    bottom edge; the centre of pixel (i, j) of an h x w map is ((j + .5)/w, (i + .5)/h)).
    Outside the map the value is 0.
    """
    grid = (2.0 * coords - 1.0).unsqueeze(2).to(maps.dtype)  # [N, P, 1, 2]
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False).squeeze(3)


def uncertain_point_coords(logits: torch.Tensor, num_points: int, oversample_ratio: float = 3.0,
                           importance_sample_ratio: float = 0.75,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Points where the mask logits [N, 1, H, W] are least certain -> coords [N, num_points, 2].

    Draws ``num_points * oversample_ratio`` uniform points, keeps the
    ``importance_sample_ratio * num_points`` with the smallest |logit| and fills the rest with
    fresh uniform points (Mask2Former's importance sampling).
    """
    n = logits.shape[0]
    num_sampled = max(int(num_points * oversample_ratio), 1)
    coords = torch.rand(n, num_sampled, 2, device=logits.device, generator=generator)
    uncertainty = -point_sample(logits, coords).abs()[:, 0, :]  # [N, S]
    num_uncertain = min(int(importance_sample_ratio * num_points), num_sampled)
    num_random = num_points - num_uncertain
    idx = torch.topk(uncertainty, k=num_uncertain, dim=1).indices
    chosen = torch.gather(coords, 1, idx[:, :, None].expand(n, num_uncertain, 2))
    if num_random > 0:
        extra = torch.rand(n, num_random, 2, device=logits.device, generator=generator)
        chosen = torch.cat((chosen, extra), dim=1)
    return chosen


def pixel_center_coords(height: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """The (x, y) centres of every pixel of an height x width map: [height * width, 2] in (0, 1)."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((gx.flatten(), gy.flatten()), dim=1)
