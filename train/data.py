"""Labelled SAR data for training and evaluation: pairing, label rasters, vector labels, crops.

Inputs (``--images ... --labels ...``): each argument is a file, a folder (its rasters, not
recursive) or a glob pattern.

* Label rasters on the image's grid, paired by file name. **Pairing rule**: an image and a
  label pair when (1) their stems (names without extension) are identical, else (2) their
  *keys* are equal: the stem split at ``_ - . space``, with the tokens that name a role
  (:data:`ROLE_TOKENS`: ``S1``, ``after``, ``mask``, ``label``, ``LabelHand``, ``S1Hand`` ...)
  dropped case-insensitively (if nothing is left, the first token), e.g. ``S1_after_0001.png`` ↔ ``S1_mask_0001.png`` (key ``0001``)
  and ``X_S1Hand.tif`` ↔ ``X_LabelHand.tif`` (key ``x``); ``pair_pattern`` (a regular
  expression) replaces rule 2: the key is its first group (or whole match) in each stem.
  One image and one label always pair. Unpaired files and ambiguous keys are InputErrors.
  A label raster on another grid or CRS than its image is resampled onto the image's grid
  (nearest neighbour; :func:`read_label_raster`); one that does not overlap it is refused.
* One vector file (GPKG, SHP, GeoJSON, FlatGeobuf) of labelled polygons with a class field:
  rasterized on each scene's grid (reprojected to the scene's CRS when they differ);
  unlabelled pixels are ignored.

Label values become class indices 0..K-1 through a :class:`ClassSpec`; ignored values,
label nodata and image nodata become 255.
"""
from __future__ import annotations

import glob
import math
import os
import re
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from ..core.errors import InputError, parameter
from ..core.scene import sar_io
from .classes import IGNORE_INDEX, ClassSpec, infer_classes

RASTER_EXTS = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".img", ".vrt", ".jp2", ".gif"}
VECTOR_EXTS = {".gpkg", ".shp", ".geojson", ".json", ".fgb", ".kml", ".gml", ".sqlite"}
ROLE_TOKENS = {
    "s1", "s2", "sar", "image", "images", "img", "after", "before", "pre", "post", "scene",
    "mask", "masks", "label", "labels", "gt", "groundtruth", "annotation", "annotations",
    "target", "seg", "segmentation", "labelhand", "s1hand", "s2hand", "hand", "vv", "vh",
    "hh", "hv", "pauli", "label2d", "lbl", "lab", "msk", "im", "data", "truth", "ref",
}
CLASS_FIELD_CANDIDATES = ("class", "class_id", "classid", "class_value", "label", "value",
                          "class_name", "classname", "category", "landcover", "type")


