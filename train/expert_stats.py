"""Expert-activation statistics (paper Fig. 5 and 7): the fraction of tokens each expert of
each MoE layer received, as JSON and as a PNG heat map drawn with Pillow (a dependency of
the engine, so every install writes it; matplotlib is not needed)."""
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


CELL_W, CELL_H = 44, 20      # px per heat-map cell
MARGIN_L, MARGIN_T, MARGIN_B = 70, 28, 34


def _viridis(v: float) -> tuple[int, int, int]:
    """A viridis-like colour of v in 0..1 (5 anchor colours, linear between them)."""
    anchors = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98],
                        [253, 231, 37]], np.float64)
    stops = np.linspace(0.0, 1.0, len(anchors))
    return tuple(int(round(np.interp(v, stops, anchors[:, k]))) for k in range(3))  # type: ignore[return-value]


def plot_expert_report(report: dict, path: os.PathLike | str, title: Optional[str] = None,
                       overwrite: bool = True) -> Path:
    """A heat map (MoE layer x expert, fraction of tokens, each cell labelled with its value)
    written atomically as PNG."""
    from PIL import Image, ImageDraw, ImageFont

    layers = report.get("layers", [])
    if not layers:
        raise ValueError("no MoE layers to plot (a dense model)")
    frac = np.array([l["fractions"] for l in layers], np.float64)
    rows, cols = frac.shape
    top = max(1e-6, float(frac.max()))
    width = max(MARGIN_L + cols * CELL_W + 10, 260)
    height = MARGIN_T + rows * CELL_H + MARGIN_B
    image = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((6, 6), title or "fraction of tokens per expert", fill=(0, 0, 0), font=font)
    for (r, c), v in np.ndenumerate(frac):
        x0, y0 = MARGIN_L + c * CELL_W, MARGIN_T + r * CELL_H
        draw.rectangle([x0, y0, x0 + CELL_W - 1, y0 + CELL_H - 1], fill=_viridis(v / top))
        draw.text((x0 + 8, y0 + 4), f"{v:.2f}", font=font,
                  fill=(255, 255, 255) if v < 0.6 * top else (0, 0, 0))
    for r in range(rows):
        draw.text((6, MARGIN_T + r * CELL_H + 4), f"layer {r}", fill=(0, 0, 0), font=font)
    for c in range(cols):
        draw.text((MARGIN_L + c * CELL_W + 14, MARGIN_T + rows * CELL_H + 4), str(c),
                  fill=(0, 0, 0), font=font)
    draw.text((MARGIN_L, MARGIN_T + rows * CELL_H + 18), "expert (colour: share of tokens, "
              f"max {top:.2f})", fill=(0, 0, 0), font=font)
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        image.save(tmp, format="PNG")
    return path
