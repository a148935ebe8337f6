"""Labelled scenes: each image with its class-index labels on the image's grid.

:func:`load_labelled_scenes` reads ``--images ... --labels ...`` (train/file_pairing.py) in
one of two forms:

* label rasters paired with the images by file name (train/file_pairing.py), resampled onto
  the image's grid when on another grid or CRS (train/label_rasters.py);
* one vector file of labelled polygons with a class field, rasterized on each image's grid
  (train/vector_labels.py); unlabelled pixels are ignored.

Label values become class indices 0..K-1 through a :class:`ClassSpec` (given, or the
preferred one when it covers every value found, else inferred); ignored values, label nodata
and image nodata become 255. A :class:`LabelledScene` holds the labels, uint8 [H, W] (one
byte a pixel), not the image: crops are read from the image when needed (train/datasets.py).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from rasterio.windows import Window

from ..core.errors import InputError
from ..core.scene import sar_io
from .classes import IGNORE_INDEX, ClassSpec, infer_classes
from .file_pairing import RASTER_EXTS, expand_paths, is_vector, pair_files
from .label_rasters import read_label_raster
from .vector_labels import rasterize_labels, read_vector, vector_class_values


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
    ``stats``: one stretch [3, 2] for all the images (pooled.pooled_statistics, contract 2),
    ``calibration``: one estimated calibration [n_bands, 2] (pooled.pooled_calibration,
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
