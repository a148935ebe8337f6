"""Finding the image and label files of ``--images ... --labels ...`` and pairing them by name.

Each argument is a file, a folder (its rasters, not recursive) or a glob pattern
(:func:`expand_paths`). Raster and vector files are told apart by extension
(:data:`RASTER_EXTS`, :data:`VECTOR_EXTS`).

**Pairing rule** (:func:`pair_files`): an image and a label raster pair when (1) their stems
(names without extension) are identical, else (2) their *keys* are equal: the stem split at
``_ - . space``, with the tokens that name a role (:data:`ROLE_TOKENS`: ``S1``, ``after``,
``mask``, ``label``, ``LabelHand``, ``S1Hand`` ...) dropped case-insensitively (if nothing is
left, the first token), e.g. ``S1_after_0001.png`` ↔ ``S1_mask_0001.png`` (key ``0001``) and
``X_S1Hand.tif`` ↔ ``X_LabelHand.tif`` (key ``x``); ``pair_pattern`` (a regular expression)
replaces rule 2: the key is its first group (or whole match) in each stem. One image and one
label always pair. Unpaired files and ambiguous keys are InputErrors.
"""
from __future__ import annotations

import glob
import os
import re
from pathlib import Path
from typing import Optional, Sequence

from ..core.errors import InputError, parameter

RASTER_EXTS = {".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp", ".img", ".vrt", ".jp2", ".gif"}
VECTOR_EXTS = {".gpkg", ".shp", ".geojson", ".json", ".fgb", ".kml", ".gml", ".sqlite"}
ROLE_TOKENS = {
    "s1", "s2", "sar", "image", "images", "img", "after", "before", "pre", "post", "scene",
    "mask", "masks", "label", "labels", "gt", "groundtruth", "annotation", "annotations",
    "target", "seg", "segmentation", "labelhand", "s1hand", "s2hand", "hand", "vv", "vh",
    "hh", "hv", "pauli", "label2d", "lbl", "lab", "msk", "im", "data", "truth", "ref",
}


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
