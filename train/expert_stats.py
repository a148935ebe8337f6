"""Expert-activation statistics (paper Fig. 5 and 7): the fraction of tokens each expert of
each MoE layer received, as JSON and as a PNG plot (matplotlib, imported only here)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..core.atomic import atomic_output


def expert_report(counts: torch.Tensor | np.ndarray) -> dict:
    """``counts`` [layers, experts] token counts -> {"experts", "layers": [{"layer", "tokens",
    "fractions" [experts]}]} (layer = 0-based index among the MoE layers)."""
    c = np.asarray(counts.cpu() if isinstance(counts, torch.Tensor) else counts, dtype=np.float64)
    if c.ndim != 2 or c.size == 0:
        return {"experts": 0, "layers": []}
    layers = []
    for i, row in enumerate(c):
        total = row.sum()
        frac = row / total if total > 0 else np.zeros_like(row)
        layers.append({"layer": i, "tokens": int(total),
                       "fractions": [round(float(v), 6) for v in frac]})
    return {"experts": int(c.shape[1]), "layers": layers}


def plot_expert_report(report: dict, path: os.PathLike | str, title: Optional[str] = None,
                       overwrite: bool = True) -> Path:
    """A heat map (MoE layer x expert, fraction of tokens) written atomically as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report.get("layers", [])
    if not layers:
        raise ValueError("no MoE layers to plot (a dense model)")
    frac = np.array([l["fractions"] for l in layers])
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * frac.shape[1], 1.0 + 0.35 * frac.shape[0]), dpi=120)
    im = ax.imshow(frac, cmap="viridis", vmin=0.0, vmax=max(1e-6, float(frac.max())), aspect="auto")
    for (r, c), v in np.ndenumerate(frac):
        ax.text(c, r, f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="white" if v < 0.6 * frac.max() else "black")
    ax.set_xlabel("expert")
    ax.set_ylabel("MoE layer")
    ax.set_xticks(range(frac.shape[1]))
    ax.set_yticks(range(frac.shape[0]))
    ax.set_title(title or "fraction of tokens per expert", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_output(path, overwrite=overwrite) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path
