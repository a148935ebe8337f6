"""The SAR input layer: open any GDAL raster, detect its value domain and calibration,
normalize, mask.

Input contract 3 (issue 23, docs/interfaces.md) keeps calibration where the input has it:

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

Contracts 1 and 2 (models trained before issue 23 read scenes as they were trained):

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

import os
import warnings as _warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Union

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from ..errors import InputError, bare, parameter, word_parameters
from . import raster_check

DOMAINS = ("quicklook", "linear", "db", "complex")
#: ``domain`` values a user may give besides DOMAINS: linear data whose kind is known
LINEAR_KINDS = ("power", "amplitude")
DOMAIN_CHOICES = DOMAINS + LINEAR_KINDS
#: the ``calibrated`` choices of every face (CLI, data files) -> open_scene's ``calibrated``
CALIBRATED_CHOICES = {"auto": None, "yes": True, "no": False}
COMPLEX_PARTS = ("amplitude", "real", "imag")
POLARIZATIONS = ("VV", "VH", "HH", "HV")
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


class EmptyRasterError(InputError):
    """A raster without a single valid pixel (training sources skip such tiles)."""


@dataclass
class WindowData:
    """One window of a scene, ready for the model.

    x: float32 [3, h, w], model input in 0..1 (nodata = 0);
    phys: float32 [h, w], the first channel of x (what the descriptors see; nodata = 0);
    valid: bool [h, w], False on nodata and on padding past the scene edge.
    """

    x: np.ndarray
    phys: np.ndarray
    valid: np.ndarray


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


@dataclass
class SarScene:
    """An open SAR raster with its detected domain, band selection and scene statistics."""

    path: Path
    width: int
    height: int
    count: int
    dtype: str
    crs: Optional[rasterio.crs.CRS]
    transform: rasterio.Affine
    domain: str
    band_indexes: list[int]
    band_names: list[Optional[str]]
    composition: str
    complex_part: str = "amplitude"
    contract: int = INPUT_CONTRACT
    stats: np.ndarray = field(default_factory=lambda: np.zeros((3, 2), np.float32))
    calibrated: bool = False
    calibration_reason: str = ""
    linear_kind: str = "power"
    #: contract 3: per selected band (gain, offset): dB = gain · r + offset (identity when
    #: calibrated; the estimated calibration otherwise); unused by contracts 1 and 2
    calibration: np.ndarray = field(default_factory=lambda: np.tile([1.0, 0.0], (1, 1)))
    nodata_fraction: float = 0.0
    pixel_size_m: Optional[tuple[float, float]] = None
    warnings: list[str] = field(default_factory=list)
    driver: str = ""
    nodata_values: tuple = ()
    _src: Optional[rasterio.io.DatasetReader] = field(default=None, repr=False)

    # -- lifecycle -----------------------------------------------------------------------
    def close(self) -> None:
        """Close the dataset (reopened on the next read)."""
        if self._src is not None:
            self._src.close()
            self._src = None

    def __enter__(self) -> "SarScene":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def src(self) -> rasterio.io.DatasetReader:
        """The open rasterio dataset (opened on first use)."""
        if self._src is None:
            self._src = _open_dataset(self.path)
        return self._src

    @property
    def profile(self) -> dict:
        """Georeferencing for outputs on the scene grid (crs may be None)."""
        return {"width": self.width, "height": self.height, "crs": self.crs,
                "transform": self.transform}

    # -- reading -------------------------------------------------------------------------
    def read_window(self, window: Window) -> WindowData:
        """Read ``window`` (may extend past the scene edge) as model input, phys and mask."""
        col0, row0 = int(window.col_off), int(window.row_off)
        w, h = int(window.width), int(window.height)
        c0, r0 = max(col0, 0), max(row0, 0)
        c1, r1 = min(col0 + w, self.width), min(row0 + h, self.height)
        if c1 <= c0 or r1 <= r0:
            return WindowData(np.zeros((3, h, w), np.float32), np.zeros((h, w), np.float32),
                              np.zeros((h, w), bool))
        inner = Window(c0, r0, c1 - c0, r1 - r0)
        raw, masks = self._read(inner)
        rep, valid = self._represent(raw, masks)
        x = self._stretch(rep, valid)
        if self.contract == 1:   # log(1 + |X|) of the physical values, as such models learnt
            phys = np.log1p(np.abs(_physical(raw[0], self.domain, self.complex_part)))
            phys = np.where(valid, phys, 0.0).astype(np.float32)
        else:
            phys = x[0].copy()
        pads = ((r0 - row0, row0 + h - r1), (c0 - col0, col0 + w - c1))
        if any(p for pair in pads for p in pair):
            x = np.stack([_reflect_pad(ch, pads) for ch in x])
            phys = _reflect_pad(phys, pads)
            valid = np.pad(valid, pads, mode="constant", constant_values=False)
            x[:, ~valid] = 0.0
            phys[~valid] = 0.0
        return WindowData(x.astype(np.float32, copy=False), phys.astype(np.float32, copy=False),
                          valid)

    def read_representation(self, window: Optional[Window] = None) -> tuple[np.ndarray, np.ndarray]:
        """(log representation [3, h, w] float32 before the stretch, valid [h, w] bool) of
        ``window`` (inside the scene; None: the whole scene), e.g. for threshold baselines."""
        return self._represent(*self._read(window))

    def _read(self, window: Optional[Window]) -> tuple[np.ndarray, np.ndarray]:
        """(raw bands [n, h, w], their GDAL masks [n, h, w]) of ``window`` (None: all)."""
        raw = raster_check.read(self.src, self.path, self.band_indexes, window=window)
        masks = raster_check.read_masks(self.src, self.path, self.band_indexes, window=window)
        return raw, _mask_values(raw, masks, self.nodata_values)

    @property
    def fixed_mapping(self) -> bool:
        """Contract 3 with backscatter bands: dB through DB_MAPPING (else a per-scene stretch)."""
        return (self.contract >= 3 and self.composition != "rgb"
                and (self.domain != "complex" or self.complex_part == "amplitude"))

    def band_kinds(self) -> list[str]:
        """"co" or "cross" for each selected band (by description; unnamed: co, then cross)."""
        return _band_kinds(self.band_names)

    def _band_reps(self, raw: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw bands [n, h, w] -> (log representation of each band [n, h, w], valid [h, w])."""
        valid = np.all(masks > 0, axis=0)
        finite = np.all(np.isfinite(raw), axis=0) if raw.dtype.kind in "fc" else None
        if finite is not None:
            valid &= finite
        reps = np.stack([_log_representation(b, self.domain, self.complex_part,
                                             self.linear_kind if self.contract >= 3 else "power")
                         for b in raw]).astype(np.float32)
        return reps, valid

    def _represent(self, raw: np.ndarray, masks: np.ndarray):
        """Raw bands [n, h, w] -> (channels [3, h, w], valid [h, w]): log representations
        (contracts 1, 2, and 3 without backscatter bands) or dB (contract 3)."""
        reps, valid = self._band_reps(raw, masks)
        if self.fixed_mapping:
            cal = np.asarray(self.calibration, np.float32).reshape(-1, 2)
            reps = reps * cal[:, :1, None] + cal[:, 1:, None]
        if self.composition == "single":
            chans = [reps[0]] * 3
        elif self.composition == "dualpol":
            chans = [reps[0], reps[1], reps[0] - reps[1]]
        else:
            chans = reps[:3]
        rep = np.stack(chans).astype(np.float32)
        valid &= np.all(np.isfinite(rep), axis=0)
        rep[:, ~valid] = 0.0
        return rep, valid

    def _stretch(self, rep: np.ndarray, valid: np.ndarray) -> np.ndarray:
        lo = self.stats[:, 0][:, None, None]
        span = np.maximum(self.stats[:, 1] - self.stats[:, 0], 1e-6)[:, None, None]
        x = np.clip((rep - lo) / span, 0.0, 1.0).astype(np.float32)
        x[:, ~valid] = 0.0
        return x

    # -- description ---------------------------------------------------------------------
    def info(self, word: Callable[[str], str] = bare) -> dict:
        """What was detected: the ``ces info --json`` object; its warnings' parameters as
        ``word(name)`` (core.errors; the CLI passes its flags)."""
        crs = None
        if self.crs is not None:
            epsg = self.crs.to_epsg()
            crs = f"EPSG:{epsg}" if epsg else self.crs.to_wkt()
        names = [self.src.descriptions[i] or None for i in range(self.count)]
        return {
            "path": str(self.path),
            "driver": self.driver,
            "width": self.width,
            "height": self.height,
            "count": self.count,
            "dtype": self.dtype,
            "crs": crs,
            "pixel_size_m": list(self.pixel_size_m) if self.pixel_size_m else None,
            "domain": self.domain,
            "nodata_fraction": round(float(self.nodata_fraction), 6),
            "bands": names if any(names) else None,
            "selected_bands": self.band_indexes,
            "composition": self.composition,
            "channels": self.channel_names(),
            "stretch": [[round(float(a), 4), round(float(b), 4)] for a, b in self.stats],
            "calibrated": bool(self.calibrated),
            "calibration_reason": self.calibration_reason,
            "linear_kind": self.linear_kind if self.domain == "linear" else None,
            "calibration": ([[round(float(g), 5), round(float(o), 4)] for g, o in self.calibration]
                            if self.fixed_mapping else None),
            "input_contract": self.contract,
            "warnings": [word_parameters(w, word) for w in self.warnings],
        }

    def channel_names(self) -> list[str]:
        """Human names of the 3 model channels, e.g. ["VV", "VH", "VV-VH"]."""
        names = [n or f"band {i}" for n, i in zip(self.band_names, self.band_indexes)]
        if self.composition == "single":
            return [names[0]] * 3
        if self.composition == "dualpol":
            return [names[0], names[1], f"{names[0]}-{names[1]}"]
        return names[:3]


