"""The input contracts: how a SAR raster's values reach the model (its constants and band rules).

The reading itself is in core/scene/sar_io.py; calibration in calibration.py, value transforms in
values.py, scene statistics in sampling.py.

Input contract 3 (docs/contracts.md §3) keeps calibration where the input has it:

* calibration: float dB, float linear power or amplitude whose backscatter lies in a
  plausible sigma0 range are *calibrated* (:func:`detect_calibration`; ``ces info`` says
  why); 8-bit quicklooks, integer DN and complex SLC counts are not. ``calibrated=True/False``
  overrides the detection;
* each band becomes dB: exactly for calibrated input (10·log10 of power, 20·log10 of
  amplitude); for uncalibrated input through an *estimated calibration* (gain, offset) per
  band that maps the scene's :data:`REFERENCE_QUANTILES` of its log representation onto
  :data:`REFERENCE_DB`, the same quantiles of calibrated Sentinel-1 land-dominated scenes
  (pooled over a source's tiles when they were cut from one scene: ``calibration=``);
* channels are composed from dB (single: (co, co, co); dual-pol: (co, cross, co − cross))
  and mapped to 0..1 with :data:`DB_MAPPING`: one set of constants for every scene, no
  per-scene statistics; the cross-pol band keeps its own absolute level;
* three-band rasters (e.g. Pauli RGB) and the real / imaginary part of complex data carry no
  backscatter level: they keep contract 2's per-scene stretch.

Contracts 1 and 2 (models trained under them still read scenes as they were trained):

* value domain: ``quicklook`` (8-bit display values), ``linear`` (amplitude, intensity or DN),
  ``db``, or ``complex`` (SLC); detected here and only here (``ces info`` shows it),
  overridable;
* each band becomes a *log representation* r, an affine function of dB: quicklook r = v
  (display values are taken as a linear stretch of dB), linear r = 10·log10(v) (amplitude
  gives 2× the dB of intensity: a factor the stretch removes), dB r = v, complex
  r = 20·log10|z| (amplitude) or a signed log of the real / imaginary part;
* channels: one band is copied 3×; dual-pol (e.g. VV, VH) composes (VV, VH, VV−VH);
  three bands (e.g. a Pauli RGB) are used as they are;
* model input x = clip((r − lo) / (hi − lo), 0, 1), lo/hi the 1 / 99 % percentiles of each
  channel, computed once per *scene* from a decimated read (never per tile: per-tile
  statistics make seams), or given by the caller (``stats``: one stretch for a set of tiles
  cut from one scene). Percentiles are affine-equivariant, so the same ground written in
  dB, intensity, amplitude or as a linear 8-bit quicklook of dB reaches the model as the
  same x, up to quantization;
* nodata = the nodata value, the dataset mask, NaN and ±Inf; excluded everywhere;
* descriptors see ``phys`` = x of the first channel (the stretched log representation of
  its band): domain-independent for the same reason.

Rasters georeferenced only by GCPs or RPCs are refused with a hint to orthorectify them
(``gdalwarp``): their outputs would otherwise be silently misplaced. A raster with no
georeferencing at all is accepted with a warning; its outputs carry no CRS.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

DOMAINS = ("quicklook", "linear", "db", "complex")
#: ``domain`` values a user may give besides DOMAINS: linear data whose kind is known
LINEAR_KINDS = ("power", "amplitude")
DOMAIN_CHOICES = DOMAINS + LINEAR_KINDS
#: the ``calibrated`` choices of every face (CLI, data files) -> open_scene's ``calibrated``
CALIBRATED_CHOICES = {"auto": None, "yes": True, "no": False}
COMPLEX_PARTS = ("amplitude", "real", "imag")
SUPPORTED_DTYPES = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64",
    "complex_int16", "complex64", "complex128",
}
STATS_MAX_SIDE = 1024          # decimated read for scene statistics: at most this many px a side
PERCENTILES = (1.0, 99.0)      # robust stretch of each channel
INPUT_CONTRACT = 3             # written into every model's config (input.contract)
CONTRACTS = (1, 2, 3)          # 1: models trained before contract 2 (no input.contract)
#: contract 3: dB -> x = (dB - lo) / (hi - lo), clipped to 0..1, per channel kind: co-pol
#: (VV, HH, or a band of unknown polarization), cross-pol (VH, HV), and co − cross.
#: 30 dB spans for the backscatter channels: calm water (−30..−18 dB VV) to bright urban
#: and steep slopes (0..+2 dB); cross-pol sits 6-8 dB lower than co-pol over land.
DB_MAPPING = {"co": (-28.0, 2.0), "cross": (-36.0, -6.0), "ratio": (-4.0, 18.0)}
#: contract 3, uncalibrated input: the scene's quantiles (%) of each band's log representation
#: that are mapped onto REFERENCE_DB. Upper quantiles are land in nearly every scene, so the
#: estimate moves little with the water fraction: for land dB ~ N(mu, 3.5 dB), a scene 40 %
#: under water moves its 70 % quantile by 1.8 dB and its 95 % quantile by 0.9 dB.
REFERENCE_QUANTILES = (70.0, 95.0)
#: the REFERENCE_QUANTILES of calibrated Sentinel-1 IW sigma0 (dB) over land-dominated scenes:
#: land VV about −10.5 dB median, VH about −17 dB, both with a spread of about 3.5 dB
#: (speckle of ~4.4 looks, 2.2 dB, and land-cover texture).
REFERENCE_DB = {"co": (-8.7, -4.7), "cross": (-15.2, -11.2)}
#: plausible calibrated backscatter: the median sigma0 of a band, in dB
PLAUSIBLE_MEDIAN_DB = (-35.0, 10.0)
#: linear float data: the median (as power, dB) above which it is taken as amplitude; co-pol
#: land power medians lie at −20..−5 dB, amplitude read as power at −10..−2.5 dB; cross-pol
#: −25..−12 dB against −12.5..−6 dB
AMPLITUDE_ABOVE_DB = {"co": -6.5, "cross": -12.5}
CO_POL, CROSS_POL = ("VV", "HH"), ("VH", "HV")
LINEAR_FLOOR = 1e-6            # linear values below this are clipped (-60 dB) before the log
BandSpec = Union[str, int]
BandSpec = Union[str, int]


def parse_bands(text: Optional[str]) -> Optional[list[BandSpec]]:
    """``"VV,VH"`` -> ["VV", "VH"]; ``"1,2"`` -> [1, 2]; None or "" -> None."""
    if not text:
        return None
    out: list[BandSpec] = []
    for item in str(text).split(","):
        item = item.strip()
        if item:
            out.append(int(item) if item.isdigit() else item)
    return out or None


def band_kinds(band_names: Sequence[Optional[str]]) -> list[str]:
    """"co" / "cross" per band: by description, else by position (first co, second cross)."""
    out = []
    for i, name in enumerate(band_names):
        key = (name or "").upper()
        if any(p in key for p in CROSS_POL):
            out.append("cross")
        elif any(p in key for p in CO_POL):
            out.append("co")
        else:
            out.append("cross" if i == 1 else "co")
    return out
