"""Small Sentinel-1 GRD products for the SAFE reader's tests, made from the two real products in
../shared/data/s1_safe (their measurement/ folders are empty: only the annotations are real).

``reduce_product`` writes a copy of a product at 1/factor of its size: every size and (line, pixel)
position in the annotation, calibration and noise XML scaled, everything else in those files kept
byte for byte, and measurement TIFFs (uint16 DN, GCPs, no transform) made by inverting the ESA
calibration from a known sigma0 map, by default a lake in flat land (``lake_map``). The test
side's own, independent view of the result: ``interpolated_luts`` (sigmaNought LUT A and noise
power N on the full grid, so that sigma0 = (DN^2 - N) / A^2), ``lake_centre`` and ``gcp_lonlat``.

Position scaling: a position v becomes round(v / factor) (half up), clipped to the new size - 1;
where that makes a vector's positions repeat, the repeats are dropped with their LUT values (the
first one is kept), so positions stay strictly increasing; the same for whole vectors whose line
repeats (and grid points whose (line, pixel) repeats). Block bounds (noise azimuth blocks,
swathMerging's swathBounds) keep their blocks contiguous and disjoint: first -> round(first /
factor), last -> round((last + 1) / factor) - 1, a last at the image's edge -> the new edge; a
block that so becomes empty is dropped. The manifest's size and MD5 of every file rewritten or
added are updated. Nothing here imports the reader (crossearth_sar.core.scene.sentinel1)."""
from __future__ import annotations

import hashlib
import math
import os
import re
import warnings
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile
from scipy.interpolate import RegularGridInterpolator, griddata

REPO = Path(__file__).resolve().parents[1]
S1_SAFE = Path(os.environ.get("CES_SHARED_DATA", REPO.parent / "shared" / "data")) / "s1_safe"
PRODUCTS = {
    # IPF 2.x: noiseVectorList/noiseVector (range noise only)
    "old_noise": S1_SAFE / "S1A_IW_GRDH_1SDV_20150203T043109_20150203T043134_004454_00574F_6D00.zip",
    # IPF 3.x: noiseRangeVectorList + noiseAzimuthVectorList (one block per sub-swath)
    "new_noise": S1_SAFE / "S1A_IW_GRDH_1SDV_20210119T031653_20210119T031718_036201_043ED0_8255.zip",
}

LAND = {"VV": -8.0, "VH": -15.0}
LAKE = {"VV": -22.0, "VH": -29.0}

Sigma0Map = Callable[[np.ndarray, np.ndarray], "dict[str, np.ndarray]"]


# ---------------------------------------------------------------------------------------------
# The product as files: a zip holding <name>.SAFE/... or a <name>.SAFE folder
# ---------------------------------------------------------------------------------------------

class _Safe:
    """Read access to the files of a product, by their path inside the .SAFE folder."""

    def __init__(self, path: Path | str):
        path = Path(path)
        self.path = path
        if path.is_dir():
            root = path if path.name.upper().endswith(".SAFE") else next(iter(sorted(path.glob("*.SAFE"))), None)
            if root is None:
                raise FileNotFoundError(f"no .SAFE folder at {path}")
            self.root = root
            self.name = root.name[: -len(".SAFE")]
            self.files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
            self.zip_prefix = None
        else:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
            tops = {n.split("/", 1)[0] for n in names}
            safe = [t for t in tops if t.upper().endswith(".SAFE")]
            if len(safe) != 1:
                raise ValueError(f"{path}: expected one <name>.SAFE/ folder in the zip, found {sorted(tops)}")
            self.root = None
            self.name = safe[0][: -len(".SAFE")]
            self.zip_prefix = safe[0] + "/"
            self.files = sorted(n[len(self.zip_prefix):] for n in names if n.startswith(self.zip_prefix) and not n.endswith("/"))

    def read(self, rel: str) -> bytes:
        if self.root is not None:
            return (self.root / rel).read_bytes()
        with zipfile.ZipFile(self.path) as zf:
            return zf.read(self.zip_prefix + rel)

    def stems(self) -> list[str]:
        """The product annotations' stems (s1a-iw-grd-vv-...-001), one per measurement."""
        pat = re.compile(r"^annotation/(s1[a-z]-[^/]*)\.xml$", re.I)
        return [m[1] for m in map(pat.match, self.files) if m]

    def stem(self, pol: str) -> str:
        """The annotation stem of a polarisation."""
        hits = [s for s in self.stems() if f"-{pol.lower()}-" in s.lower()]
        if len(hits) != 1:
            raise FileNotFoundError(f"{self.path}: {len(hits)} product annotations for {pol}")
        return hits[0]


