"""Calibration of a scene (input contract 3, core/scene/contracts.py): is it calibrated
backscatter, and if not, the estimated calibration that maps it onto sigma0 dB.

``detect_calibration``: (calibrated, linear kind, reason) from a decimated read;
``estimate_calibration``: (gain, offset) [n_bands, 2] per band, dB ≈ gain · r + offset.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .contracts import AMPLITUDE_ABOVE_DB, PLAUSIBLE_MEDIAN_DB, REFERENCE_DB, REFERENCE_QUANTILES


def estimate_calibration(reps: np.ndarray, kinds: Sequence[str]) -> np.ndarray:
    """(gain, offset) [n, 2] per band that maps the REFERENCE_QUANTILES of ``reps`` [n, m]
    (each band's log representation) onto REFERENCE_DB of its kind: dB ≈ gain · r + offset.
    Identity for a band without valid pixels; the gain is kept within 1e-3..1e3."""
    cal = np.tile(np.float32([1.0, 0.0]), (len(kinds), 1))
    for i, kind in enumerate(kinds):
        if reps.shape[1] == 0:
            continue
        q_lo, q_hi = np.percentile(reps[i], REFERENCE_QUANTILES)
        d_lo, d_hi = REFERENCE_DB[kind]
        gain = float(np.clip((d_hi - d_lo) / max(q_hi - q_lo, 1e-6), 1e-3, 1e3))
        cal[i] = (gain, d_lo - gain * q_lo)
    return cal


def detect_calibration(sample: np.ndarray, valid: np.ndarray, domain: str, dtype: str,
                       kinds: Sequence[str], linear_kind: Optional[str] = None,
                       calibrated: Optional[bool] = None) -> tuple[bool, str, str]:
    """(calibrated, linear kind "power" | "amplitude", reason) of a scene from a decimated
    read ``sample`` [n, h, w] (raw values) and its ``valid`` [h, w].

    Calibrated: float dB, or float linear power / amplitude, whose median backscatter lies in
    PLAUSIBLE_MEDIAN_DB. Not calibrated: 8-bit quicklooks, integer DN, complex SLC counts,
    float data out of that range. Linear float data is amplitude when given so, else when its
    median read as power lies above AMPLITUDE_ABOVE_DB (by the cross-pol band when there is
    one: its ranges as power and as amplitude overlap least). ``calibrated`` overrides."""
    kind = linear_kind or "power"
    vals = [b[valid & np.isfinite(b)] if b.dtype.kind == "f" else b[valid] for b in sample]
    if domain == "linear" and linear_kind is None and dtype.startswith("float") and vals[0].size:
        i = kinds.index("cross") if "cross" in kinds else 0
        with np.errstate(divide="ignore"):
            med = float(10.0 * np.log10(max(float(np.median(vals[i])), 1e-30)))
        kind = "amplitude" if med > AMPLITUDE_ABOVE_DB[kinds[i]] else "power"
    if calibrated is not None:
        return bool(calibrated), kind, f"set by the user (calibrated {'yes' if calibrated else 'no'})"
    if domain == "quicklook":
        return False, kind, "8-bit display values (a quicklook) carry no calibration"
    if domain == "complex":
        return False, kind, "complex SLC counts are not calibrated backscatter"
    if not dtype.startswith("float"):
        return False, kind, f"integer {dtype} values are digital numbers, not calibrated backscatter"
    if not vals[0].size:
        return False, kind, "no valid pixel to judge the calibration by"
    scale = {"db": None, "linear": 20.0 if kind == "amplitude" else 10.0}[domain]
    meds = []
    for v in vals:
        m = float(np.median(v))
        if scale is not None:
            m = scale * np.log10(m) if m > 0 else -np.inf
        meds.append(m)
    lo, hi = PLAUSIBLE_MEDIAN_DB
    what = "dB" if domain == "db" else f"linear {kind}"
    text = ", ".join(f"{m:.1f}" for m in meds)
    if all(lo <= m <= hi for m in meds):
        return True, kind, f"float {what}, median backscatter {text} dB (plausible sigma0)"
    return False, kind, (f"float {what}, median {text} dB lies outside a plausible sigma0 "
                         f"range ({lo:g}..{hi:g} dB)")