# ---------------------------------------------------------------------------------------
def open_scene(path: Union[str, os.PathLike], domain: Optional[str] = None,
               bands: Optional[Sequence[BandSpec]] = None,
               complex_part: str = "amplitude",
               prefer: Optional[Sequence[str]] = None,
               stats: Optional[np.ndarray] = None,
               contract: int = INPUT_CONTRACT,
               calibrated: Optional[bool] = None,
               calibration: Optional[np.ndarray] = None,
               nodata_values: Sequence[float] = ()) -> SarScene:
    """Open a SAR raster, select its bands, detect its domain and compute scene statistics.

    ``domain`` may also be "power" or "amplitude" (linear data of that kind; "linear" detects
    the kind). ``calibrated``: None detects (:func:`detect_calibration`), True / False
    overrides. ``calibration``: float [n_bands, 2] estimated calibration (gain, offset) to use
    instead of the scene's own (contract 3, uncalibrated input), e.g. :func:`pooled_calibration`
    of the tiles cut from one scene. ``nodata_values``: raw values that are nodata besides
    the raster's own (e.g. an 8-bit product's 255 fill).

    ``contract``: the input contract of the model that will read the scene (its config's
    ``input.contract``; 1 for models without one): 1 keeps quicklooks at v / 255 and gives
    ``phys`` = log(1 + |X|) of the physical values, as those models were trained.
    ``stats``: float [3, 2] stretch (low, high per channel) to use instead of the scene's
    own, e.g. :func:`pooled_statistics` of all tiles cut from one scene.
    ``prefer``: band descriptions a model was trained on (e.g. ["VV"]); used when ``bands``
    is not given and the raster has bands with all of these descriptions, else ignored.
    Raises InputError (one line naming the file) on anything it cannot use.
    """
    path = Path(path)
    if domain is not None and domain not in DOMAIN_CHOICES:
        raise InputError(f"unknown domain {domain!r} (choose from {', '.join(DOMAIN_CHOICES)})",
                         path)
    linear_kind = None
    if domain in LINEAR_KINDS:
        linear_kind, domain = domain, "linear"
    if complex_part not in COMPLEX_PARTS:
        raise InputError(f"unknown complex part {complex_part!r} "
                         f"(choose from {', '.join(COMPLEX_PARTS)})", path)
    src = _open_dataset(path)
    try:
        if not bands and prefer:
            have = [(d or "").strip().upper() for d in src.descriptions]
            if all(str(p).upper() in have for p in prefer):
                bands = list(prefer)
        if contract not in CONTRACTS:
            raise InputError(f"input contract {contract!r} is not one of {CONTRACTS}", path)
        scene = _describe(src, path, domain, bands, complex_part, int(contract),
                          calibrated=calibrated, linear_kind=linear_kind,
                          calibration=calibration, nodata_values=nodata_values)
        if stats is not None and not scene.fixed_mapping:
            scene.stats = np.asarray(stats, np.float32).reshape(3, 2).copy()
    except BaseException:
        src.close()
        raise
    return scene