def _annotation_paths(stem: str) -> tuple[str, str, str]:
    return (f"annotation/{stem}.xml", f"annotation/calibration/calibration-{stem}.xml",
            f"annotation/calibration/noise-{stem}.xml")


# ---------------------------------------------------------------------------------------------
# Text-level XML editing (everything not touched stays byte for byte)
# ---------------------------------------------------------------------------------------------

def _leaf_re(tag: str) -> re.Pattern:
    return re.compile(rf"<{tag}(?P<attr>\s[^>]*)?>(?P<text>[^<]*)</{tag}>")


def _get(block: str, tag: str) -> str:
    m = _leaf_re(tag).search(block)
    if m is None:
        raise ValueError(f"no <{tag}> in {block[:200]!r}")
    return m["text"]


def _set(block: str, tag: str, text: str, count: int | None = None) -> str:
    def sub(m):
        attr = m["attr"] or ""
        if count is not None:
            attr = re.sub(r'count="\d+"', f'count="{count}"', attr)
        return f"<{tag}{attr}>{text}</{tag}>"

    new, n = _leaf_re(tag).subn(sub, block, count=1)
    if n != 1:
        raise ValueError(f"no <{tag}> in {block[:200]!r}")
    return new


def _set_all(text: str, tag: str, fn: Callable[[str], str]) -> str:
    """Every <tag>v</tag> in text -> <tag>fn(v)</tag>."""
    return _leaf_re(tag).sub(lambda m: f"<{tag}{m['attr'] or ''}>{fn(m['text'])}</{tag}>", text)


def _rewrite_lists(text: str, item: str, fn: Callable[[str], "tuple[str, object] | None"]) -> str:
    """Rewrite each <item> block of every <itemList>: fn(body) -> (new body, key) or None to drop
    it; a block whose key (not None) repeats an earlier one of its list is dropped too. The
    list's count attribute follows."""
    list_re = re.compile(rf"<{item}List(?P<attr>[^>]*)>(?P<body>.*?)</{item}List>", re.S)
    item_re = re.compile(rf"(?P<lead>\n[ \t]*)?<{item}>(?P<body>.*?)</{item}>", re.S)

    def one_list(m):
        seen, kept = set(), 0

        def one_item(mi):
            nonlocal kept
            out = fn(mi["body"])
            if out is None:
                return ""
            body, key = out
            if key is not None:
                if key in seen:
                    return ""
                seen.add(key)
            kept += 1
            return f"{mi['lead'] or ''}<{item}>{body}</{item}>"

        body = item_re.sub(one_item, m["body"])
        attr = re.sub(r'count="\d+"', f'count="{kept}"', m["attr"])
        return f"<{item}List{attr}>{body}</{item}List>"

    return list_re.sub(one_list, text)


def _fmt_like(orig: str, value: float) -> str:
    """value written the way orig is (1.000000e+01 -> 8.000000e+01)."""
    m = re.fullmatch(r"\s*-?\d\.(\d+)[eE][+-]?\d+\s*", orig)
    return f"{value:.{len(m[1])}e}" if m else repr(value)