# -- finding and pairing files -------------------------------------------------------------
def expand_paths(items: Sequence[os.PathLike | str], what: str = "images",
                 exts: set[str] = RASTER_EXTS | VECTOR_EXTS) -> list[Path]:
    """Files named by ``items`` (files, folders of files with known extensions, globs), sorted
    and without duplicates; InputError when something names nothing."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in exts
                           and not f.name.startswith("."))
            if not found:
                raise InputError(f"{p}: folder contains no {what} files "
                                 f"({', '.join(sorted(exts))})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        elif any(ch in str(item) for ch in "*?["):
            found = sorted(Path(f) for f in glob.glob(str(item)) if Path(f).is_file())
            if not found:
                raise InputError(f"{item}: pattern matches no {what} files")
            out.extend(found)
        else:
            raise InputError(f"{p}: no such file or folder ({what})")
    seen, unique = set(), []
    for f in out:
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    return unique


def pairing_key(stem: str, pair_pattern: Optional[str] = None) -> Optional[str]:
    """The key an image or label name pairs by (see the module doc); None if the pattern
    does not match."""
    if pair_pattern:
        m = re.search(pair_pattern, stem)
        if m is None:
            return None
        return m.group(1) if m.groups() else m.group(0)
    tokens = [t for t in re.split(r"[_\-. ]+", stem) if t]
    kept = [t.lower() for t in tokens if t.lower() not in ROLE_TOKENS]
    if kept:
        return "_".join(kept)
    return tokens[0].lower() if tokens else stem.lower()  # e.g. "s1_img" / "s1_lab" -> "s1"


def is_vector(path: os.PathLike | str) -> bool:
    """Whether ``path`` names a vector file (labelled polygons) by its extension."""
    return Path(path).suffix.lower() in VECTOR_EXTS


def pair_files(images: Sequence[Path], labels: Sequence[Path],
               pair_pattern: Optional[str] = None) -> list[tuple[Path, Path]]:
    """(image, label raster) pairs by the pairing rule; InputError on unpaired or ambiguous."""
    images, labels = list(images), list(labels)
    if not images:
        raise InputError("no images given")
    if not labels:
        raise InputError("no labels given")
    if len(images) == 1 and len(labels) == 1:
        return [(images[0], labels[0])]

    def index(files: list[Path], what: str, by_stem: bool) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for f in files:
            key = f.stem if by_stem else pairing_key(f.stem, pair_pattern)
            if key is None:
                raise InputError(f"{f}: name does not match {parameter('pair_pattern')} {pair_pattern!r}")
            if key in out:
                raise InputError(f"{f}: {what} {out[key].name} and {f.name} both pair by "
                                 f"{key!r}; rename them or give {parameter('pair_pattern')}")
            out[key] = f
        return out

    img_stem = {f.stem: f for f in images}
    lab_stem = {f.stem: f for f in labels}
    pairs: dict[Path, Path] = {}
    if not pair_pattern:
        for s in img_stem.keys() & lab_stem.keys():
            pairs[img_stem[s]] = lab_stem[s]
    rest_img = [f for f in images if f not in pairs]
    paired_labels = set(pairs.values())
    rest_lab = [f for f in labels if f not in paired_labels]
    if rest_img or rest_lab:
        ki = index(rest_img, "images", False)
        kl = index(rest_lab, "labels", False)
        for k in ki.keys() & kl.keys():
            pairs[ki[k]] = kl[k]
        unpaired_img = [ki[k].name for k in sorted(ki.keys() - kl.keys())]
        unpaired_lab = [kl[k].name for k in sorted(kl.keys() - ki.keys())]
        if unpaired_img or unpaired_lab:
            parts = []
            if unpaired_img:
                where = images[0].parent
                parts.append(f"{len(unpaired_img)} image(s) without a label in {where} "
                             f"(e.g. {', '.join(unpaired_img[:3])})")
            if unpaired_lab:
                where = labels[0].parent
                parts.append(f"{len(unpaired_lab)} label(s) without an image in {where} "
                             f"(e.g. {', '.join(unpaired_lab[:3])})")
            raise InputError("; ".join(parts) + f"; pairing is by file name, see {parameter('pair_pattern')}")
    return [(f, pairs[f]) for f in images]


# -- labels on a scene's grid --------------------------------------------------------------
def _open_raster(path: Path):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise InputError(f"{path}: not a raster GDAL can read ({str(e).splitlines()[0]})") from None


def _georeferenced(src) -> bool:
    return src.crs is not None or not src.transform.is_identity


def read_label_raster(path: Path, scene: sar_io.SarScene) -> tuple[np.ndarray, np.ndarray]:
    """Raw label values [H, W] and their validity (label nodata excluded) on the scene grid.

    **Label resampling rule** (training and evaluation alike): a label raster on the scene's
    grid (same size, CRS and geotransform) is read as it is; one on another grid or in another
    CRS (both georeferenced) is resampled onto the scene's grid by nearest neighbour
    (:func:`resample_to_grid`); scene pixels outside the label raster or on its nodata are
    not valid. InputError when it does not overlap the scene at all (naming both files), when
    one of the two lacks a CRS, or when a raster without georeferencing has another size.
    """
    with _open_raster(path) as src:
        same_size = (src.width, src.height) == (scene.width, scene.height)
        if _georeferenced(src) and (scene.crs is not None or not scene.transform.is_identity):
            tol = 1e-3 * max(abs(scene.transform.a), abs(scene.transform.e))
            same_grid = (same_size and src.crs == scene.crs
                         and src.transform.almost_equals(scene.transform, precision=tol))
            if not same_grid and (src.crs is None or scene.crs is None):
                raise InputError(f"{path}: label raster (CRS {src.crs}) is on another grid than "
                                 f"its image {scene.path.name} (CRS {scene.crs}); resampling "
                                 f"needs both CRSs: warp it onto the image grid")
            if not same_grid:
                return resample_to_grid(src, path, scene)
        elif not same_size:
            raise InputError(f"{path}: label raster is {src.width}x{src.height} px but its image "
                             f"{scene.path.name} is {scene.width}x{scene.height} px (same size "
                             f"needed without georeferencing)")
        raw = src.read(1)
        valid = src.read_masks(1) > 0
    return raw, valid


def resample_to_grid(src, path: Path, scene: sar_io.SarScene) -> tuple[np.ndarray, np.ndarray]:
    """Band 1 of the open label raster ``src`` on the scene's grid (both with a CRS), nearest
    neighbour by GDAL's warper (as ``gdalwarp -r near``): (raw values [H, W], valid [H, W]);
    valid is the warped mask of ``src`` (nodata value, mask band, alpha), False outside the
    label raster. InputError naming both files when they do not overlap at all."""
    from rasterio.transform import array_bounds
    from rasterio.warp import Resampling, reproject, transform_bounds

    left, bottom, right, top = array_bounds(scene.height, scene.width, scene.transform)
    lb = transform_bounds(src.crs, scene.crs, *src.bounds, densify_pts=21)
    if min(right, lb[2]) <= max(left, lb[0]) or min(top, lb[3]) <= max(bottom, lb[1]):
        image = _bounds_text((left, bottom, right, top))
        raise InputError(f"{path}: label raster does not overlap its image {scene.path} "
                         f"(bounds {_bounds_text(lb)} and {image} in {scene.crs})")
    grid = dict(src_transform=src.transform, src_crs=src.crs, dst_transform=scene.transform,
                dst_crs=scene.crs, resampling=Resampling.nearest, src_nodata=None, dst_nodata=None)
    raw = np.zeros((scene.height, scene.width), src.dtypes[0])
    valid = np.zeros((scene.height, scene.width), np.uint8)
    reproject(src.read(1), raw, **grid)
    reproject((src.read_masks(1) > 0).astype(np.uint8), valid, **grid)
    return raw, valid > 0


def _bounds_text(b) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in b) + ")"


def find_class_field(columns: Sequence[str], path: Path, class_field: Optional[str]) -> str:
    """The vector field that holds the class (given, or a usual name); InputError if none."""
    cols = [c for c in columns if c != "geometry"]
    if class_field:
        if class_field not in cols:
            raise InputError(f"{path}: no field {class_field!r} (fields: {', '.join(cols) or 'none'})")
        return class_field
    lower = {c.lower(): c for c in cols}
    for cand in CLASS_FIELD_CANDIDATES:
        if cand in lower:
            return lower[cand]
    raise InputError(f"{path}: no class field found (fields: {', '.join(cols) or 'none'}); "
                     f"name it with {parameter('class_field')}")


def read_vector(path: Path, class_field: Optional[str] = None):
    """(GeoDataFrame of polygons with a non-null class, the class field name)."""
    import geopandas as gpd

    try:
        gdf = gpd.read_file(path)
    except Exception as e:
        raise InputError(f"{path}: not a vector file GDAL can read ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from None
    fld = find_class_field(list(gdf.columns), path, class_field)
    gdf = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty & gdf[fld].notna()]
    gdf = gdf[gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"])]
    if len(gdf) == 0:
        raise InputError(f"{path}: contains no labelled polygons (field {fld!r})")
    if gdf.crs is None:
        raise InputError(f"{path}: vector labels have no CRS")
    return gdf, fld


def vector_class_values(gdf, fld: str) -> list[Any]:
    """Distinct class values of the field (ints where integral, else strings)."""
    out = set()
    for v in gdf[fld].unique():
        if isinstance(v, str):
            try:
                out.add(int(v))
            except ValueError:
                out.add(v)
        else:
            out.add(int(v))
    return sorted(out, key=lambda v: (isinstance(v, str), v))


def rasterize_labels(gdf, fld: str, scene: sar_io.SarScene, classes: ClassSpec,
                     vector_path: Path) -> np.ndarray:
    """Class indices uint8 [H, W] of the polygons on the scene's grid (reprojected to the
    scene CRS when it differs), 255 where unlabelled; later polygons win on overlaps."""
    from rasterio import features

    if scene.crs is None:
        raise InputError(f"{scene.path}: has no CRS, so vector labels {vector_path.name} "
                         f"cannot be placed on it")
    if gdf.crs != scene.crs:
        gdf = gdf.to_crs(scene.crs)
    where = f"{vector_path}: "
    shapes = [(geom, classes.index_of(val if isinstance(val, str) else int(val), where))
              for geom, val in zip(gdf.geometry, gdf[fld])]
    shapes = [(g, i) for g, i in shapes if i != IGNORE_INDEX]
    if not shapes:
        return np.full((scene.height, scene.width), IGNORE_INDEX, np.uint8)
    return features.rasterize(shapes, out_shape=(scene.height, scene.width),
                              transform=scene.transform, fill=IGNORE_INDEX, dtype="uint8")


# -- the labelled scenes -------------------------------------------------------------------
@dataclass
class LabelledScene:
    """One image with its class-index labels (uint8 [H, W], 255 = ignore) on the image grid."""

    image: Path
    label_source: Path
    labels: np.ndarray
    width: int
    height: int
    options: dict = field(default_factory=dict)   # open_scene options of its source (stats...)
    weight: float = 1.0                           # relative probability of a crop from it

    @property
    def labelled_fraction(self) -> float:
        """Fraction of pixels with a label (not IGNORE_INDEX)."""
        return float((self.labels != IGNORE_INDEX).mean())


def load_labelled_scenes(images: Sequence[os.PathLike | str], labels: Sequence[os.PathLike | str],
                         classes: Optional[ClassSpec] = None, class_field: Optional[str] = None,
                         pair_pattern: Optional[str] = None, domain: Optional[str] = None,
                         bands: Optional[Sequence] = None, complex_part: str = "amplitude",
                         prefer: Optional[ClassSpec] = None,
                         progress=None, prefer_bands: Optional[Sequence[str]] = None,
                         stats: Optional[np.ndarray] = None,
                         calibration: Optional[np.ndarray] = None,
                         calibrated: Optional[bool] = None, nodata_values: Sequence[float] = (),
                         skip_empty: bool = False,
                         ) -> tuple[list[LabelledScene], ClassSpec]:
    """Pair and read images with their labels; classes from ``classes``, else ``prefer``
    (e.g. the base model's classes) when it covers every label value found, else inferred.
    ``prefer_bands``: the bands a model was trained on (core.scene.sar_io.open_scene ``prefer``);
    ``stats``: one stretch [3, 2] for all the images (sar_io.pooled_statistics, contract 2),
    ``calibration``: one estimated calibration [n_bands, 2] (sar_io.pooled_calibration,
    contract 3); either is kept in each scene's ``options`` so that crops are read with it.
    ``calibrated`` / ``nodata_values``: core.scene.sar_io.open_scene's. ``skip_empty``: leave out
    images without a valid pixel instead of refusing them (training sources).

    When inferring, negative label values (e.g. Sen1Floods11's -1) are ignored.
    InputError when there is not a single labelled pixel.
    """
    from ..core.progress import ensure

    progress = ensure(progress)
    image_files = expand_paths(images, "images", RASTER_EXTS)
    label_files = expand_paths(labels, "labels")
    vectors = [f for f in label_files if is_vector(f)]
    if vectors and len(label_files) > 1:
        raise InputError(f"{vectors[0]}: give either one vector file or label rasters, not both "
                         f"or several vector files")
    opts = dict(domain=domain, bands=bands, complex_part=complex_part, prefer=prefer_bands,
                calibrated=calibrated, nodata_values=tuple(nodata_values))
    scene_options = {} if stats is None else {"stats": np.asarray(stats, np.float32)}
    if calibration is not None:
        scene_options["calibration"] = np.asarray(calibration, np.float32)

    raws: list[tuple[Path, Path, np.ndarray, np.ndarray, tuple[int, int]]] = []
    if vectors:
        gdf, fld = read_vector(vectors[0], class_field)
        if classes is None:
            found = vector_class_values(gdf, fld)
            classes = prefer if _covers(prefer, found) else infer_classes(found)
        out = []
        for i, img in enumerate(image_files):
            with sar_io.open_scene(img, **opts) as scene:
                lab = rasterize_labels(gdf, fld, scene, classes, vectors[0])
                lab[~_image_valid(scene)] = IGNORE_INDEX
            out.append(LabelledScene(img, vectors[0], lab, scene.width, scene.height,
                                     dict(scene_options)))
            progress("read labels", i + 1, len(image_files))
        scenes = out
    else:
        pairs = pair_files(image_files, label_files, pair_pattern)
        for i, (img, lab_path) in enumerate(pairs):
            try:
                scene = sar_io.open_scene(img, **opts)
            except sar_io.EmptyRasterError:
                if not skip_empty:
                    raise
                continue
            with scene:
                raw, valid = read_label_raster(lab_path, scene)
                valid &= _image_valid(scene)
            raws.append((img, lab_path, raw, valid, (scene.width, scene.height)))
            progress("read labels", i + 1, len(pairs))
        if classes is None:
            values = set()
            for _, _, raw, valid, _ in raws:
                v = raw[valid]
                if v.dtype.kind == "f":
                    v = v[np.isfinite(v)]
                values.update(int(u) for u in np.unique(v))
            classes = (prefer if _covers(prefer, values)
                       else infer_classes(values, ignore=[v for v in values if v < 0]))
        scenes = [LabelledScene(img, lab, classes.map_labels(raw, valid, f"{lab}: "), w, h,
                                dict(scene_options))
                  for img, lab, raw, valid, (w, h) in raws]
    if len(classes) == 0:
        raise InputError(f"{label_files[0]}: the labels contain no class values")
    if not any((s.labels != IGNORE_INDEX).any() for s in scenes):
        raise InputError(f"{label_files[0]}: the label set is empty (no labelled pixel on any "
                         f"of the {len(scenes)} image(s))")
    return scenes, classes


def _covers(spec: Optional[ClassSpec], found) -> bool:
    if spec is None:
        return False
    known = set(spec.values) | set(spec.ignore) | set(spec.names)
    return all(v in known for v in found)


VALID_BAND_PIXELS = 1 << 22   # pixels per row band when reading a scene's validity


def _image_valid(scene: sar_io.SarScene, band_pixels: Optional[int] = None) -> np.ndarray:
    """Valid pixels of the whole scene (nodata excluded): bool [H, W], 1 byte a pixel.

    Read in row bands of about ``band_pixels`` pixels: a whole-scene read would also hold
    the model input and physical values (16 more bytes a pixel) at once.
    """
    valid = np.empty((scene.height, scene.width), bool)
    rows = max(1, (band_pixels or VALID_BAND_PIXELS) // max(scene.width, 1))
    for r0 in range(0, scene.height, rows):
        h = min(rows, scene.height - r0)
        valid[r0:r0 + h] = scene.read_window(Window(0, r0, scene.width, h)).valid
    return valid


# -- crops ---------------------------------------------------------------------------------
def crop_size(scenes: Sequence[LabelledScene], tile: int) -> int:
    """The training crop side: ``tile``, or the largest scene side when all scenes are smaller."""
    return int(min(tile, max(max(s.width, s.height) for s in scenes)))


def choose_window(scene: LabelledScene, size: int, rng: np.random.Generator,
                  favour_labelled: float = 0.9) -> Window:
    """A random ``size`` x ``size`` window; with probability ``favour_labelled`` it is centred
    near a random labelled pixel (so sparse polygon labels are seen), else uniform."""
    h, w = scene.height, scene.width
    max_r, max_c = max(h - size, 0), max(w - size, 0)
    if max_r == 0 and max_c == 0:
        return Window(0, 0, size, size)
    if rng.random() < favour_labelled:
        flat = _labelled_index(scene)
        if flat.size:
            p = int(flat[rng.integers(flat.size)])
            r, c = divmod(p, w)
            r0 = int(np.clip(r - rng.integers(size), 0, max_r))
            c0 = int(np.clip(c - rng.integers(size), 0, max_c))
            return Window(c0, r0, size, size)
    return Window(int(rng.integers(max_c + 1)), int(rng.integers(max_r + 1)), size, size)


_LABELLED_CACHE: dict[int, np.ndarray] = {}


def _labelled_index(scene: LabelledScene, max_points: int = 200_000) -> np.ndarray:
    key = id(scene.labels)
    idx = _LABELLED_CACHE.get(key)
    if idx is None:
        idx = np.flatnonzero(scene.labels.ravel() != IGNORE_INDEX)
        if idx.size > max_points:
            idx = idx[:: int(math.ceil(idx.size / max_points))]
        _LABELLED_CACHE[key] = idx
    return idx


def label_window(labels: np.ndarray, window: Window) -> np.ndarray:
    """The labels of ``window`` (uint8), 255 past the edge."""
    h, w = int(window.height), int(window.width)
    r0, c0 = int(window.row_off), int(window.col_off)
    out = np.full((h, w), IGNORE_INDEX, np.uint8)
    rr0, cc0 = max(r0, 0), max(c0, 0)
    rr1, cc1 = min(r0 + h, labels.shape[0]), min(c0 + w, labels.shape[1])
    if rr1 > rr0 and cc1 > cc0:
        out[rr0 - r0:rr1 - r0, cc0 - c0:cc1 - c0] = labels[rr0:rr1, cc0:cc1]
    return out


class SceneCache:
    """Open scenes by path, at most ``size`` at a time (not pickled: workers reopen)."""

    def __init__(self, size: int = 32, **open_options):
        self.size = size
        self.options = open_options
        self._open: OrderedDict[Path, sar_io.SarScene] = OrderedDict()

    def get(self, path: Path, options: Optional[dict] = None) -> sar_io.SarScene:
        """The open scene of ``path``; ``options`` (its source's, e.g. a pooled stretch)
        override the cache's open options."""
        scene = self._open.get(path)
        if scene is None:
            opts = {**self.options, **(options or {})}
            if opts.get("bands"):      # a source's own bands replace a model's preference
                opts.pop("prefer", None)
            scene = sar_io.open_scene(path, **opts)
            self._open[path] = scene
            while len(self._open) > self.size:
                self._open.popitem(last=False)[1].close()
        else:
            self._open.move_to_end(path)
        return scene

    def __getstate__(self):
        return {"size": self.size, "options": self.options, "_open": OrderedDict()}

    def close(self) -> None:
        """Close the scenes opened by this process."""
        for s in self._open.values():
            s.close()
        self._open.clear()


class CropDataset:
    """Random labelled crops for training: item ``i`` (any non-negative int; the sampler
    encodes the epoch as ``epoch * len + index``) is a dict of numpy arrays
    x float32 [3, s, s], phys float32 [s, s], valid bool [s, s], target uint8 [s, s] (255 =
    ignore); the crop and the augmentation depend only on (seed, i), so runs are reproducible
    with any number of workers or ranks.
    """

    def __init__(self, scenes: Sequence[LabelledScene], tile: int, augment=None, seed: int = 0,
                 crops_per_scene: Optional[int] = None, favour_labelled: float = 0.9,
                 **open_options):
        if not scenes:
            raise InputError("no labelled scenes to train on")
        self.scenes = list(scenes)
        self.size = crop_size(self.scenes, tile)
        self.augment = augment
        self.seed = int(seed)
        self.favour = favour_labelled
        if crops_per_scene is None:  # about one crop per tile-sized area of each scene
            crops_per_scene = max(1, round(np.mean([s.width * s.height for s in self.scenes])
                                           / self.size ** 2))
        self.crops_per_scene = int(crops_per_scene)
        self.cache = SceneCache(**open_options)
        w = np.array([s.weight for s in self.scenes], np.float64)
        self.cum_weights = None if np.all(w == w[0]) else np.cumsum(w / w.sum())

    def __len__(self) -> int:
        return len(self.scenes) * self.crops_per_scene

    def scene_for(self, i: int, rng: np.random.Generator) -> LabelledScene:
        """Item i's scene: round robin when all weights are equal, else drawn by weight."""
        if self.cum_weights is None:
            return self.scenes[int(i) % len(self.scenes)]
        k = int(np.searchsorted(self.cum_weights, rng.random(), side="right"))
        return self.scenes[min(k, len(self.scenes) - 1)]

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, int(i)])
        scene = self.scene_for(i, rng)
        window = choose_window(scene, self.size, rng, self.favour)
        data = self.cache.get(scene.image, scene.options).read_window(window)
        target = label_window(scene.labels, window)
        target[~data.valid] = IGNORE_INDEX
        sample = {"x": data.x, "phys": data.phys, "valid": data.valid, "target": target}
        if self.augment is not None:
            sample = self.augment(sample, rng, self.cache.get(scene.image, scene.options))
        return sample


def tiles_of(scene: LabelledScene, tile: int) -> list[Window]:
    """Non-overlapping tiles covering the scene (edge tiles shifted inside when possible)."""
    out = []
    th, tw = min(tile, scene.height), min(tile, scene.width)
    for r in range(0, scene.height, th):
        for c in range(0, scene.width, tw):
            out.append(Window(min(c, max(scene.width - tw, 0)), min(r, max(scene.height - th, 0)),
                              tw, th))
    return out


class TileDataset:
    """Fixed tiles (no augmentation) for validation and descriptor statistics: item i is the
    i-th tile of :func:`tiles_of` over all scenes; same dict as :class:`CropDataset`."""

    def __init__(self, scenes: Sequence[LabelledScene], tile: int, **open_options):
        self.scenes = list(scenes)
        self.size = crop_size(self.scenes, tile)
        self.items = [(k, w) for k, s in enumerate(self.scenes) for w in tiles_of(s, self.size)]
        self.cache = SceneCache(**open_options)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        k, window = self.items[int(i)]
        scene = self.scenes[k]
        window = Window(window.col_off, window.row_off, self.size, self.size)
        data = self.cache.get(scene.image, scene.options).read_window(window)
        target = label_window(scene.labels, window)
        target[~data.valid] = IGNORE_INDEX
        return {"x": data.x, "phys": data.phys, "valid": data.valid, "target": target}


def collate(samples: list[dict[str, Any]]):
    """A list of sample dicts -> dict of torch tensors (x [B,3,s,s], phys, valid, target long)."""
    import torch

    return {
        "x": torch.from_numpy(np.stack([s["x"] for s in samples])),
        "phys": torch.from_numpy(np.stack([s["phys"] for s in samples])),
        "valid": torch.from_numpy(np.stack([s["valid"] for s in samples])),
        "target": torch.from_numpy(np.stack([s["target"] for s in samples]).astype(np.int64)),
    }