def _open_dataset(path: Path) -> rasterio.io.DatasetReader:
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a raster")
    try:
        with _warnings.catch_warnings():
            _warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioIOError as e:
        raise InputError(f"{path}: not a raster GDAL can read "
                         f"({raster_check.gdal_message(e)})") from None


def _describe(src, path: Path, domain, bands, complex_part, contract: int = INPUT_CONTRACT, *,
              calibrated: Optional[bool] = None, linear_kind: Optional[str] = None,
              calibration: Optional[np.ndarray] = None,
              nodata_values: Sequence[float] = ()) -> SarScene:
    dtypes = set(src.dtypes)
    bad = dtypes - SUPPORTED_DTYPES
    if bad:
        raise InputError(f"{path}: unsupported data type {', '.join(sorted(bad))} "
                         f"(supported: 8/16/32-bit integers, float32/64, complex)")
    warnings: list[str] = []
    crs = src.crs
    if crs is None and (src.gcps[0] or getattr(src, "rpcs", None)):
        kind = "ground control points" if src.gcps[0] else "RPCs"
        raise InputError(f"{path}: georeferenced only by {kind}; orthorectify it first "
                         f"(e.g. gdalwarp {'-tps' if kind.startswith('ground') else '-rpc'} "
                         f"-t_srs EPSG:xxxx in.tif out.tif)")
    if crs is None:
        warnings.append(f"{path.name} has no coordinate reference system; "
                        f"outputs will carry none")

    descriptions = [d.strip() if d else None for d in src.descriptions]
    band_indexes = _select_bands(path, src.count, descriptions, bands)
    band_names = [descriptions[i - 1] for i in band_indexes]
    by_polarization = len(band_indexes) == 2 and all(band_names)
    if not bands and src.count > 1 and not by_polarization and (
            not all(band_names) or src.count > len(band_indexes)):
        warnings.append(_assumed_bands(path, src.count, band_indexes, all(band_names)))
    n = len(band_indexes)
    composition = {1: "single", 2: "dualpol"}.get(n, "rgb")

    sample = _decimated_read(src, band_indexes, nodata_values)   # the one decimated read
    if domain is None:
        domain = _detect_domain(src, band_indexes, sample)
    elif domain == "complex" and not np.issubdtype(np.dtype(_np_dtype(src.dtypes[0])),
                                                   np.complexfloating):
        raise InputError(f"{path}: {parameter('domain')} complex given but the data type is {src.dtypes[0]}")

    scene = SarScene(
        path=path, width=src.width, height=src.height, count=src.count, dtype=src.dtypes[0],
        crs=crs, transform=src.transform, domain=domain, band_indexes=band_indexes,
        band_names=band_names, composition=composition, complex_part=complex_part,
        contract=contract, warnings=warnings, driver=src.driver, _src=src,
        nodata_values=tuple(float(v) for v in nodata_values),
    )
    scene.pixel_size_m = pixel_size_metres(crs, src.transform, src.width, src.height)
    scene.calibration = np.tile(np.float32([1.0, 0.0]), (len(band_indexes), 1))
    scene.calibrated, scene.linear_kind, scene.calibration_reason = detect_calibration(
        *sample, domain, scene.dtype, scene.band_kinds(), linear_kind, calibrated)
    if scene.fixed_mapping and not scene.calibrated:
        if calibration is not None:
            scene.calibration = np.asarray(calibration, np.float32).reshape(-1, 2).copy()
        else:
            scene.calibration = estimate_calibration(band_sample(scene, sample), scene.band_kinds())
    scene.stats, scene.nodata_fraction = _scene_statistics(scene, sample)
    return scene


