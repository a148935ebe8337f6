"""Boundary F-score: how well the edges of a class map follow the edges of its labels.

A boundary pixel is a valid pixel with a 4-neighbour of another class that is valid too
(valid: labelled, and predicted, i.e. not nodata); class-agnostic, so a two-class map has
one boundary. With a tolerance of d pixels (Euclidean distance, scipy's distance transform):

* precision = predicted boundary pixels within d of a label boundary / predicted boundary pixels;
* recall = label boundary pixels within d of a predicted boundary / label boundary pixels;
* F = 2 P R / (P + R).

Counts are pooled over images (the pixels of every image count alike), as the IoU's are.
The usual tolerance is 2 px (at 10 m, 20 m on the ground; Csurka et al., BMVC 2013).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
from scipy import ndimage

#: the default tolerance (pixels)
DEFAULT_TOLERANCE_PX = 2.0


def boundary_pixels(classes: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """bool [H, W]: valid pixels with a valid 4-neighbour of another class."""
    out = np.zeros(classes.shape, bool)
    for axis in (0, 1):
        a = np.moveaxis(classes, axis, 0)
        v = np.moveaxis(valid, axis, 0)
        diff = (a[1:] != a[:-1]) & v[1:] & v[:-1]
        o = np.moveaxis(out, axis, 0)
        o[1:] |= diff
        o[:-1] |= diff
    return out


def boundary_counts(pred: np.ndarray, target: np.ndarray, valid: np.ndarray,
                    tolerance_px: float = DEFAULT_TOLERANCE_PX) -> np.ndarray:
    """int64 [4]: (predicted boundary pixels matched, predicted boundary pixels, label boundary
    pixels matched, label boundary pixels) of class maps ``pred``, ``target`` [H, W] over
    ``valid`` [H, W] bool."""
    bp = boundary_pixels(pred, valid)
    bt = boundary_pixels(target, valid)
    counts = np.zeros(4, np.int64)
    counts[1], counts[3] = bp.sum(), bt.sum()
    if counts[1] and counts[3]:
        counts[0] = int((ndimage.distance_transform_edt(~bt)[bp] <= tolerance_px).sum())
        counts[2] = int((ndimage.distance_transform_edt(~bp)[bt] <= tolerance_px).sum())
    return counts


def boundary_f(counts: np.ndarray, tolerance_px: float = DEFAULT_TOLERANCE_PX) -> dict:
    """{"tolerance_px", "f_score", "precision", "recall"} of pooled :func:`boundary_counts`;
    None where undefined (no boundary predicted, or none labelled)."""
    p = counts[0] / counts[1] if counts[1] else None
    r = counts[2] / counts[3] if counts[3] else None
    f: Optional[float] = None
    if p is not None and r is not None:
        f = 0.0 if p + r == 0 else 2 * p * r / (p + r)
    elif counts[1] or counts[3]:
        f = 0.0   # edges on one side only
    return {"tolerance_px": float(tolerance_px), "f_score": _round(f), "precision": _round(p),
            "recall": _round(r)}


def _round(v: Optional[float]) -> Optional[float]:
    return None if v is None else round(float(v), 6)
