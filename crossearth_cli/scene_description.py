"""The text of ``ces info`` for a scene: one line per fact of its info dict (SarScene.info)."""
from __future__ import annotations

from typing import Iterable


def describe_scene(info: dict) -> Iterable[str]:
    """Human-readable lines for a scene's info dict (``ces info``)."""
    yield f"file:            {info['path']} ({info['driver']})"
    yield f"size:            {info['width']} x {info['height']} px, {info['count']} band(s), {info['dtype']}"
    bands = info["bands"] or ["(no descriptions)"]
    yield f"bands:           {', '.join(str(b) for b in bands)}"
    yield f"crs:             {info['crs'] or 'none (outputs will carry no CRS)'}"
    ps = info["pixel_size_m"]
    yield "pixel size:      " + (f"{ps[0]:.3f} x {ps[1]:.3f} m" if ps else "unknown (no CRS)")
    kind = f" ({info['linear_kind']})" if info.get("linear_kind") else ""
    yield f"domain:          {info['domain']}{kind}"
    if "calibrated" in info:
        yield (f"calibrated:      {'yes' if info['calibrated'] else 'no'}: "
               f"{info['calibration_reason']}")
        if not info["calibrated"] and info.get("calibration"):
            r = {"linear": "10 log10(value)", "complex": "20 log10|z|"}.get(info["domain"], "value")
            parts = [f"{g:.4g} x {r} {'+' if o >= 0 else '-'} {abs(o):.2f} dB"
                     for g, o in info["calibration"]]
            yield f"estimated:       sigma0 ~ {'; '.join(parts)} (from the scene's quantiles)"
    yield f"nodata fraction: {info['nodata_fraction']:.4f}"
    yield (f"channels:        {info['composition']}: {', '.join(info['channels'])} "
           f"(bands {', '.join(map(str, info['selected_bands']))})")
    for w in info.get("warnings", []):
        yield f"warning:         {w}"


def describe_product(info: dict) -> Iterable[str]:
    """Human-readable lines for a Sentinel-1 product's info dict (``ces info PRODUCT``)."""
    yield f"product:         {info['product']}"
    yield f"mission:         {info['mission']} {info['mode']} {info['product_type']}, {', '.join(info['polarizations'])}"
    yield f"acquired:        {info['start']} .. {info['stop']}"
    yield f"orbit:           {info['orbit_direction'].lower()}, relative orbit {info['relative_orbit']}"
    if info["bounds_lonlat"]:
        w, s, e, n = info["bounds_lonlat"]
        yield f"footprint:       lon {w:.4f}..{e:.4f}, lat {s:.4f}..{n:.4f}"
    yield f"size:            {info['width']} x {info['height']} px at {info['pixel_spacing_m']:g} m (radar geometry)"
    yield f"calibrated:      yes: {info['calibration_reason']}"
    p = info["prepare"]
    yield (f"prepared as:     {p['width']} x {p['height']} px, {p['resolution_m']:g} m ({p['looks']} x {p['looks']} "
           f"looks), {p['crs']}; {p['processing']}")
    if info["missing_measurements"]:
        yield (f"warning:         no measurement TIFF for {', '.join(info['missing_measurements'])}: the download is "
               f"incomplete, it cannot be prepared")
