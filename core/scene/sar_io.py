"""The SAR input layer: open any GDAL raster, choose its bands, detect its value domain and
calibration, and read windows as model input under the input contracts
(core/scene/contracts.py: what each contract does to the values).

``open_scene(path, ...)`` -> ``SarScene``; ``SarScene.read_window(window)`` -> ``WindowData``
(x float32 [3, h, w] in 0..1, phys float32 [h, w], valid bool [h, w]).

Rasters georeferenced only by GCPs or RPCs are refused with a hint to orthorectify them
(``gdalwarp``): their outputs would otherwise be silently misplaced. A raster with no
georeferencing at all is accepted with a warning; its outputs carry no CRS.
"""
from __future__ import annotations

import os
import warnings as _warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from ..errors import InputError, bare, parameter, word_parameters
from . import raster_check
from .calibration import detect_calibration, estimate_calibration
from .contracts import (
    COMPLEX_PARTS,
    CONTRACTS,
    DOMAIN_CHOICES,
    INPUT_CONTRACT,
    LINEAR_KINDS,
    SUPPORTED_DTYPES,
    BandSpec,
    band_kinds,
)
from .pixel_size import pixel_size_m
from .sampling import EmptyRasterError, band_sample, decimated_read, scene_statistics  # noqa: F401 (EmptyRasterError: open_scene raises it)
from .values import log_representation, mask_values, numpy_dtype_name, physical_values, reflect_pad


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
            phys = np.log1p(np.abs(physical_values(raw[0], self.domain, self.complex_part)))
            phys = np.where(valid, phys, 0.0).astype(np.float32)
        else:
            phys = x[0].copy()
        pads = ((r0 - row0, row0 + h - r1), (c0 - col0, col0 + w - c1))
        if any(p for pair in pads for p in pair):
            x = np.stack([reflect_pad(ch, pads) for ch in x])
            phys = reflect_pad(phys, pads)
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
        return raw, mask_values(raw, masks, self.nodata_values)

    @property
    def fixed_mapping(self) -> bool:
        """Contract 3 with backscatter bands: dB through DB_MAPPING (else a per-scene stretch)."""
        return (self.contract >= 3 and self.composition != "rgb"
                and (self.domain != "complex" or self.complex_part == "amplitude"))

    def band_kinds(self) -> list[str]:
        """"co" or "cross" for each selected band (by description; unnamed: co, then cross)."""
        return band_kinds(self.band_names)

    def _band_reps(self, raw: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw bands [n, h, w] -> (log representation of each band [n, h, w], valid [h, w])."""
        valid = np.all(masks > 0, axis=0)
        finite = np.all(np.isfinite(raw), axis=0) if raw.dtype.kind in "fc" else None
        if finite is not None:
            valid &= finite
        reps = np.stack([log_representation(b, self.domain, self.complex_part,
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

    sample = decimated_read(src, band_indexes, nodata_values)   # the one decimated read
    if domain is None:
        domain = _detect_domain(src, band_indexes, sample)
    elif domain == "complex" and not np.issubdtype(np.dtype(numpy_dtype_name(src.dtypes[0])),
                                                   np.complexfloating):
        raise InputError(f"{path}: {parameter('domain')} complex given but the data type is {src.dtypes[0]}")

    scene = SarScene(
        path=path, width=src.width, height=src.height, count=src.count, dtype=src.dtypes[0],
        crs=crs, transform=src.transform, domain=domain, band_indexes=band_indexes,
        band_names=band_names, composition=composition, complex_part=complex_part,
        contract=contract, warnings=warnings, driver=src.driver, _src=src,
        nodata_values=tuple(float(v) for v in nodata_values),
    )
    scene.pixel_size_m = (None if crs is None else tuple(
        round(float(v), 6) for v in pixel_size_m(crs, src.transform, src.width, src.height)))
    scene.calibration = np.tile(np.float32([1.0, 0.0]), (len(band_indexes), 1))
    scene.calibrated, scene.linear_kind, scene.calibration_reason = detect_calibration(
        *sample, domain, scene.dtype, scene.band_kinds(), linear_kind, calibrated)
    if scene.fixed_mapping and not scene.calibrated:
        if calibration is not None:
            scene.calibration = np.asarray(calibration, np.float32).reshape(-1, 2).copy()
        else:
            scene.calibration = estimate_calibration(band_sample(scene, sample), scene.band_kinds())
    scene.stats, scene.nodata_fraction = scene_statistics(scene, sample)
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


def _detect_domain(src, band_indexes: list[int], sample: tuple[np.ndarray, np.ndarray]) -> str:
    """The value domain of the selected bands, from their dtype and (float data) the
    decimated ``sample`` (bands, valid) of :func:`decimated_read`."""
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