def _assumed_bands(path: Path, count: int, band_indexes: list[int], described: bool) -> str:
    """The warning for a multi-band raster whose bands were chosen by position."""
    used = ", ".join(map(str, band_indexes))
    role = ("co-pol (VV) and cross-pol (VH)" if len(band_indexes) == 2 else
            "the 3 model channels as they are")
    what = "bands without VV/VH descriptions" if described else "bands without descriptions"
    return (f"{path.name} has {count} {what}: bands {used} are used as {role}; choose the "
            f"bands with {parameter('bands')} (e.g. {parameter('bands')} 1 for one band)")


def _select_bands(path: Path, count: int, descriptions: list[Optional[str]],
                  bands: Optional[Sequence[BandSpec]]) -> list[int]:
    upper = [(d or "").upper() for d in descriptions]
    if bands:
        out = []
        for b in bands:
            if isinstance(b, (int, np.integer)) or (isinstance(b, str) and b.isdigit()):
                i = int(b)
                if not 1 <= i <= count:
                    raise InputError(f"{path}: band {i} does not exist (the raster has {count})")
                out.append(i)
            else:
                key = str(b).strip().upper()
                if key not in upper:
                    have = ", ".join(d for d in descriptions if d) or "none"
                    raise InputError(f"{path}: no band described {b!r} (band descriptions: {have})")
                out.append(upper.index(key) + 1)
        if len(out) > 3:
            raise InputError(f"{path}: at most 3 bands can be used, {len(out)} were asked for")
        return out
    if count == 1:
        return [1]
    for pair in (("VV", "VH"), ("HH", "HV")):
        if all(p in upper for p in pair):
            return [upper.index(p) + 1 for p in pair]
    return [1, 2] if count == 2 else [1, 2, 3]


