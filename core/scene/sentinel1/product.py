"""A Sentinel-1 GRD product as users download it: found from any of the paths a user has, its
files read in place, and what its manifest and annotation say.

Accepted paths (``find_product``): the product ``.zip`` (one ``NAME.SAFE/`` folder inside), the
unzipped ``NAME.SAFE`` folder, its ``manifest.safe``, or a GDAL subdataset string of the SAFE
driver as QGIS shows a SAFE layer's source (``SENTINEL1_DS:<manifest.safe>:IW_VV``,
``SENTINEL1_CALIB:SIGMA0:<manifest.safe>:IW_VV:AMPLITUDE``, the manifest possibly under
``/vsizip/``).

Products are untrusted input: a zip is read in place, never extracted; entry names with ``..``
or an absolute path are ignored; a member is read with a size cap (the sizes a zip states are
not trusted); XML is parsed without DTDs or entities (safe_xml.py). IW and EW GRD products are
accepted; SLC, WV and other missions or modes are refused in one line that says what to use.
"""
from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Optional, Union

import numpy as np

from ...errors import InputError
from . import safe_xml

MODES = ("IW", "EW")
XML_MAX_BYTES = 64 * 1024 * 1024      # the largest XML member read (annotations are ~2 MB)
_SUBDATASET = re.compile(r"^SENTINEL1_(?:DS|CALIB:\w+):(.+?manifest\.safe)(?::.*)?$", re.IGNORECASE)


@dataclass
class PolarizationFiles:
    """The files of one polarization, as paths relative to the SAFE folder."""

    annotation: str
    calibration: str
    noise: str
    measurement: str


@dataclass
class GcpGrid:
    """The annotation's geolocation grid: float64 arrays [n] of line, pixel, lon, lat, height (m),
    incidence angle (degrees)."""

    line: np.ndarray
    pixel: np.ndarray
    lon: np.ndarray
    lat: np.ndarray
    height: np.ndarray
    incidence: np.ndarray


@dataclass
class Product:
    """An open product: where it is, what its manifest says, and its files by polarization."""

    path: Path                        # what the user gave (zip, folder, manifest or subdataset's file)
    name: str                         # NAME of NAME.SAFE
    zip_path: Optional[Path]          # the zip, or None for a folder
    root: str                         # the SAFE folder: a folder path, or the member prefix in the zip
    mission: str = ""
    mode: str = ""
    product_type: str = ""
    polarizations: list[str] = field(default_factory=list)
    start: str = ""
    stop: str = ""
    orbit_direction: str = ""
    relative_orbit: Optional[int] = None
    footprint: list[tuple[float, float]] = field(default_factory=list)   # (lon, lat)
    files: dict[str, PolarizationFiles] = field(default_factory=dict)
    _zip: Optional[zipfile.ZipFile] = field(default=None, repr=False)

    # -- files ---------------------------------------------------------------------------
    def read(self, relative: str, limit: int = XML_MAX_BYTES) -> bytes:
        """The bytes of the product file ``relative`` (to the SAFE folder), at most ``limit``."""
        relative = _clean(relative)
        if relative is None:
            raise InputError(f"{self.path}: refers to a file outside the product")
        if self._zip is not None:
            member = self.root + relative
            try:
                with self._zip.open(member) as f:
                    data = f.read(limit + 1)
            except KeyError:
                raise InputError(f"{self.path}: {relative} is missing from the zip") from None
            except (zipfile.BadZipFile, OSError, EOFError) as e:
                raise InputError(f"{self.path}: {relative} cannot be read from the zip, the zip "
                                 f"is truncated or damaged ({e})") from None
        else:
            file = Path(self.root) / relative
            if not file.is_file():
                raise InputError(f"{self.path}: {relative} is missing")
            with open(file, "rb") as f:
                data = f.read(limit + 1)
        if len(data) > limit:
            raise InputError(f"{self.path}: {relative} is larger than {limit // 2**20} MiB")
        return data

    def exists(self, relative: str) -> bool:
        """Whether the product holds the file ``relative``."""
        relative = _clean(relative)
        if relative is None:
            return False
        if self._zip is not None:
            return (self.root + relative) in self._zip.namelist()
        return (Path(self.root) / relative).is_file()

    def xml(self, relative: str):
        """The parsed XML file ``relative`` (safe_xml.parse)."""
        return safe_xml.parse(self.read(relative), f"{self.name}/{relative}")

    def gdal_path(self, relative: str) -> str:
        """A path GDAL opens for the product file ``relative`` (``/vsizip/`` inside a zip)."""
        if self.zip_path is not None:
            return f"/vsizip/{self.zip_path}/{self.root}{relative}"
        return str(Path(self.root) / relative)

    def close(self) -> None:
        """Close the zip (if any)."""
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def __enter__(self) -> "Product":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- annotation ----------------------------------------------------------------------
    def image_size(self, pol: Optional[str] = None) -> tuple[int, int]:
        """(width = numberOfSamples, height = numberOfLines) of the measurement, from the annotation."""
        name = self.files[pol or self.polarizations[0]].annotation
        root = self.xml(name)
        info = safe_xml.find_all(root, "imageInformation")
        where = info[0] if info else root
        try:
            return (int(safe_xml.text(where, "numberOfSamples", name)),
                    int(safe_xml.text(where, "numberOfLines", name)))
        except ValueError:
            raise InputError(f"{self.name}/{name}: numberOfSamples / numberOfLines are not integers") from None

    def gcp_grid(self, pol: Optional[str] = None) -> GcpGrid:
        """The geolocation grid of the annotation of ``pol`` (the first polarization by default)."""
        name = self.files[pol or self.polarizations[0]].annotation
        points = safe_xml.find_all(self.xml(name), "geolocationGridPoint")
        if len(points) < 3:
            raise InputError(f"{self.name}/{name}: fewer than 3 geolocation grid points")
        cols = {k: [] for k in ("line", "pixel", "longitude", "latitude", "height", "incidenceAngle")}
        for p in points:
            for k in cols:
                try:
                    cols[k].append(float(safe_xml.child_text(p, k, name)))
                except ValueError:
                    raise InputError(f"{self.name}/{name}: a grid point's <{k}> is not a number") from None
        return GcpGrid(*(np.array(cols[k]) for k in cols))

    def check_measurements(self) -> None:
        """InputError naming the polarizations whose measurement TIFF the product lacks."""
        missing = [p for p in self.polarizations if not self.exists(self.files[p].measurement)]
        if missing:
            raise InputError(f"{self.path}: no measurement TIFF for {', '.join(missing)} "
                             f"({self.files[missing[0]].measurement} is missing); the download is "
                             f"incomplete, download the product again")


