"""SAR physical descriptors of a tile (paper §3.2, docs/contracts.md §2): H_DE, ENL and R_LR.

All three are computed on what ``sar_io`` returns as ``phys``: the tile's first channel of
the model input, i.e. its band's log representation stretched with the scene's 1-99 %
percentiles (input contract 2). That is the same for the same ground in dB, intensity,
amplitude or an 8-bit quicklook (the paper's X' = log(1 + |X|) of the physical values is
not: one tile gave an ENL of 1021 as a quicklook and 10.2 in dB). Batched in torch on any
device, nodata excluded:

- ``H_DE`` directional entropy: Sobel gradients gx, gy; theta = atan2(gy, gx) quantized into
  ``bins`` equal bins over [-pi, pi); natural-log entropy of the histogram of the pixels whose
  gradient is non-zero. A gradient counts only where its whole 3x3 neighbourhood is valid.
  Range 0 .. ln(bins).
- ``ENL`` equivalent number of looks: (mean / std)^2 of the values over valid pixels.
- ``R_LR`` local roughness: the values averaged in ``block`` x ``block`` blocks (valid pixels only;
  blocks with no valid pixel left out; edge blocks may be partial), variance of the block means.

A descriptor that is undefined (no valid pixel, no non-zero gradient) is NaN in
:func:`raw_descriptors`; :func:`scale_descriptors` maps the raw values to O(1) for the router
and turns NaN into 0 (the neutral value).
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F

NAMES = ("H_DE", "ENL", "R_LR")

# scaled = clamp((transform(raw) - offset) / scale, -5, 5); transform: identity | log | log1p.
# H_DE / ln(36) lies in 0..1. Under input contract 2 the descriptors see the stretched log
# representation (0..1, the same in every value domain). Measured at 256 px tiles (median,
# 5-95 %): ENL 7.8 (2.9-13) on OMBRIA quicklooks, 4.5 (0-18) on ETCI tiles, 8.1 (3.7-15) on
# the Sen1Floods11 dB chip; R_LR 0.036 (0.014-0.075), 0.008 (0-0.05), 0.015 (0.007-0.026).
# Both are logged and centred so that these land in about -1.5..1. Stored in the model config
# (descriptors.scaling) and hence in every checkpoint.
DEFAULT_SCALING: dict = {
    "H_DE": {"transform": "identity", "offset": 0.0, "scale": math.log(36.0)},
    "ENL": {"transform": "log", "offset": 2.0, "scale": 1.0},
    "R_LR": {"transform": "log", "offset": -3.8, "scale": 1.0},
}
SCALED_LIMIT = 5.0
DEFAULT_CONFIG: dict = {"bins": 36, "block": 16, "scaling": DEFAULT_SCALING}

_ENL_MAX = 1e6  # a constant tile has std 0: ENL is capped instead of infinite


def _as_batch(phys: torch.Tensor, valid: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    phys = torch.as_tensor(phys)
    if phys.dim() == 2:
        phys = phys.unsqueeze(0)
        valid = None if valid is None else torch.as_tensor(valid).unsqueeze(0)
    if phys.dim() != 3:
        raise ValueError(f"phys must be [B, H, W] or [H, W], got {tuple(phys.shape)}")
    phys = phys.float()
    finite = torch.isfinite(phys)
    valid = finite if valid is None else (torch.as_tensor(valid, device=phys.device).bool() & finite)
    if valid.shape != phys.shape:
        raise ValueError(f"valid {tuple(valid.shape)} does not match phys {tuple(phys.shape)}")
    return torch.where(valid, phys, torch.zeros((), device=phys.device)), valid


def sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel gx, gy [B, H-2, W-2] of x [B, H, W] (interior pixels, no padding).

    Written as differences of shifted slices rather than a convolution: a direction that is
    exactly horizontal or vertical (a bin edge of the histogram) then gives an exactly zero
    component instead of convolution round-off of either sign.
    """
    dx = x[:, :, 2:] - x[:, :, :-2]          # [B, H, W-2]
    dy = x[:, 2:, :] - x[:, :-2, :]          # [B, H-2, W]
    gx = dx[:, :-2] + 2 * dx[:, 1:-1] + dx[:, 2:]
    gy = dy[:, :, :-2] + 2 * dy[:, :, 1:-1] + dy[:, :, 2:]
    return gx, gy