class _Scale:
    """Positions of the full product -> positions of the reduced one."""

    def __init__(self, factor: int, lines: int, samples: int):
        self.factor = factor
        self.old = {"line": lines, "pixel": samples}
        self.new = {"line": math.ceil(lines / factor), "pixel": math.ceil(samples / factor)}

    def pos(self, v: float, axis: str) -> int:
        return int(min(max(math.floor(v / self.factor + 0.5), 0), self.new[axis] - 1))

    def last(self, v: float, axis: str) -> int:
        """The last position of a block (inclusive), so that blocks stay contiguous."""
        if v >= self.old[axis] - 1:
            return self.new[axis] - 1
        return int(min(max(math.floor((v + 1) / self.factor + 0.5) - 1, -1), self.new[axis] - 1))

    def positions(self, tokens: list[str], axis: str) -> tuple[list[int], list[int]]:
        """Scaled positions, strictly increasing, and the indices of the kept ones."""
        out, keep = [], []
        for i, t in enumerate(tokens):
            p = self.pos(float(t), axis)
            if not out or p > out[-1]:
                out.append(p)
                keep.append(i)
        return out, keep


def _reduce_vectors(text: str, item: str, sc: _Scale, luts: tuple[str, ...]) -> str:
    """calibrationVector / noiseVector / noiseRangeVector: line, pixel list and LUT lists."""
    def fn(body):
        line = sc.pos(float(_get(body, "line")), "line")
        pix, keep = sc.positions(_get(body, "pixel").split(), "pixel")
        body = _set(body, "line", str(line))
        body = _set(body, "pixel", " ".join(map(str, pix)), count=len(pix))
        for tag in luts:
            toks = _get(body, tag).split()
            body = _set(body, tag, " ".join(toks[i] for i in keep), count=len(keep))
        return body, line

    return _rewrite_lists(text, item, fn)


def _reduce_bounds(body: str, sc: _Scale) -> str | None:
    """firstAzimuthLine/firstRangeSample/lastAzimuthLine/lastRangeSample of a block; None if it
    becomes empty."""
    fl = sc.pos(float(_get(body, "firstAzimuthLine")), "line")
    fp = sc.pos(float(_get(body, "firstRangeSample")), "pixel")
    ll = sc.last(float(_get(body, "lastAzimuthLine")), "line")
    lp = sc.last(float(_get(body, "lastRangeSample")), "pixel")
    if ll < fl or lp < fp:
        return None
    for tag, v in (("firstAzimuthLine", fl), ("firstRangeSample", fp), ("lastAzimuthLine", ll), ("lastRangeSample", lp)):
        body = _set(body, tag, str(v))
    return body


def _reduce_azimuth_vectors(text: str, sc: _Scale) -> str:
    def fn(body):
        body = _reduce_bounds(body, sc)
        if body is None:
            return None
        lines, keep = sc.positions(_get(body, "line").split(), "line")
        body = _set(body, "line", " ".join(map(str, lines)), count=len(lines))
        toks = _get(body, "noiseAzimuthLut").split()
        body = _set(body, "noiseAzimuthLut", " ".join(toks[i] for i in keep), count=len(keep))
        return body, None

    return _rewrite_lists(text, "noiseAzimuthVector", fn)


def _reduce_annotation(text: str, sc: _Scale) -> str:
    f = sc.factor
    info = re.search(r"<imageInformation>.*?</imageInformation>", text, re.S)
    block = _set(info[0], "numberOfSamples", str(sc.new["pixel"]))
    block = _set(block, "numberOfLines", str(sc.new["line"]))
    text = text[: info.start()] + block + text[info.end():]
    for tag in ("rangePixelSpacing", "azimuthPixelSpacing"):   # imageInformation (productInformation)
        text = _set_all(text, tag, lambda v: _fmt_like(v, float(v) * f))
    for tag in ("linesPerBurst", "samplesPerBurst"):            # swathTiming: 0 in GRD
        text = _set_all(text, tag, lambda v: str(math.ceil(int(v) / f)))

    def grid_point(body):
        line = sc.pos(float(_get(body, "line")), "line")
        pixel = sc.pos(float(_get(body, "pixel")), "pixel")
        return _set(_set(body, "line", str(line)), "pixel", str(pixel)), (line, pixel)

    text = _rewrite_lists(text, "geolocationGridPoint", grid_point)

    def bounds(body):
        body = _reduce_bounds(body, sc)
        return None if body is None else (body, None)

    return _rewrite_lists(text, "swathBounds", bounds)


