"""Earth-Adapter: parameter-efficient fine-tuning of a frozen backbone (the
Earth-Adapter / CrossEarth design, written from its published description).

After every backbone block l, the patch tokens P [B, N, C] on their grid (h, w) (not the
class token, not the registers) get

    P <- P + scale_l * delta,   delta = sum_k pi_k * MLP_k(T_k),   k in {tokens, low, high}

* T_tokens = P; T_low / T_high = the low / high spatial frequencies of P: a 2-D FFT over the
  token grid, a centred low-pass mask (a rectangle of round(cutoff * h) x round(cutoff * w)
  frequencies, a square on a square grid; at least one frequency), the real part of the
  inverse FFT; high = P - low, so that low + high = P exactly;
* MLP_k: Linear C -> r, ReLU, Linear r -> C (r = ``rank``, 64 by default); the last Linear
  starts at zero, so a new adapter leaves the backbone's output unchanged;
* pi [B, N, 3] = softmax(Linear C -> 3 (P)), a router per token;
* scale_l: a learnable scalar per block, starting at 0.1.

The backbone's own parameters stay frozen during adapter training (train/finetune.py);
the adapter lives in ``backbone.adapter`` and is saved in the same single-file checkpoint,
its settings in the backbone config (``adapter: {kind, rank, cutoff}``).
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .adapter_options import DEFAULTS, KIND  # noqa: F401 (also this module's API)


def frequency_split(tokens: torch.Tensor, grid: tuple[int, int], cutoff: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) [B, N, C] of patch tokens [B, N, C] laid out row-major on ``grid`` (h, w)."""
    b, n, c = tokens.shape
    h, w = grid
    if h * w != n:
        raise ValueError(f"{n} tokens do not fill a {h} x {w} grid")
    x = tokens.float().reshape(b, h, w, c)
    spec = torch.fft.fftshift(torch.fft.fft2(x, dim=(1, 2)), dim=(1, 2))
    mh, mw = max(1, round(cutoff * h)), max(1, round(cutoff * w))
    mask = torch.zeros(h, w, dtype=torch.bool, device=tokens.device)
    # centred on the zero frequency, which fftshift puts at index h // 2, w // 2
    top, left = h // 2 - mh // 2, w // 2 - mw // 2
    mask[top:top + mh, left:left + mw] = True
    spec = spec * mask[None, :, :, None]
    low = torch.fft.ifft2(torch.fft.ifftshift(spec, dim=(1, 2)), dim=(1, 2)).real
    low = low.reshape(b, n, c).to(tokens.dtype)
    return low, tokens - low


class Bottleneck(nn.Module):
    """Linear C -> r, ReLU, Linear r -> C (the last starting at zero)."""

    def __init__(self, dim: int, rank: int):
        super().__init__()
        self.down = nn.Linear(dim, rank)
        self.up = nn.Linear(rank, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(torch.relu(self.down(x)))


class EarthAdapterLayer(nn.Module):
    """One block's adapter: patch tokens [B, N, C] on ``grid`` -> adapted tokens [B, N, C]."""

    def __init__(self, dim: int, rank: int = 64, cutoff: float = 0.3):
        super().__init__()
        self.cutoff = float(cutoff)
        self.router = nn.Linear(dim, 3)
        self.mlps = nn.ModuleList(Bottleneck(dim, rank) for _ in range(3))
        self.scale = nn.Parameter(torch.tensor(0.1))

    def forward(self, tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """tokens [B, N, C] + scale · (routed low-, high- and all-frequency MLPs) [B, N, C];
        ``grid`` the token grid (h, w)."""
        low, high = frequency_split(tokens, grid, self.cutoff)
        pi = torch.softmax(self.router(tokens), dim=-1)                   # [B, N, 3]
        delta = sum(pi[..., k:k + 1] * mlp(t)
                    for k, (mlp, t) in enumerate(zip(self.mlps, (tokens, low, high))))
        return tokens + self.scale * delta


class EarthAdapter(nn.Module):
    """One :class:`EarthAdapterLayer` per backbone block; ``config`` = {kind, rank, cutoff}."""

    def __init__(self, dim: int, depth: int, config: dict):
        super().__init__()
        cfg = {**DEFAULTS, **(config or {})}
        if cfg["kind"] != KIND:
            raise ValueError(f"unknown adapter kind {cfg['kind']!r} (known: {KIND})")
        if int(cfg["rank"]) < 1 or not 0.0 < float(cfg["cutoff"]) <= 1.0:
            raise ValueError(f"adapter rank must be >= 1 and cutoff in (0, 1], got {cfg}")
        self.config = {"kind": KIND, "rank": int(cfg["rank"]), "cutoff": float(cfg["cutoff"])}
        self.layers = nn.ModuleList(EarthAdapterLayer(dim, self.config["rank"], self.config["cutoff"])
                                    for _ in range(depth))

    def apply_after_block(self, i: int, tokens: torch.Tensor, prefix: int,
                          grid: tuple[int, int]) -> torch.Tensor:
        """Tokens [B, prefix + N, C] after block i with their N patch tokens adapted."""
        patches = self.layers[i](tokens[:, prefix:], grid)
        return torch.cat((tokens[:, :prefix], patches), dim=1)


__all__ = ["EarthAdapter", "EarthAdapterLayer", "frequency_split", "DEFAULTS", "KIND"]
