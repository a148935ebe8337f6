"""Helpers for the scene-engine tests: synthetic SAR GeoTIFFs and a pointwise stand-in model."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import rasterio
import torch
from rasterio.transform import from_origin
from rasterio.windows import Window

from crossearth_sar.core.products import vectorize
from crossearth_sar.core.scene.pixel_size import geod_of, is_geographic, unit_factor


def write_db_scene(path: Path, width: int, height: int, *, seed: int = 0, crs: str = "EPSG:32630",
                   transform=None, nodata_box: Optional[tuple[int, int, int, int]] = None,
                   bands: int = 1) -> Path:
    """A float32 dB scene (smooth blobs + speckle) with NaN nodata in ``nodata_box`` (r0, r1, c0, c1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = -12 + 6 * np.sin(xx / 23.0) * np.cos(yy / 17.0) + 4 * np.sin((xx + yy) / 41.0)
    data = np.stack([base + rng.normal(0, 1.5, base.shape) - 6 * b for b in range(bands)])
    data = data.astype(np.float32)
    if nodata_box is not None:
        r0, r1, c0, c1 = nodata_box
        data[:, r0:r1, c0:c1] = np.nan
    transform = transform or from_origin(500000.0, 4200000.0, 10.0, 10.0)
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=bands,
                       dtype="float32", nodata=float("nan"), crs=crs, transform=transform) as dst:
        dst.write(data)
    return path


class PointwiseModel(torch.nn.Module):
    """Logits are a fixed function of each pixel alone (1×1 convolutions, float64 inside)."""

    def __init__(self, classes: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.nn.Parameter(torch.randn(8, 3, generator=g, dtype=torch.float64) * 3)
        self.b1 = torch.nn.Parameter(torch.randn(8, generator=g, dtype=torch.float64))
        self.w2 = torch.nn.Parameter(torch.randn(classes, 8, generator=g, dtype=torch.float64))
        self.register_buffer("centres", torch.linspace(0.25, 0.75, classes, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, 3, h, w] → logits [B, K, h, w]: nearest class centre of the mean + a random MLP."""
        x = x.double()
        h = torch.tanh(torch.einsum("oc,bchw->bohw", self.w1, x) + self.b1[None, :, None, None])
        near = -40.0 * (x.mean(1, keepdim=True) - self.centres[None, :, None, None]) ** 2
        return near + 0.3 * torch.einsum("oc,bchw->bohw", self.w2, h)

    def predict(self, x: torch.Tensor, phys: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The tiler's predict callable: probabilities [B, K, h, w] as float32."""
        return torch.softmax(self(x), dim=1).float()


class PointwiseSegmenter(torch.nn.Module):
    """The pipeline's model interface (classes, config, compute_descriptors, predict_proba)
    around :class:`PointwiseModel`; descriptors are the real ones (core.scene.descriptors)."""

    def __init__(self, classes: list[dict], train_stats: Optional[dict] = None, seed: int = 0):
        super().__init__()
        from crossearth_sar.core.scene import descriptors

        self.net = PointwiseModel(len(classes), seed=seed)
        self.config = {"kind": "model", "classes": classes,
                       "descriptors": {**descriptors.DEFAULT_CONFIG, "train_stats": train_stats}}

    @property
    def classes(self) -> list[dict]:
        return self.config["classes"]

    def compute_descriptors(self, phys: torch.Tensor, valid: Optional[torch.Tensor] = None):
        from crossearth_sar.core.scene import descriptors

        return descriptors.compute_descriptors(phys, valid, self.config["descriptors"])

    def predict_proba(self, x: torch.Tensor, descriptors: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=1).float()


def tiny_model(classes: list[dict]):
    """A randomly initialized CrossEarthSAR ti with a very small head (fast on a CPU)."""
    from crossearth_sar.core.models import model

    torch.manual_seed(0)
    return model.build("ti", experts=2, classes=classes, hidden_dim=32, mask_dim=32,
                       num_queries=8, dec_layers=1, enc_layers=1, dec_ffn_dim=64,
                       enc_ffn_dim=64, enc_heads=4, dec_heads=4)


def raster_class_areas_m2(path: str | os.PathLike, band_rows: Optional[int] = None) -> dict[int, float]:
    """Area in m² of each class value of a class raster (geodesic per row on geographic CRSs)."""
    totals: dict[int, float] = {}
    with rasterio.open(path) as src:
        band_rows = band_rows or vectorize.rows_per_band(src.width)
        geographic = is_geographic(src.crs)
        geod = geod_of(src.crs) if geographic else None
        flat = abs(src.transform.a * src.transform.e - src.transform.b * src.transform.d) \
            * unit_factor(src.crs) ** 2
        for r0 in range(0, src.height, band_rows):
            h = min(band_rows, src.height - r0)
            arr = src.read(1, window=Window(0, r0, src.width, h))
            for r in range(h):
                if geographic:
                    x0, y0 = src.transform @ (0, r0 + r)
                    x1, y1 = src.transform @ (1, r0 + r + 1)
                    ring = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
                    area = abs(geod.polygon_area_perimeter(*zip(*ring))[0])
                else:
                    area = flat
                vals, counts = np.unique(arr[r], return_counts=True)
                for v, n in zip(vals.tolist(), counts.tolist()):
                    if v != vectorize.NODATA_CLASS:
                        totals[v] = totals.get(v, 0.0) + n * area
    return totals