def is_product(path: Union[str, os.PathLike]) -> bool:
    """Whether ``path`` names a Sentinel-1 product (zip, SAFE folder, manifest or SAFE
    subdataset), by its name and, for a zip, its members; never raises."""
    text = str(path)
    if _SUBDATASET.match(text):
        return True
    p = Path(text)
    if p.name.lower() == "manifest.safe" or p.suffix.upper() == ".SAFE":
        return True
    if p.suffix.lower() == ".zip" and p.is_file():
        try:
            with zipfile.ZipFile(p) as z:
                return any(n.endswith(".SAFE/manifest.safe") for n in z.namelist())
        except (zipfile.BadZipFile, OSError):
            return p.name.upper().startswith(("S1A_", "S1B_", "S1C_", "S1D_"))
    return False


def product_stem(path: Union[str, os.PathLike]) -> str:
    """The name outputs of the product ``path`` take: NAME of NAME.SAFE (from the path alone)."""
    text = str(path)
    m = _SUBDATASET.match(text)
    p = Path(m.group(1) if m else text)
    if p.name.lower() == "manifest.safe":
        p = p.parent
    name = p.name
    for suffix in (".zip", ".SAFE", ".safe"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if name.lower().endswith(".safe"):
        name = name[:-5]
    return name


def find_product(path: Union[str, os.PathLike]) -> Product:
    """Open the product ``path`` names (see the module doc) and read its manifest; InputError in
    one line for anything that is not a readable IW / EW GRD product."""
    text = str(path)
    m = _SUBDATASET.match(text)
    if m:
        text = m.group(1)
        if text.startswith("/vsizip/"):
            inner = text[len("/vsizip/"):]
            cut = inner.lower().find(".zip")
            if cut < 0:
                raise InputError(f"{path}: a /vsizip/ subdataset without a .zip")
            text = inner[:cut + 4]
    p = Path(text)
    if p.name.lower() == "manifest.safe":
        p = p.parent
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_dir():
        if not (p / "manifest.safe").is_file():
            raise InputError(f"{p}: a folder without manifest.safe, not a Sentinel-1 SAFE product")
        name = p.name[:-5] if p.name.upper().endswith(".SAFE") else p.name
        product = Product(path=Path(path) if not m else p, name=name, zip_path=None, root=str(p))
    elif p.suffix.lower() != ".zip":
        raise InputError(f"{p}: not a Sentinel-1 product (a product is a .zip, a .SAFE folder or its "
                         f"manifest.safe)")
    else:
        product = _open_zip(p)
    try:
        _read_manifest(product)
    except BaseException:
        product.close()
        raise
    return product


def _clean(relative: str) -> Optional[str]:
    """A relative product path without "./"; None for one with ".." or an absolute path."""
    rel = relative[2:] if relative.startswith("./") else relative
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or "\\" in rel:
        return None
    return str(pure)


def _open_zip(p: Path) -> Product:
    try:
        z = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"{p}: not a readable zip, the download is truncated or damaged ({e})") from None
    names = [n for n in z.namelist() if _clean(n) is not None]
    manifests = [n for n in names if n.endswith(".SAFE/manifest.safe") and n.count("/") == 1]
    if len(manifests) != 1:
        z.close()
        what = "no" if not manifests else "several"
        raise InputError(f"{p}: a zip with {what} NAME.SAFE/manifest.safe, not a Sentinel-1 product")
    root = manifests[0][: -len("manifest.safe")]
    return Product(path=p, name=root[:-6], zip_path=p, root=root, _zip=z)