def _np_dtype(name: str) -> str:
    """The numpy dtype GDAL's pixels of rasterio dtype ``name`` are read as (numpy has no
    complex integers: CInt16 / CInt32 are read as complex64 / complex128)."""
    return {"complex_int16": "complex64", "complex_int32": "complex128"}.get(name, name)


def numpy_dtype(name: str) -> np.dtype:
    """:func:`_np_dtype` as a numpy dtype (e.g. for sizes): never a TypeError for a rasterio
    dtype name."""
    return np.dtype(_np_dtype(name))


def _detect_domain(src, band_indexes: list[int], sample: tuple[np.ndarray, np.ndarray]) -> str:
    """The value domain of the selected bands, from their dtype and (float data) the
    decimated ``sample`` (bands, valid) of :func:`_decimated_read`."""
    dt = src.dtypes[band_indexes[0] - 1]
    if dt.startswith("complex"):
        return "complex"
    if dt == "uint8":
        return "quicklook"
    if not dt.startswith("float"):
        return "linear"
    data, valid = sample
    vals = data[0][valid & np.isfinite(data[0])]
    if vals.size == 0:
        return "linear"
    return "db" if np.mean(vals < 0) > 0.05 else "linear"


def _mask_values(raw: np.ndarray, masks: np.ndarray, nodata_values: Sequence[float]) -> np.ndarray:
    """GDAL masks [n, h, w] with every pixel whose raw value (any band) is one of
    ``nodata_values`` set to 0."""
    if not nodata_values:
        return masks
    hit = np.isin(raw, np.asarray(nodata_values, raw.dtype)).any(axis=0)
    return np.where(hit[None], 0, masks).astype(masks.dtype)


def _decimated_read(src, band_indexes: list[int],
                    nodata_values: Sequence[float] = ()) -> tuple[np.ndarray, np.ndarray]:
    """A nearest-neighbour read of at most STATS_MAX_SIDE px a side: (bands, valid)."""
    f = max(src.width / STATS_MAX_SIDE, src.height / STATS_MAX_SIDE, 1.0)
    shape = (len(band_indexes), max(1, int(src.height / f)), max(1, int(src.width / f)))
    data = raster_check.read(src, None, band_indexes, out_shape=shape, resampling=Resampling.nearest)
    masks = raster_check.read_masks(src, None, band_indexes, out_shape=shape,
                                    resampling=Resampling.nearest)
    valid = np.all(_mask_values(data, masks, nodata_values) > 0, axis=0)
    if data.dtype.kind in "fc":
        valid &= np.all(np.isfinite(data), axis=0)
    return data, valid


