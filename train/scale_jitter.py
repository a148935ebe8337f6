"""Pixel-size jitter: one model for 10, 20 and 40 m scenes.

A Sentinel-1 GRD product is prepared at 20 m by default (core/scene/sentinel1/prepare.py),
EW products at 40 m, and GeoTIFFs come at 10 m. A batch of training crops is shown at one
pixel size: every crop multilooked f x f in linear power (f drawn from ``factors``), which is
what a scene prepared at f times the pixel spacing looks like: f² looks more (less speckle),
objects f times smaller in pixels. Crops [3, s, s] become [3, s/f, s/f].

Input contract 3 only (docs/contracts.md §3): the model input x is dB mapped by the fixed
DB_MAPPING (core/scene/contracts.py), so x is decoded to dB per channel, averaged in power over
the valid pixels of each block, and mapped back; the ratio channel of a dual-pol crop is
recomputed from the multilooked co- and cross-pol channels. A block is valid when at least
half its pixels are; its label is the class of most of its labelled pixels, or ignore (255)
when fewer than half are labelled.

The factor of a batch depends only on (seed, the smallest item index of the batch), so a
resumed run draws the same factors (train/datasets.py gives each crop its index).
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np

from ..core.scene.contracts import DB_MAPPING
from .classes import IGNORE_INDEX


def parse_factors(text: str) -> tuple[int, ...]:
    """"1,2,4" -> (1, 2, 4); ValueError unless positive integers."""
    factors = tuple(int(v) for v in str(text).replace(" ", "").split(",") if v)
    if not factors or min(factors) < 1:
        raise ValueError(f"{text!r} is not a list of positive integers such as 1,2,4")
    return tuple(sorted(set(factors)))


def _decode(x: np.ndarray, kinds: Sequence[str]) -> np.ndarray:
    """x [3, h, w] in 0..1 -> dB [3, h, w] with DB_MAPPING of each channel's kind."""
    lo = np.array([DB_MAPPING[k][0] for k in kinds], np.float32)[:, None, None]
    hi = np.array([DB_MAPPING[k][1] for k in kinds], np.float32)[:, None, None]
    return lo + x * (hi - lo)


def _encode(db: np.ndarray, kinds: Sequence[str]) -> np.ndarray:
    lo = np.array([DB_MAPPING[k][0] for k in kinds], np.float32)[:, None, None]
    hi = np.array([DB_MAPPING[k][1] for k in kinds], np.float32)[:, None, None]
    return np.clip((db - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def _blocks(a: np.ndarray, f: int) -> np.ndarray:
    """[..., h, w] -> [..., h/f, w/f, f*f] (h, w trimmed to multiples of f)."""
    h, w = a.shape[-2] // f * f, a.shape[-1] // f * f
    a = a[..., :h, :w]
    a = a.reshape(*a.shape[:-2], h // f, f, w // f, f)
    a = np.moveaxis(a, -3, -2)
    return a.reshape(*a.shape[:-2], f * f)


def multilook_sample(sample: dict[str, Any], f: int) -> dict[str, Any]:
    """One crop {x [3, s, s], phys, valid, target} multilooked f x f in power (module doc)."""
    if f == 1:
        return sample
    x, valid, target = sample["x"], sample["valid"], sample["target"]
    single = np.array_equal(x[0], x[1]) and np.array_equal(x[0], x[2])
    kinds = ("co", "co", "co") if single else ("co", "cross", "ratio")
    power = 10.0 ** (_decode(x[:2], kinds[:2]) / 10.0)
    vb = _blocks(valid, f)
    count = vb.sum(-1)
    mean = (_blocks(power, f) * vb).sum(-1) / np.maximum(count, 1)
    db = 10.0 * np.log10(np.maximum(mean, 1e-10))
    chans = [db[0], db[0], db[0]] if single else [db[0], db[1], db[0] - db[1]]
    ok = count * 2 >= f * f
    out_x = _encode(np.stack(chans), kinds)
    out_x[:, ~ok] = 0.0
    t = _blocks(target, f)
    labelled = t != IGNORE_INDEX
    classes = np.unique(t[labelled])
    new_t = np.full(t.shape[:-1], IGNORE_INDEX, np.uint8)
    if len(classes):
        votes = np.stack([((t == c) & labelled).sum(-1) for c in classes])
        new_t = classes[votes.argmax(0)].astype(np.uint8)
        new_t[(labelled.sum(-1) * 2 < f * f) | ~ok] = IGNORE_INDEX
    out = dict(sample)
    out.update(x=out_x, phys=out_x[0].copy(), valid=ok, target=new_t)
    return out


class ScaleJitter:
    """Multilook the crops of a batch by one factor drawn from ``factors`` (module doc);
    called on the list of samples before they are stacked (train/datasets.py ``collate``)."""

    def __init__(self, factors: Sequence[int] = (1, 2, 4), seed: int = 0):
        self.factors = tuple(int(f) for f in factors)
        self.seed = int(seed)

    def factor(self, samples: list[dict[str, Any]]) -> int:
        """The factor of a batch: from (seed, its smallest item index)."""
        first = min(int(s.get("index", 0)) for s in samples)
        return int(np.random.default_rng([self.seed, first, 7]).choice(self.factors))

    def __call__(self, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The batch's samples, multilooked by its factor."""
        f = self.factor(samples)
        return [multilook_sample(s, f) for s in samples]


def native_pixel_size(image, given: Optional[float] = None) -> Optional[float]:
    """Metres: ``given``, else the pixel size of ``image``'s georeferencing (mean of x and y,
    core/scene/pixel_size.py), else None (no CRS)."""
    if given:
        return float(given)
    import rasterio

    from ..core.scene.pixel_size import pixel_size_m

    with rasterio.open(image) as src:
        if src.crs is None:
            return None
        sx, sy = pixel_size_m(src.crs, src.transform, src.width, src.height)
    return round((sx + sy) / 2, 2)


def record_pixel_sizes(config: dict, factors: Sequence[int], native_m: Optional[float]) -> None:
    """Write the training pixel sizes into a model config's ``input``: ``multilook`` (the
    factors) and ``pixel_sizes_m`` (native x factors; absent when the native size is unknown)."""
    config["input"]["multilook"] = [int(f) for f in factors]
    if native_m:
        config["input"]["pixel_sizes_m"] = [round(native_m * f, 2) for f in factors]
    else:
        config["input"].pop("pixel_sizes_m", None)