def _read_manifest(product: Product) -> None:
    """Fill ``product``'s metadata and files from its manifest.safe; refuse what is not IW / EW GRD."""
    root = product.xml("manifest.safe")
    file = f"{product.name}/manifest.safe"
    family = safe_xml.text(root, "familyName", file)
    number = safe_xml.text(root, "number", file)
    if family.upper() != "SENTINEL-1":
        raise InputError(f"{product.path}: a product of {family}, not of Sentinel-1; only Sentinel-1 GRD "
                         f"products are read (convert others to a calibrated GeoTIFF first)")
    product.mission = f"S1{number}"
    product.mode = safe_xml.text(root, "mode", file).upper()
    product.product_type = safe_xml.text(root, "productType", file).upper()
    if product.product_type == "SLC":
        raise InputError(f"{product.path}: an SLC product (complex, not multilooked); use the GRD product "
                         f"of the same acquisition, or give one SLC measurement TIFF to ces directly")
    if product.mode == "WV":
        raise InputError(f"{product.path}: a Wave mode (WV) product holds ocean vignettes, not a scene to "
                         f"map; use an IW or EW GRD product")
    if product.product_type != "GRD":
        raise InputError(f"{product.path}: product type {product.product_type}; only GRD products are read")
    if product.mode not in MODES:
        raise InputError(f"{product.path}: acquisition mode {product.mode}; only IW and EW GRD products are "
                         f"read (convert this one to a calibrated GeoTIFF first)")
    product.polarizations = [e.text.strip().upper() for e in safe_xml.find_all(root, "transmitterReceiverPolarisation")]
    product.start = safe_xml.text(root, "startTime", file)
    product.stop = safe_xml.text(root, "stopTime", file)
    product.orbit_direction = safe_xml.text(root, "pass", file).upper()
    orbits = [e for e in safe_xml.find_all(root, "relativeOrbitNumber")]
    product.relative_orbit = int(orbits[0].text) if orbits and (orbits[0].text or "").strip().isdigit() else None
    coords = safe_xml.find_all(root, "coordinates")
    if coords and coords[0].text:
        pairs = [c.split(",") for c in coords[0].text.split()]
        product.footprint = [(float(lon), float(lat)) for lat, lon in pairs]
    hrefs = [e.get("href", "") for e in root.iter() if safe_xml.local(e.tag) == "fileLocation"]
    for pol in product.polarizations:
        tag = f"-{pol.lower()}-"

        def one(kind_re: str) -> str:
            hits = [_clean(h) for h in hrefs if re.search(kind_re, h) and tag in PurePosixPath(h).name]
            hits = [h for h in hits if h]
            if not hits:
                raise InputError(f"{product.path}: the manifest lists no {kind_re.strip('^/')} file for {pol}")
            return hits[0]

        product.files[pol] = PolarizationFiles(
            annotation=one(r"^\./annotation/s1"), calibration=one(r"/calibration/calibration-"),
            noise=one(r"/calibration/noise-"), measurement=one(r"^\./measurement/"))
    if not product.files:
        raise InputError(f"{product.path}: the manifest names no polarization")
