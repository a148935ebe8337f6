"""Training augmentations of SAR samples; image, physical values, mask and labels stay aligned.

A sample is a dict of numpy arrays: x float32 [3, h, w] (0..1 model input), phys float32
[h, w] (log(1 + |X|) for the descriptors), valid bool [h, w], target uint8 [h, w]. Random
crops are chosen by :func:`train.data.choose_window`; here:

* flips and rot90 (the 8 symmetries of the square);
* speckle: multiplicative Gamma noise of L looks (mean 1, variance 1/L) on the intensity;
* dB gain (contrast around the tile mean) and offset jitter.

Radiometric changes are made in dB: the model input x is a stretch of a dB-like log
representation r (core/sar_io.py), so an intensity factor g adds 10·log10(g) / span to x,
with span the scene's stretch range in dB (quicklooks: :data:`QUICKLOOK_SPAN_DB` assumed).
``phys`` gets the same factor on the physical value, so the descriptors see the change.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

QUICKLOOK_SPAN_DB = 25.0   # an 8-bit quicklook is assumed to stretch about 25 dB over 0..255


def flip_rotate(sample: dict[str, Any], k: int, flip: bool) -> dict[str, Any]:
    """Rotate all arrays by k·90° and optionally flip left-right (last two axes)."""
    out = {}
    for key, a in sample.items():
        if isinstance(a, np.ndarray) and a.ndim >= 2:
            a = np.rot90(a, k, axes=(-2, -1))
            if flip:
                a = a[..., ::-1]
            a = np.ascontiguousarray(a)
        out[key] = a
    return out


def _spans(scene) -> np.ndarray:
    """dB per unit of x for each channel [3]."""
    if scene is None or scene.domain == "quicklook":
        return np.full(3, QUICKLOOK_SPAN_DB, np.float32)
    return np.maximum(scene.stats[:, 1] - scene.stats[:, 0], 1e-3).astype(np.float32)


def _channel_db(d0: np.ndarray, d1: np.ndarray, d2: np.ndarray, composition: str) -> list:
    if composition == "single":
        return [d0, d0, d0]
    if composition == "dualpol":
        return [d0, d1, d0 - d1]
    return [d0, d1, d2]


def apply_db_shift(sample: dict[str, Any], db: list, scene) -> dict[str, Any]:
    """Add ``db[c]`` (scalar or [h, w], dB) to channel c of x and the matching factor to phys."""
    spans = _spans(scene)
    x = sample["x"].copy()
    for c in range(3):
        x[c] = x[c] + np.asarray(db[c], np.float32) / spans[c]
    valid = sample["valid"]
    x = np.clip(x, 0.0, 1.0)
    x[:, ~valid] = 0.0
    X = np.expm1(sample["phys"].astype(np.float64))
    d0 = np.asarray(db[0], np.float64)
    domain = getattr(scene, "domain", "quicklook")
    if domain == "quicklook":
        X = np.clip(X + d0 * 255.0 / QUICKLOOK_SPAN_DB, 0.0, 255.0)
    elif domain == "complex":
        X = X * 10.0 ** (d0 / 20.0)
    else:
        X = X * 10.0 ** (d0 / 10.0)
    phys = np.where(valid, np.log1p(np.abs(X)), 0.0).astype(np.float32)
    return {**sample, "x": x.astype(np.float32), "phys": phys}


def speckle(sample: dict[str, Any], rng: np.random.Generator, looks: float, scene) -> dict[str, Any]:
    """Multiply the intensity by Gamma(L, 1/L) noise (independent per polarization)."""
    h, w = sample["valid"].shape
    comp = getattr(scene, "composition", "single")
    noise = [10.0 * np.log10(rng.gamma(looks, 1.0 / looks, size=(h, w))).astype(np.float32)
             for _ in range(1 if comp == "single" else 3)]
    while len(noise) < 3:
        noise.append(noise[0])
    return apply_db_shift(sample, _channel_db(*noise, comp), scene)


def gain_offset(sample: dict[str, Any], gain: float, offset_db: float, scene) -> dict[str, Any]:
    """Contrast ``gain`` around the tile's valid mean of x, then an ``offset_db`` shift."""
    x = sample["x"].copy()
    valid = sample["valid"]
    if valid.any():
        m = x[:, valid].mean(axis=1)[:, None, None]
        x = m + gain * (x - m)
    comp = getattr(scene, "composition", "single")
    shift = _channel_db(offset_db, offset_db, offset_db, comp)
    return apply_db_shift({**sample, "x": x}, shift, scene)


@dataclass
class Augment:
    """The training augmentation: callable ``(sample, rng, scene) -> sample``.

    p_speckle: probability of speckle with looks drawn from [looks_min, looks_max];
    gain_range / offset_db: contrast factor and dB shift ranges, applied with p_jitter.
    """

    geometric: bool = True
    p_speckle: float = 0.3
    looks_min: float = 1.0
    looks_max: float = 8.0
    p_jitter: float = 0.5
    gain_range: tuple[float, float] = (0.8, 1.2)
    offset_db: float = 2.0

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator,
                 scene: Optional[Any] = None) -> dict[str, Any]:
        if self.geometric:
            sample = flip_rotate(sample, int(rng.integers(4)), bool(rng.integers(2)))
        if self.p_speckle > 0 and rng.random() < self.p_speckle:
            sample = speckle(sample, rng, float(rng.uniform(self.looks_min, self.looks_max)), scene)
        if self.p_jitter > 0 and rng.random() < self.p_jitter:
            sample = gain_offset(sample, float(rng.uniform(*self.gain_range)),
                                 float(rng.uniform(-self.offset_db, self.offset_db)), scene)
        return sample


NO_AUGMENT: Optional[Augment] = None