def directional_entropy(phys: torch.Tensor, valid: torch.Tensor, bins: int = 36) -> torch.Tensor:
    """H_DE [B] (nats) of X' [B, H, W] with validity mask [B, H, W]; NaN without gradients."""
    b = phys.shape[0]
    if phys.shape[-1] < 3 or phys.shape[-2] < 3:
        return torch.full((b,), float("nan"), device=phys.device)
    gx, gy = sobel(phys)
    # a gradient is valid where all 9 pixels of its neighbourhood are valid (3x3 erosion)
    interior = -F.max_pool2d(-(valid.float().unsqueeze(1)), 3, stride=1).squeeze(1) > 0.5
    counted = interior & ((gx != 0) | (gy != 0))
    theta = torch.atan2(gy, gx)
    index = ((theta + math.pi) * (bins / (2 * math.pi))).long().clamp_(0, bins - 1)
    index = index + torch.arange(b, device=phys.device).view(b, 1, 1) * bins
    hist = torch.bincount(index[counted], minlength=b * bins).view(b, bins).float()
    total = hist.sum(dim=1, keepdim=True)
    p = hist / total.clamp_min(1.0)
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(dim=1)
    return torch.where(total.squeeze(1) > 0, entropy, torch.full_like(entropy, float("nan")))


