"""Training augmentations of SAR samples; image, physical values, mask and labels stay aligned.

A sample is a dict of numpy arrays: x float32 [3, h, w] (0..1 model input), phys float32
[h, w] (x's first channel, for the descriptors), valid bool [h, w], target uint8 [h, w].
Random crops are chosen by :func:`train.crop_sampling.choose_window`; here:

* flips and rot90 (the 8 symmetries of the square);
* speckle: multiplicative Gamma noise of L looks (mean 1, variance 1/L) on the intensity;
* dB gain (contrast around the land level, or the tile mean) and offset jitter;
* single-pol dropout: a dual-pol sample is shown as its VV band alone (x = (VV, VV, VV)),
  exactly what core/scene/sar_io.py gives for a single-pol scene of the same ground, so one model
  learns both polarization set-ups.

Radiometric changes are made in dB: the model input x is a stretch of a dB-like log
representation r (core/scene/sar_io.py), so an intensity factor g adds 10·log10(g) / span to x,
with span the scene's stretch range in dB (input contract 3: the fixed dB mapping's 30 dB;
contract 2 quicklooks: :data:`QUICKLOOK_SPAN_DB` over 255 display values assumed).
``phys`` follows x's first channel.

The calibration jitter stays within what calibrated Sentinel-1 varies by for the same ground.
The offset, ±2 dB: absolute calibration about ±0.3 dB; gamma0 against sigma0 +0.6..+1.6 dB
over the IW swath (1/cos of 29-46° incidence); land backscatter across the swath about
±1.5 dB (0.1-0.2 dB per degree); the error of an estimated calibration from the water
fraction of a scene, about 1-2 dB (core/scene/sar_io.py). The gain, log-uniform in
:data:`GAIN_RANGE`: an estimated calibration maps every scene's 70-95 % quantile span onto
the same 4 dB (REFERENCE_DB, core/scene/contracts.py), while calibrated scenes span 2.1-5.2 dB there (the
four calibrated chips in ../shared/data: smooth farmland to textured towns and relief), so
true over estimated contrast lies in about 0.53-1.3. Under input contract 3 the gain acts
around the land level the estimate anchors (the middle of REFERENCE_DB), so that land
stays where a calibrated scene has it and water moves, as it does between real scenes;
under contract 2 around the tile mean.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..core.scene.contracts import REFERENCE_DB

QUICKLOOK_SPAN_DB = 25.0   # an 8-bit quicklook is assumed to stretch about 25 dB over 0..255
#: contrast factor range of the calibration jitter (module doc), drawn log-uniform
GAIN_RANGE = (0.53, 1.3)
#: the land level (dB) per channel kind that contract 3's gain acts around: the middle of
#: REFERENCE_DB for co- and cross-pol, their difference for the ratio channel
LAND_DB = {kind: (lo + hi) / 2 for kind, (lo, hi) in REFERENCE_DB.items()}
LAND_DB["ratio"] = LAND_DB["co"] - LAND_DB["cross"]


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
    if scene is None:
        return np.full(3, QUICKLOOK_SPAN_DB, np.float32)
    span = np.maximum(scene.stats[:, 1] - scene.stats[:, 0], 1e-3).astype(np.float32)
    if scene.domain == "quicklook" and not getattr(scene, "fixed_mapping", False):
        span = span * np.float32(QUICKLOOK_SPAN_DB / 255.0)
    return span


def _channel_db(d0: np.ndarray, d1: np.ndarray, d2: np.ndarray, composition: str) -> list:
    if composition == "single":
        return [d0, d0, d0]
    if composition == "dualpol":
        return [d0, d1, d0 - d1]
    return [d0, d1, d2]


def apply_db_shift(sample: dict[str, Any], db: list, scene) -> dict[str, Any]:
    """Add ``db[c]`` (scalar or [h, w], dB) to channel c of x; phys follows channel 0."""
    spans = _spans(scene)
    x = sample["x"].copy()
    for c in range(3):
        x[c] = x[c] + np.asarray(db[c], np.float32) / spans[c]
    valid = sample["valid"]
    x = np.clip(x, 0.0, 1.0)
    x[:, ~valid] = 0.0
    return {**sample, "x": x.astype(np.float32), "phys": x[0].copy()}


def single_pol(sample: dict[str, Any]) -> dict[str, Any]:
    """A dual-pol sample as its first band alone: x = (x0, x0, x0)."""
    x = np.repeat(sample["x"][:1], 3, axis=0)
    return {**sample, "x": x, "phys": x[0].copy()}


def speckle(sample: dict[str, Any], rng: np.random.Generator, looks: float, scene) -> dict[str, Any]:
    """Multiply the intensity by Gamma(L, 1/L) noise (independent per polarization)."""
    h, w = sample["valid"].shape
    comp = getattr(scene, "composition", "single")
    noise = [10.0 * np.log10(rng.gamma(looks, 1.0 / looks, size=(h, w))).astype(np.float32)
             for _ in range(1 if comp == "single" else 3)]
    while len(noise) < 3:
        noise.append(noise[0])
    return apply_db_shift(sample, _channel_db(*noise, comp), scene)


def _gain_centre(sample: dict[str, Any], scene) -> Optional[np.ndarray]:
    """x [3, 1, 1] that a contrast change keeps in place: the land level of each channel under
    contract 3's fixed dB mapping, else the tile's valid mean; None for an empty tile."""
    if getattr(scene, "fixed_mapping", False):
        kinds = scene.band_kinds()
        chans = [kinds[0]] * 3 if scene.composition == "single" else [kinds[0], kinds[1], "ratio"]
        lo, hi = scene.stats[:, 0], scene.stats[:, 1]
        land = np.float32([LAND_DB[k] for k in chans])
        return ((land - lo) / np.maximum(hi - lo, 1e-6)).astype(np.float32)[:, None, None]
    valid = sample["valid"]
    return sample["x"][:, valid].mean(axis=1)[:, None, None] if valid.any() else None


def gain_offset(sample: dict[str, Any], gain: float, offset_db: float, scene) -> dict[str, Any]:
    """Contrast ``gain`` in dB around the land level (contract 3) or the tile's valid mean of
    x (contract 2), then an ``offset_db`` shift."""
    x = sample["x"].copy()
    centre = _gain_centre(sample, scene)
    if centre is not None:
        x = centre + gain * (x - centre)
    comp = getattr(scene, "composition", "single")
    shift = _channel_db(offset_db, offset_db, offset_db, comp)
    return apply_db_shift({**sample, "x": x}, shift, scene)


@dataclass
class Augment:
    """The training augmentation: callable ``(sample, rng, scene) -> sample``.

    p_speckle: probability of speckle with looks drawn from [looks_min, looks_max];
    gain_range / offset_db: contrast factor (log-uniform) and dB shift (uniform) ranges,
    applied with p_jitter;
    p_single_pol: probability that a dual-pol sample is shown single-pol (first, before all).
    """

    geometric: bool = True
    p_speckle: float = 0.3
    looks_min: float = 1.0
    looks_max: float = 8.0
    p_jitter: float = 0.8
    gain_range: tuple[float, float] = GAIN_RANGE
    offset_db: float = 2.0
    p_single_pol: float = 0.3

    def __call__(self, sample: dict[str, Any], rng: np.random.Generator,
                 scene: Optional[Any] = None) -> dict[str, Any]:
        """A training sample (x, phys, valid, label arrays) augmented with draws from ``rng``;
        ``scene`` gives its polarization and calibration."""
        if (self.p_single_pol > 0 and getattr(scene, "composition", "single") == "dualpol"
                and rng.random() < self.p_single_pol):
            sample = single_pol(sample)
            scene = _AsSingle(scene)
        if self.geometric:
            sample = flip_rotate(sample, int(rng.integers(4)), bool(rng.integers(2)))
        if self.p_speckle > 0 and rng.random() < self.p_speckle:
            sample = speckle(sample, rng, float(rng.uniform(self.looks_min, self.looks_max)), scene)
        if self.p_jitter > 0 and rng.random() < self.p_jitter:
            gain = float(np.exp(rng.uniform(*np.log(self.gain_range))))
            sample = gain_offset(sample, gain,
                                 float(rng.uniform(-self.offset_db, self.offset_db)), scene)
        return sample


class _AsSingle:
    """A dual-pol scene seen as single-pol (its first channel's stretch on all three)."""

    def __init__(self, scene):
        self.domain = scene.domain
        self.fixed_mapping = getattr(scene, "fixed_mapping", False)
        self.composition = "single"
        self.stats = np.repeat(scene.stats[:1], 3, axis=0)
        self._kinds = scene.band_kinds()[:1] if self.fixed_mapping else ["co"]

    def band_kinds(self) -> list[str]:
        return self._kinds


NO_AUGMENT: Optional[Augment] = None