def _reduce_calibration(text: str, sc: _Scale) -> str:
    return _reduce_vectors(text, "calibrationVector", sc, ("sigmaNought", "betaNought", "gamma", "dn"))


def _reduce_noise(text: str, sc: _Scale) -> str:
    text = _reduce_vectors(text, "noiseVector", sc, ("noiseLut",))             # old layout
    text = _reduce_vectors(text, "noiseRangeVector", sc, ("noiseRangeLut",))   # new layout
    return _reduce_azimuth_vectors(text, sc)


# ---------------------------------------------------------------------------------------------
# Interpolation of the LUTs (the tests' own, independent of the reader)
# ---------------------------------------------------------------------------------------------

def _floats(s: str) -> np.ndarray:
    return np.array(s.split(), dtype=np.float64)


def _image_size(annotation: ET.Element) -> tuple[int, int]:
    info = annotation.find("imageAnnotation/imageInformation")
    return int(info.findtext("numberOfLines")), int(info.findtext("numberOfSamples"))


def _grid(root: ET.Element, vector: str, lut: str, height: int, width: int) -> np.ndarray | None:
    """A sparse LUT (vectors at lines, values at pixels) on the full grid: linear in range
    within each vector (np.interp), then linear in azimuth between the vectors; constant past
    the first and last position."""
    vectors = list(root.iter(vector))
    if not vectors:
        return None
    lines = np.array([float(v.findtext("line")) for v in vectors])
    if np.any(np.diff(lines) <= 0):
        raise ValueError(f"{vector} lines not strictly increasing: {lines}")
    cols = np.arange(width, dtype=np.float64)
    rows = np.stack([np.interp(cols, _floats(v.findtext("pixel")), _floats(v.findtext(lut))) for v in vectors])
    if len(vectors) == 1:
        return np.repeat(rows, height, axis=0)
    y = np.arange(height, dtype=np.float64)
    i = np.clip(np.searchsorted(lines, y, side="right") - 1, 0, len(lines) - 2)
    w = np.clip((y - lines[i]) / (lines[i + 1] - lines[i]), 0.0, 1.0)[:, None]
    return rows[i] * (1.0 - w) + rows[i + 1] * w