def equivalent_number_of_looks(phys: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """ENL [B] = (mean / std)^2 of X' over valid pixels (population std); NaN when none valid."""
    v = valid.flatten(1).float()
    x = phys.flatten(1)
    n = v.sum(dim=1)
    mean = (x * v).sum(dim=1) / n.clamp_min(1.0)
    var = (((x - mean[:, None]) ** 2) * v).sum(dim=1) / n.clamp_min(1.0)
    enl = (mean ** 2 / var.clamp_min(1e-30)).clamp(max=_ENL_MAX)
    return torch.where(n > 0, enl, torch.full_like(enl, float("nan")))


def local_roughness(phys: torch.Tensor, valid: torch.Tensor, block: int = 16) -> torch.Tensor:
    """R_LR [B]: variance (population) of the block means of X' over blocks with valid pixels."""
    v = valid.float().unsqueeze(1)
    # ceil_mode keeps partial edge blocks; the pooling divisor cancels in the ratio
    sums = F.avg_pool2d(phys.unsqueeze(1) * v, block, stride=block, ceil_mode=True).flatten(1)
    counts = F.avg_pool2d(v, block, stride=block, ceil_mode=True).flatten(1)
    has = counts > 0
    means = torch.where(has, sums / counts.clamp_min(1e-30), torch.zeros_like(sums))
    m = has.float().sum(dim=1)
    mu = means.sum(dim=1) / m.clamp_min(1.0)
    var = (((means - mu[:, None]) ** 2) * has.float()).sum(dim=1) / m.clamp_min(1.0)
    return torch.where(m > 0, var, torch.full_like(var, float("nan")))


def raw_descriptors(phys: torch.Tensor, valid: Optional[torch.Tensor] = None, bins: int = 36,
                    block: int = 16) -> torch.Tensor:
    """Raw (H_DE, ENL, R_LR) [B, 3] float32 of X' ``phys`` [B, H, W] (or [H, W] -> [1, 3]).

    ``valid`` [B, H, W] bool (None: all finite pixels); non-finite pixels are always invalid.
    NaN where a descriptor is undefined (no valid pixel; no non-zero gradient for H_DE).
    """
    phys, valid = _as_batch(phys, valid)
    return torch.stack([directional_entropy(phys, valid, bins),
                        equivalent_number_of_looks(phys, valid),
                        local_roughness(phys, valid, block)], dim=1)


def scale_descriptors(raw: torch.Tensor, scaling: Optional[dict] = None) -> torch.Tensor:
    """Router inputs [B, 3]: (transform(raw) - offset) / scale per descriptor, clamped to
    +-5, NaN (undefined) -> 0.

    ``scaling`` maps each of H_DE/ENL/R_LR to {"transform": "identity"|"log"|"log1p",
    "offset", "scale"} (default :data:`DEFAULT_SCALING`).
    """
    scaling = scaling or DEFAULT_SCALING
    raw = torch.as_tensor(raw).float()
    columns = []
    for i, name in enumerate(NAMES):
        spec = scaling[name]
        col = raw[..., i]
        transform = spec.get("transform", "identity")
        if transform == "log":
            col = torch.log(col.clamp_min(1e-12))
        elif transform == "log1p":
            col = torch.log1p(col.clamp_min(0.0))
        elif transform != "identity":
            raise ValueError(f"unknown descriptor transform {transform!r} for {name}")
        col = (col - float(spec.get("offset", 0.0))) / float(spec.get("scale", 1.0))
        columns.append(col.clamp(-SCALED_LIMIT, SCALED_LIMIT))
    return torch.nan_to_num(torch.stack(columns, dim=-1), nan=0.0)


def unscale_descriptors(scaled, scaling: Optional[dict] = None):
    """The raw values (``ces descriptors``' units) behind scaled router inputs [..., 3]
    (numpy or float): the inverse of :func:`scale_descriptors` inside its clamp."""
    scaling = scaling or DEFAULT_SCALING
    scaled = np.asarray(scaled, np.float64)
    out = np.empty_like(scaled)
    for i, name in enumerate(NAMES):
        spec = scaling[name]
        col = scaled[..., i] * float(spec.get("scale", 1.0)) + float(spec.get("offset", 0.0))
        transform = spec.get("transform", "identity")
        out[..., i] = (np.exp(col) if transform == "log" else
                       np.expm1(col) if transform == "log1p" else col)
    return out


def compute_descriptors(phys: torch.Tensor, valid: Optional[torch.Tensor] = None,
                        config: Optional[dict] = None) -> torch.Tensor:
    """Scaled descriptors [B, 3] with ``config`` = {"bins", "block", "scaling"} (DEFAULT_CONFIG)."""
    config = config or DEFAULT_CONFIG
    raw = raw_descriptors(phys, valid, bins=int(config.get("bins", 36)),
                          block=int(config.get("block", 16)))
    return scale_descriptors(raw, config.get("scaling"))


def descriptor_map(scene_path, output, tile: int = 512, stride: Optional[int] = None,
                   bins: int = 36, block: int = 16, domain: Optional[str] = None, bands=None,
                   calibrated: Optional[bool] = None,
                   complex_part: str = "amplitude", overwrite: bool = False,
                   progress=None, batch: int = 8) -> dict:
    """Write raw H_DE / ENL / R_LR of each tile of a scene as a 3-band float32 GeoTIFF.

    Output pixel (i, j) = the tile whose top-left corner is scene pixel (j*stride, i*stride);
    transform = the scene's scaled by ``stride``; NaN (nodata) where a tile has no valid pixel
    (or a descriptor is undefined). Written atomically. Returns dict(tiles, tiles_valid,
    shape (rows, cols), summary {name: (min, median, max)} over finite values).
    """
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    from ..atomic import atomic_output, check_writable
    from ..errors import ParameterError
    from ..progress import ensure
    from . import sar_io

    stride = int(stride or tile)
    if tile < 3:
        raise ParameterError("tile", tile, "is too small (at least 3 pixels)")
    check_writable(output, overwrite)
    progress = ensure(progress)
    with sar_io.open_scene(scene_path, domain=domain, bands=bands, complex_part=complex_part,
                           calibrated=calibrated) as scene:
        rows, cols = -(-scene.height // stride), -(-scene.width // stride)  # cover the scene
        values = np.full((3, rows, cols), np.nan, np.float32)
        windows = [(i, j) for i in range(rows) for j in range(cols)]
        for start in range(0, len(windows), batch):
            chunk = windows[start:start + batch]
            reads = [scene.read_window(Window(j * stride, i * stride, tile, tile)) for i, j in chunk]
            phys = torch.from_numpy(np.stack([r.phys for r in reads]))
            valid = torch.from_numpy(np.stack([r.valid for r in reads]))
            raw = raw_descriptors(phys, valid, bins=bins, block=block).numpy()
            for (i, j), v in zip(chunk, raw):
                values[:, i, j] = v
            progress("descriptors", min(start + batch, len(windows)), len(windows))
        profile = {"driver": "GTiff", "width": cols, "height": rows, "count": 3,
                   "dtype": "float32", "nodata": float("nan"),
                   "transform": scene.transform @ rasterio.Affine.scale(stride, stride)}
        if scene.crs is not None:
            profile["crs"] = scene.crs
    with atomic_output(output, overwrite) as tmp:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(values)
            for band, name in enumerate(NAMES, start=1):
                dst.set_band_description(band, name)
            dst.update_tags(source=str(scene_path), tile=tile, stride=stride, bins=bins, block=block,
                            descriptors="H_DE directional entropy (nats); ENL (mean/std)^2; "
                                        "R_LR variance of block means; on log(1+|X|)")
    summary = {}
    for k, name in enumerate(NAMES):
        finite = values[k][np.isfinite(values[k])]
        summary[name] = ((float(finite.min()), float(np.median(finite)), float(finite.max()))
                         if finite.size else (float("nan"),) * 3)
    tiles_valid = int(np.isfinite(values).any(axis=0).sum())
    return {"tiles": rows * cols, "tiles_valid": tiles_valid, "shape": (rows, cols),
            "summary": summary}
