"""The calibration and thermal-noise look-up tables of a Sentinel-1 GRD product, interpolated
onto any block of the measurement's pixels.

sigma0 (linear power) = (DN² − N) / A²   (ESA's calibration of Level-1 products)

* A: the ``sigmaNought`` LUT of the calibration file, given on a sparse grid of vectors (a
  line each, a list of pixels and values); bilinear in (line, pixel) between them.
* N: the thermal-noise power. Two layouts: older products give ``noiseVector``s (range only,
  ``noiseLut``); newer ones give ``noiseRangeVector``s (``noiseRangeLut``) times, per block of
  each sub-swath, a ``noiseAzimuthVector`` (``noiseAzimuthLut`` over lines; 1 outside blocks).

Arrays: ``rows`` [h] and ``cols`` [w] are integer line / pixel numbers of the measurement;
results are float64 [h, w]. Outside the grid the nearest vector's values hold.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import InputError
from . import safe_xml


@dataclass
class VectorGrid:
    """A LUT on a sparse grid: ``lines`` [n] strictly increasing, per vector its ``pixels``
    [m_i] strictly increasing and its ``values`` [m_i]."""

    lines: np.ndarray
    pixels: list[np.ndarray]
    values: list[np.ndarray]
    _along: tuple = field(default=(None, None), repr=False)   # (cols key, [n, w]) of the last call

    def sample(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The LUT at every (row, col): float64 [len(rows), len(cols)]. The interpolation along
        pixels is kept for the next call on the same columns (a scene is read in strips)."""
        cols = np.asarray(cols, np.float64)
        key = (len(cols), float(cols[0]), float(cols[-1])) if len(cols) else (0,)
        if self._along[0] != key:
            self._along = (key, np.stack([np.interp(cols, p, v) for p, v in zip(self.pixels, self.values)]))
        along = self._along[1]
        if len(self.lines) == 1:
            return np.broadcast_to(along[0], (len(rows), len(cols))).copy()
        rows = np.asarray(rows, np.float64)
        i = np.clip(np.searchsorted(self.lines, rows, side="right") - 1, 0, len(self.lines) - 2)
        l0, l1 = self.lines[i], self.lines[i + 1]
        t = np.clip((rows - l0) / (l1 - l0), 0.0, 1.0)[:, None]
        return along[i] * (1.0 - t) + along[i + 1] * t


@dataclass
class AzimuthBlock:
    """One block of a sub-swath's azimuth noise: lines first..last, samples first..last
    (inclusive), the LUT ``values`` [k] at ``lines`` [k]."""

    first_line: int
    last_line: int
    first_sample: int
    last_sample: int
    lines: np.ndarray
    values: np.ndarray

    def apply(self, power: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        """Multiply ``power`` [h, w] in place by the block's factor where it covers (row, col)."""
        r = (rows >= self.first_line) & (rows <= self.last_line)
        c = (cols >= self.first_sample) & (cols <= self.last_sample)
        if r.any() and c.any():
            factor = np.interp(rows[r].astype(np.float64), self.lines, self.values)
            rs, cs = np.nonzero(r)[0], np.nonzero(c)[0]
            power[rs[0]:rs[-1] + 1, cs[0]:cs[-1] + 1] *= factor[:, None]


@dataclass
class NoiseLut:
    """The thermal-noise power N: a range grid, times azimuth blocks (newer layout; none in the
    older one)."""

    range: VectorGrid
    azimuth: list[AzimuthBlock] = field(default_factory=list)

    def sample(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """N at every (row, col): float64 [len(rows), len(cols)]."""
        power = self.range.sample(rows, cols)
        rows, cols = np.asarray(rows), np.asarray(cols)
        for block in self.azimuth:
            block.apply(power, rows, cols)
        return power


def _grid(vectors: list, value_name: str, file: str) -> VectorGrid:
    """A VectorGrid from XML vectors with <line>, <pixel> and ``value_name``; repeated lines or
    pixels are dropped (the first kept) so that positions increase strictly."""
    if not vectors:
        raise InputError(f"{file}: no vectors with <{value_name}>")
    lines, pixels, values = [], [], []
    for v in vectors:
        line = float(safe_xml.child_text(v, "line", file))
        px = safe_xml.numbers(v, "pixel", file)
        val = safe_xml.numbers(v, value_name, file)
        if len(px) != len(val) or len(px) == 0:
            raise InputError(f"{file}: a vector's <pixel> and <{value_name}> differ in length")
        if lines and line <= lines[-1]:
            continue
        keep = np.concatenate([[True], np.diff(px) > 0])
        if not np.all(np.diff(px[keep]) > 0):
            raise InputError(f"{file}: a vector's pixels are not in increasing order")
        lines.append(line)
        pixels.append(px[keep])
        values.append(val[keep])
    return VectorGrid(np.array(lines), pixels, values)


def read_calibration(root, file: str) -> VectorGrid:
    """The sigmaNought LUT (A) of a parsed calibration file."""
    return _grid(safe_xml.find_all(root, "calibrationVector"), "sigmaNought", file)


def read_noise(root, file: str) -> NoiseLut:
    """The thermal-noise LUT of a parsed noise file, in either layout."""
    old = safe_xml.find_all(root, "noiseVector")
    if old:
        return NoiseLut(_grid(old, "noiseLut", file))
    ranges = safe_xml.find_all(root, "noiseRangeVector")
    if not ranges:
        raise InputError(f"{file}: neither noiseVector nor noiseRangeVector: not a noise file")
    blocks = []
    for b in safe_xml.find_all(root, "noiseAzimuthVector"):
        try:
            bounds = [int(safe_xml.child_text(b, k, file)) for k in
                      ("firstAzimuthLine", "lastAzimuthLine", "firstRangeSample", "lastRangeSample")]
        except ValueError:
            raise InputError(f"{file}: a noiseAzimuthVector's bounds are not integers") from None
        lines = safe_xml.numbers(b, "line", file)
        values = safe_xml.numbers(b, "noiseAzimuthLut", file)
        if len(lines) != len(values) or len(lines) == 0:
            raise InputError(f"{file}: a noiseAzimuthVector's <line> and <noiseAzimuthLut> differ in length")
        keep = np.concatenate([[True], np.diff(lines) > 0])
        blocks.append(AzimuthBlock(*bounds, lines[keep], values[keep]))
    return NoiseLut(_grid(ranges, "noiseRangeLut", file), blocks)