def _sample_of(scene: SarScene, sample: Optional[tuple[np.ndarray, np.ndarray]]):
    """``sample`` (bands, valid) of a decimated read, or a fresh one: (bands, GDAL-style masks)."""
    data, valid = sample if sample is not None else _decimated_read(
        scene.src, scene.band_indexes, scene.nodata_values)
    return data, np.where(valid, 255, 0)[None].repeat(len(data), 0)


def scene_sample(scene: SarScene, sample: Optional[tuple[np.ndarray, np.ndarray]] = None
                 ) -> tuple[np.ndarray, float]:
    """(the channels of the valid pixels of a decimated read [3, n], nodata fraction);
    ``sample``: that read when it was already made (:func:`_decimated_read`)."""
    rep, valid = scene._represent(*_sample_of(scene, sample))
    return rep[:, valid], 1.0 - float(valid.mean())


def band_sample(scene: SarScene, sample: Optional[tuple[np.ndarray, np.ndarray]] = None
                ) -> np.ndarray:
    """The log representation of each band's valid pixels in a decimated read [n, m]."""
    reps, valid = scene._band_reps(*_sample_of(scene, sample))
    return reps[:, valid]


def stretch_of(values: np.ndarray) -> np.ndarray:
    """The stretch [3, 2] (PERCENTILES of each channel) of log-representation values [3, n]."""
    stats = np.zeros((3, 2), np.float32)
    for c in range(3):
        if values.shape[1] == 0:
            stats[c] = (0.0, 1.0)
            continue
        lo, hi = np.percentile(values[c], PERCENTILES)
        stats[c] = (lo, hi if hi - lo >= 1e-6 else lo + 1.0)
    return stats