def _luts(calibration: bytes, noise: bytes, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    a = _grid(ET.fromstring(calibration), "calibrationVector", "sigmaNought", height, width)
    nroot = ET.fromstring(noise)
    n = _grid(nroot, "noiseRangeVector", "noiseRangeLut", height, width)
    if n is None:                                                   # old layout: range only
        n = _grid(nroot, "noiseVector", "noiseLut", height, width)
        if n is None:
            raise ValueError("noise annotation without noiseVector or noiseRangeVector")
    for v in nroot.iter("noiseAzimuthVector"):                     # new layout: x azimuth factor
        fl, ll = int(v.findtext("firstAzimuthLine")), int(v.findtext("lastAzimuthLine"))
        fp, lp = int(v.findtext("firstRangeSample")), int(v.findtext("lastRangeSample"))
        y = np.arange(fl, ll + 1, dtype=np.float64)
        n[fl:ll + 1, fp:lp + 1] *= np.interp(y, _floats(v.findtext("line")), _floats(v.findtext("noiseAzimuthLut")))[:, None]
    return a, n


def interpolated_luts(product_dir_or_zip: Path | str, pol: str) -> tuple[np.ndarray, np.ndarray]:
    """(A, N), float64 [lines, samples] of the (reduced) product: the sigmaNought LUT and the
    noise power (new layout: noiseRangeLut x noiseAzimuthLut of the block holding the pixel,
    1 outside every block; old layout: noiseLut), bilinear between the sparse vectors, so that
    sigma0 (linear) = (DN^2 - N) / A^2. Meant for reduced products (a full one needs GBs)."""
    safe = _Safe(product_dir_or_zip)
    ann, cal, noi = _annotation_paths(safe.stem(pol))
    h, w = _image_size(ET.fromstring(safe.read(ann)))
    return _luts(safe.read(cal), safe.read(noi), h, w)


def measurement_path(product: Path | str, pol: str) -> str:
    """The GDAL path (/vsizip/... for a zip) of the product's measurement TIFF of pol."""
    safe = _Safe(product)
    stem = safe.stem(pol)
    rel = next(r for r in _measurements(safe.read("manifest.safe")) if r.rsplit("/", 1)[-1].startswith(stem + "."))
    if safe.root is not None:
        return str(safe.root / rel)
    return f"/vsizip/{Path(product).resolve()}/{safe.zip_prefix}{rel}"


def expected_sigma0(product: Path | str, pol: str) -> np.ndarray:
    """sigma0 (linear, float64 [lines, samples]) that a reader must find in the product: (DN^2 -
    N) / A^2 of its measurement TIFF with interpolated_luts' A and N, NaN where DN is 0. Exact,
    unlike the sigma0 map it was made from: DN rounding moves a dark pixel's sigma0 by up to
    ~0.4 dB (the lake in VH, DN 30..40) and a class mean by up to ~0.05 dB."""
    import rasterio

    with rasterio.open(measurement_path(product, pol)) as ds:
        dn = ds.read(1).astype(np.float64)
    a, n = interpolated_luts(product, pol)
    s0 = (dn * dn - n) / (a * a)
    s0[dn == 0] = np.nan
    return s0


# ---------------------------------------------------------------------------------------------
# The sigma0 map, the lake, the GCPs
# ---------------------------------------------------------------------------------------------

def lake_map(lines: np.ndarray, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """sigma0 in dB on the full grid (lines, pixels: 2-D coordinate arrays): land (LAND) with a
    circular lake (LAKE) centred at (height / 2, width / 2), radius min(height, width) / 6."""
    h, w = float(np.max(lines)) + 1.0, float(np.max(pixels)) + 1.0
    lake = (lines - h / 2) ** 2 + (pixels - w / 2) ** 2 <= (min(h, w) / 6) ** 2
    return {pol: np.where(lake, LAKE[pol], LAND[pol]).astype(np.float64) for pol in ("VV", "VH")}


def image_size(product_path: Path | str) -> tuple[int, int]:
    """(numberOfLines, numberOfSamples) of the product's annotation."""
    safe = _Safe(product_path)
    return _image_size(ET.fromstring(safe.read(_annotation_paths(safe.stems()[0])[0])))


def lake_centre(product_path: Path | str) -> tuple[float, float]:
    """(line, pixel) of the lake's centre on the (reduced) product's grid, in the annotation's
    index coordinates (those of the geolocation grid: row i, column j at (i, j)): (H / 2, W / 2),
    the centroid of the lake's pixels."""
    h, w = image_size(product_path)
    return h / 2, w / 2


def lake_radius(product_path: Path | str) -> float:
    """The lake's radius in pixels of the (reduced) product's grid."""
    h, w = image_size(product_path)
    return min(h, w) / 6


def _grid_points(annotation: bytes) -> list[dict[str, float]]:
    root = ET.fromstring(annotation)
    return [{k: float(p.findtext(k)) for k in ("line", "pixel", "latitude", "longitude", "height")}
            for p in root.iter("geolocationGridPoint")]


def grid_points(product_path: Path | str, pol: str | None = None) -> list[dict[str, float]]:
    """The geolocation grid of the product: dicts of line, pixel, latitude, longitude, height."""
    safe = _Safe(product_path)
    stem = safe.stem(pol) if pol else safe.stems()[0]
    return _grid_points(safe.read(_annotation_paths(stem)[0]))


def gcp_lonlat(product: Path | str, line, pixel):
    """(lon, lat) that the geolocation grid gives to a (line, pixel) of the product's grid:
    bilinear interpolation between the grid points where they form a (lines x pixels) lattice,
    as GRD grids do (scipy RegularGridInterpolator), else piecewise-linear over their Delaunay
    triangles (scipy griddata, linear). Scalars in, floats out; arrays in, arrays out (NaN
    outside the grid)."""
    pts = grid_points(product)
    ln, px = np.broadcast_arrays(np.asarray(line, dtype=float), np.asarray(pixel, dtype=float))
    q = np.stack([ln.ravel(), px.ravel()], axis=-1)
    lines = np.unique([p["line"] for p in pts])
    pixels = np.unique([p["pixel"] for p in pts])
    table = {(p["line"], p["pixel"]): (p["longitude"], p["latitude"]) for p in pts}
    if len(table) == len(pts) == len(lines) * len(pixels):
        grid = np.array([[table[(y, x)] for x in pixels] for y in lines])          # [lines, pixels, 2]
        out = RegularGridInterpolator((lines, pixels), grid, bounds_error=False, fill_value=np.nan)(q)
        lo, la = out[:, 0], out[:, 1]
    else:
        xy = np.array([(p["line"], p["pixel"]) for p in pts])
        lo = griddata(xy, np.array([p["longitude"] for p in pts]), q, method="linear")
        la = griddata(xy, np.array([p["latitude"] for p in pts]), q, method="linear")
    lo, la = lo.reshape(ln.shape), la.reshape(ln.shape)
    if ln.ndim == 0:
        return float(lo), float(la)
    return lo, la


# ---------------------------------------------------------------------------------------------
# The reduced product
# ---------------------------------------------------------------------------------------------

def _measurements(manifest: bytes) -> list[str]:
    """The measurement files' paths (measurement/...tiff) as the manifest names them."""
    root = ET.fromstring(manifest)
    hrefs = []
    for do in root.iter("dataObject"):
        if do.get("repID") == "s1Level1MeasurementSchema":
            hrefs.append(re.sub(r"^\./", "", do.find("byteStream/fileLocation").get("href")))
    return hrefs


def _update_manifest(manifest: str, files: dict[str, bytes]) -> str:
    """Size and MD5 of each rewritten file in the manifest's dataObjectSection."""
    for rel, data in files.items():
        pat = re.compile(r'(<byteStream\b[^>]*\bsize=")\d+("[^>]*>\s*<fileLocation\b[^>]*\bhref="(?:\./)?'
                         + re.escape(rel) + r'"[^>]*/>\s*<checksum\b[^>]*>)[0-9a-fA-F]*(</checksum>)')
        manifest = pat.sub(lambda m: f"{m[1]}{len(data)}{m[2]}{hashlib.md5(data).hexdigest()}{m[3]}", manifest)
    return manifest


def _tiff(dn: np.ndarray, gcps: list[GroundControlPoint]) -> bytes:
    """One-band uint16 GTiff, tiled 256, deflate, GCPs in EPSG:4326 and no geotransform."""
    h, w = dn.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with MemoryFile() as mem:
            with mem.open(driver="GTiff", width=w, height=h, count=1, dtype="uint16", tiled=True,
                          blockxsize=256, blockysize=256, compress="deflate") as dst:
                dst.gcps = (gcps, CRS.from_epsg(4326))
                dst.write(dn, 1)
            return bytes(mem.getbuffer())


def dn_from_sigma0(sigma0_db: np.ndarray, a: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The inverse calibration: DN = sqrt(max(sigma0_lin A^2 + N, 0)) rounded, in 1..65535 (0 is
    nodata, which a NaN sigma0 gets)."""
    lin = np.power(10.0, np.asarray(sigma0_db, dtype=np.float64) / 10.0)
    v = lin * a * a
    v += n
    np.maximum(v, 0.0, out=v)
    np.sqrt(v, out=v)
    np.rint(v, out=v)
    np.clip(v, 1, 65535, out=v)
    out = v.astype(np.uint16)
    out[np.isnan(lin)] = 0
    return out


def reduce_product(src_zip: Path | str, dst: Path | str, factor: int = 8, sigma0_db: Sigma0Map | None = None,
                   as_zip: bool = True, dn0_border: int = 0) -> Path:
    """Write the product src_zip (a zip, or a .SAFE folder) reduced by factor into the folder dst:
    dst/<name>.zip holding <name>.SAFE/... (the source's member layout) if as_zip, else the
    folder dst/<name>.SAFE; returns that path. The measurement TIFFs (named as in the manifest)
    hold DN = sqrt(sigma0_lin A^2 + N) of sigma0_db(lines, pixels) -> {"VV": dB, "VH": dB}
    (default lake_map; 2-D float coordinate arrays of the reduced grid), A and N as
    interpolated_luts gives them, and dn0_border rows / columns of DN 0 along each edge."""
    if factor < 1:
        raise ValueError("factor must be >= 1")
    sigma0_db = sigma0_db or lake_map
    src = _Safe(src_zip)
    files: dict[str, bytes] = {}                     # rewritten or new files, by path in .SAFE

    sizes = {}
    for stem in src.stems():
        ann, cal, noi = _annotation_paths(stem)
        ann_text = src.read(ann).decode("utf-8")
        sc = _Scale(factor, *_image_size(ET.fromstring(ann_text)))
        files[ann] = _reduce_annotation(ann_text, sc).encode("utf-8")
        files[cal] = _reduce_calibration(src.read(cal).decode("utf-8"), sc).encode("utf-8")
        files[noi] = _reduce_noise(src.read(noi).decode("utf-8"), sc).encode("utf-8")
        sizes[stem] = (sc.new["line"], sc.new["pixel"])

    manifest = src.read("manifest.safe")
    maps, grid = None, None
    for rel in _measurements(manifest):
        stem = re.sub(r"\.tiff?$", "", rel.rsplit("/", 1)[-1], flags=re.I)
        ann, cal, noi = _annotation_paths(stem)
        if ann not in files:
            raise FileNotFoundError(f"{src.path}: no annotation {ann} for the measurement {rel}")
        pol = ET.fromstring(files[ann]).findtext("adsHeader/polarisation").upper()
        h, w = sizes[stem]
        if grid != (h, w):
            lines, pixels = np.mgrid[0:h, 0:w].astype(np.float64)
            maps, grid = sigma0_db(lines, pixels), (h, w)
            del lines, pixels
        a, n = _luts(files[cal], files[noi], h, w)
        dn = dn_from_sigma0(maps[pol], a, n)
        del a, n
        if dn0_border > 0:
            b = dn0_border
            dn[:b], dn[-b:], dn[:, :b], dn[:, -b:] = 0, 0, 0, 0
        gcps = [GroundControlPoint(row=p["line"], col=p["pixel"], x=p["longitude"], y=p["latitude"], z=p["height"], id=str(i + 1))
                for i, p in enumerate(_grid_points(files[ann]))]
        files[rel] = _tiff(dn, gcps)
    files["manifest.safe"] = _update_manifest(manifest.decode("utf-8"), files).encode("utf-8")

    dst = Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    new = [r for r in files if r not in src.files]   # the measurement TIFFs
    if not as_zip:
        root = dst / f"{src.name}.SAFE"
        for rel in src.files + new:
            out = root / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(files[rel] if rel in files else src.read(rel))
        return root

    out = dst / f"{src.name}.zip"
    prefix = f"{src.name}.SAFE/"
    file_attr = 0o100644 << 16
    with zipfile.ZipFile(out, "w") as zout:
        def put(rel: str, data: bytes, date_time: tuple, attr: int, compress: int):
            zi = zipfile.ZipInfo(prefix + rel, date_time=date_time)
            zi.compress_type, zi.external_attr = compress, attr
            zout.writestr(zi, data)

        when = (2020, 1, 1, 0, 0, 0)
        if src.zip_prefix is not None:
            with zipfile.ZipFile(src.path) as zin:
                for info in zin.infolist():
                    if not info.filename.startswith(src.zip_prefix):
                        continue
                    rel = info.filename[len(src.zip_prefix):]
                    put(rel, files[rel] if rel in files else zin.read(info), info.date_time, info.external_attr, info.compress_type)
                    when = info.date_time
                    if rel == "measurement/":            # the TIFFs right after their folder, as ESA's zips have them
                        for r in new:
                            put(r, files[r], info.date_time, file_attr, zipfile.ZIP_STORED)
                        new = []
        else:
            for rel in src.files:
                put(rel, files[rel] if rel in files else src.read(rel), when, file_attr, zipfile.ZIP_DEFLATED)
        for r in new:                                    # no measurement/ entry in the source
            put(r, files[r], when, file_attr, zipfile.ZIP_STORED)
    return out