def pooled_statistics(paths: Sequence[Union[str, os.PathLike]], max_pixels: int = 4_000_000,
                      **open_options) -> np.ndarray:
    """One stretch [3, 2] for several rasters cut from one scene (e.g. a data set's tiles that
    share their producer's fixed scaling): the percentiles of their pooled valid pixels, so
    each tile is stretched as a window of the whole scene would be at inference."""
    rng = np.random.default_rng(0)
    per_file = max(1, max_pixels // max(len(paths), 1))
    parts = []
    for p in paths:
        with open_scene(p, **open_options) as scene:
            vals, _ = scene_sample(scene)
        if vals.shape[1] > per_file:
            vals = vals[:, rng.choice(vals.shape[1], per_file, replace=False)]
        parts.append(vals)
    return stretch_of(np.concatenate(parts, axis=1) if parts else np.zeros((3, 0), np.float32))


def pooled_calibration(paths: Sequence[Union[str, os.PathLike]], max_pixels: int = 4_000_000,
                       **open_options) -> Optional[np.ndarray]:
    """One estimated calibration [n_bands, 2] (contract 3) for several rasters cut from one
    scene with one fixed scaling (e.g. ETCI's tiles): :func:`estimate_calibration` of their
    pooled valid pixels, so that a dry tile stays as bright as it is in its scene. None when
    the rasters are calibrated (nothing to estimate)."""
    rng = np.random.default_rng(0)
    per_file = max(1, max_pixels // max(len(paths), 1))
    parts, kinds = [], None
    for p in paths:
        try:
            scene = open_scene(p, **open_options)
        except EmptyRasterError:
            continue
        with scene:
            if scene.calibrated or not scene.fixed_mapping:
                return None
            vals = band_sample(scene)
            kinds = scene.band_kinds()
        if vals.shape[1] > per_file:
            vals = vals[:, rng.choice(vals.shape[1], per_file, replace=False)]
        parts.append(vals)
    if not parts:
        return None
    return estimate_calibration(np.concatenate(parts, axis=1), kinds)


def _band_kinds(band_names: Sequence[Optional[str]]) -> list[str]:
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


def _scene_statistics(scene: SarScene, sample: Optional[tuple[np.ndarray, np.ndarray]] = None
                      ) -> tuple[np.ndarray, float]:
    """Robust low/high per channel from a decimated read (contract 3 with backscatter
    bands: the fixed DB_MAPPING); the nodata fraction."""
    values, nodata_fraction = scene_sample(scene, sample)
    if values.shape[1] == 0 and not _any_valid_block(scene):
        raise EmptyRasterError(f"{scene.path}: contains no valid pixel (entirely nodata)")
    if scene.fixed_mapping:
        kinds = scene.band_kinds()
        chans = [kinds[0]] * 3 if scene.composition == "single" else [kinds[0], kinds[1], "ratio"]
        return np.float32([DB_MAPPING[k] for k in chans]), nodata_fraction
    stats = stretch_of(values)
    if scene.contract == 1 and scene.domain == "quicklook":   # contract 1: display values / 255
        stats[: 2 if scene.composition == "dualpol" else 3] = (0.0, 255.0)
    return stats, nodata_fraction


def _any_valid_block(scene: SarScene) -> bool:
    """Scan the scene block by block (bounded memory) for any valid pixel."""
    src = scene.src
    for _, win in src.block_windows(scene.band_indexes[0]):
        raw, masks = scene._read(win)
        if scene._represent(raw, masks)[1].any():
            return True
    return False


def _log_representation(band: np.ndarray, domain: str, complex_part: str,
                        linear_kind: str = "power") -> np.ndarray:
    """One raw band -> its log representation (see module doc), float32: dB for calibrated
    linear power (10·log10) and amplitude (20·log10, ``linear_kind="amplitude"``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if domain == "complex":
            z = band.astype(np.complex64)
            if complex_part == "amplitude":
                return (20.0 * np.log10(np.maximum(np.abs(z), LINEAR_FLOOR))).astype(np.float32)
            part = z.real if complex_part == "real" else z.imag
            return (np.sign(part) * 20.0 * np.log10(1.0 + np.abs(part))).astype(np.float32)
        v = band.astype(np.float32)
        if domain == "linear":
            factor = 20.0 if linear_kind == "amplitude" else 10.0
            return (factor * np.log10(np.maximum(v, LINEAR_FLOOR))).astype(np.float32)
        return v  # quicklook and dB are already on a log/display scale


def _physical(band: np.ndarray, domain: str, complex_part: str) -> np.ndarray:
    """Contract 1's physical value X behind a raw band (linear power for dB), float32."""
    with np.errstate(over="ignore", invalid="ignore"):
        if domain == "complex":
            z = band.astype(np.complex64)
            if complex_part == "amplitude":
                return np.abs(z).astype(np.float32)
            return (z.real if complex_part == "real" else z.imag).astype(np.float32)
        v = band.astype(np.float32)
        if domain == "db":
            return np.power(10.0, np.clip(v, -100, 100) / 10.0).astype(np.float32)
        return v


def _reflect_pad(a: np.ndarray, pads) -> np.ndarray:
    """Reflect-pad a 2-D array; falls back to edge padding for 1-pixel-wide data."""
    if min(a.shape) < 2:
        return np.pad(a, pads, mode="edge")
    return np.pad(a, pads, mode="reflect")


def pixel_size_metres(crs, transform, width: int, height: int) -> Optional[tuple[float, float]]:
    """Pixel size (x, y) in metres; geodesic at the scene centre for geographic CRSs."""
    if crs is None:
        return None
    a, e = abs(transform.a), abs(transform.e)
    if crs.is_geographic:
        from pyproj import Geod

        geod = Geod(ellps="WGS84")
        t = transform
        lon = t.c + t.a * width / 2.0 + t.b * height / 2.0
        lat = t.f + t.d * width / 2.0 + t.e * height / 2.0
        lat = max(min(lat, 89.9), -89.9)
        dx = geod.inv(lon, lat, lon + a, lat)[2]
        dy = geod.inv(lon, lat, lon, lat + (e if lat + e <= 90 else -e))[2]
        return (round(float(dx), 6), round(float(dy), 6))
    factor = crs.linear_units_factor[1] if crs.is_projected else 1.0
    return (round(float(a * factor), 6), round(float(e * factor), 6))


def describe_info(info: dict) -> Iterable[str]:
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


__all__ = ["open_scene", "EmptyRasterError", "SarScene", "WindowData", "parse_bands", "pixel_size_metres",
           "pooled_statistics", "scene_sample", "stretch_of", "pooled_calibration",
           "band_sample", "detect_calibration", "estimate_calibration", "DB_MAPPING",
           "DOMAIN_CHOICES", "CALIBRATED_CHOICES", "numpy_dtype",
           "describe_info", "DOMAINS", "COMPLEX_PARTS"]
