"""The data file: several labelled sources in one training run (``ces finetune/pretrain --data``).

YAML or JSON; relative paths are relative to the data file::

    classes:                      # the model's classes, in index order (a classes file's list)
      - {name: background, value: 0, color: "#d9d9d9"}
      - {name: water, value: 1, color: "#1f78b4"}
    sources:
      - name: ombria              # a name for logs and provenance
        images: ombria/train/AFTER        # file, folder or glob, or a list of them
        labels: ombria/train/MASK
        classes: {background: 0, water: 255}   # this source's label values per class name,
        weight: 1.0                            #   or the path of a classes file
        stretch: scene            # scene (default): each image its own estimated calibration
      - name: etci-bangladesh     # source: one estimated calibration pooled over the source's
        images: etci2021/bangladesh/images    #   images (tiles cut from one scene with one
        labels: etci2021/bangladesh/labels    #   fixed scaling)
        classes: {background: 0, water: [1, 2]}
        ignore: [255]
        weight: 1.0
        calibrated: no            # auto (default: detected), yes or no (input contract 3)
        nodata: [0, 255]          # image values that are nodata besides the raster's own

Optional per source: ``ignore`` (label values), ``bands`` ("VV,VH" or a list), ``domain``,
``class_field`` (vector labels), ``pair_pattern``, ``calibrated``, ``nodata``. Images with no
valid pixel (e.g. tiles that hold only a fill value given as ``nodata``) are skipped. Each source's label values map onto the
model's classes by name; a class a source does not label simply never occurs in it. Crops
are drawn from source s with probability weight_s / sum(weights), uniformly over its images.
Single-pol (VV) and dual-pol (VV + VH) sources mix freely: the model input of both is
defined once in core/scene/sar_io.py (a single band copied 3×; dual-pol (VV, VH, VV−VH)).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..core.errors import InputError
from ..core.scene import contracts, pooled
from .classes import ClassSpec, _label_values, load_classes, parse_classes, read_document

STRETCHES = ("scene", "source")


@dataclass
class Source:
    """One labelled source of a data file (paths resolved)."""

    name: str
    images: list[str]
    labels: list[str]
    classes: ClassSpec                 # the model's classes, with this source's label values
    weight: float = 1.0
    stretch: str = "scene"
    bands: Optional[list] = None
    domain: Optional[str] = None
    class_field: Optional[str] = None
    pair_pattern: Optional[str] = None
    calibrated: Optional[bool] = None          # None: detected per image
    nodata: list = field(default_factory=list)  # image values that are nodata
    extra: dict = field(default_factory=dict)

    @property
    def open_options(self) -> dict:
        """The core.scene.sar_io.open_scene options this source sets."""
        opts = {k: v for k, v in (("domain", self.domain), ("bands", self.bands)) if v}
        if self.calibrated is not None:
            opts["calibrated"] = self.calibrated
        if self.nodata:
            opts["nodata_values"] = tuple(self.nodata)
        return opts


@dataclass
class DataFile:
    """The parsed data file: the model's classes and its sources."""

    path: Path
    classes: ClassSpec
    sources: list[Source]


def _read_doc(path: Path) -> dict:
    doc = read_document(path, "data file")
    if not isinstance(doc, dict) or not isinstance(doc.get("sources"), list) or not doc["sources"]:
        raise InputError(f"{path}: a data file needs a non-empty 'sources' list")
    return doc


def _paths(value: Any, base: Path, what: str, where: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v for v in items):
        raise InputError(f"{where}: '{what}' must be a path or a list of paths")
    return [v if os.path.isabs(v) else str(base / v) for v in items]


def _model_classes(doc: dict, path: Path) -> ClassSpec:
    """The top-level ``classes`` (a list, or a classes file's path); names must be unique."""
    spec = doc.get("classes")
    if spec is None:
        raise InputError(f"{path}: a data file needs a top-level 'classes' list (the model's classes)")
    if isinstance(spec, str):
        return load_classes(spec if os.path.isabs(spec) else path.parent / spec)
    return parse_classes({"classes": spec}, f"{path} (classes)")


def _source_classes(value: Any, ignore: Any, model: ClassSpec, base: Path, where: str) -> ClassSpec:
    """The model's classes with this source's label values (by class name)."""
    if isinstance(value, str):
        own = load_classes(value if os.path.isabs(value) else base / value)
        mapping = {c["name"]: c["values"] for c in own.classes}
        ignore_vals = list(own.ignore)
    elif isinstance(value, dict):
        mapping = {str(k): _label_values({"values": v if isinstance(v, list) else [v]}, i, where)
                   for i, (k, v) in enumerate(value.items())}
        ignore_vals = []
    else:
        raise InputError(f"{where}: 'classes' must map class names to label values "
                         f"(e.g. {{water: [1, 2]}}) or name a classes file")
    unknown = sorted(set(mapping) - set(model.names))
    if unknown:
        raise InputError(f"{where}: class {unknown[0]!r} is not one of the data file's classes "
                         f"({', '.join(model.names)})")
    owner: dict[int, str] = {}
    for name, vals in mapping.items():
        for v in vals:
            if v in owner:
                raise InputError(f"{where}: label value {v} is claimed by two classes, "
                                 f"{owner[v]!r} and {name!r}")
            owner[v] = name
    extra_ignore = ignore if isinstance(ignore, list) else ([] if ignore is None else [ignore])
    try:
        ignore_vals = sorted(set(ignore_vals) | {int(v) for v in extra_ignore})
    except (TypeError, ValueError):
        raise InputError(f"{where}: 'ignore' must be a list of integers") from None
    both = sorted(set(ignore_vals) & set(owner))
    if both:
        raise InputError(f"{where}: label values {both} are both classes and ignored")
    classes = [{**c, "values": list(mapping.get(c["name"], []))} for c in model.classes]
    return ClassSpec(classes, ignore_vals, source=where)


SOURCE_KEYS = ("name", "images", "labels", "classes", "ignore", "weight", "stretch", "bands",
               "domain", "class_field", "pair_pattern", "calibrated", "nodata")


def parse_calibrated(value: Any, where: str) -> Optional[bool]:
    """A data file's ``calibrated`` (auto / yes / no; YAML's booleans too) -> None / True / False."""
    if isinstance(value, bool):
        return value
    key = str(value).strip().lower() if value is not None else "auto"
    if key not in contracts.CALIBRATED_CHOICES:
        raise InputError(f"{where}: calibrated {value!r} is not one of "
                         f"{', '.join(contracts.CALIBRATED_CHOICES)}")
    return contracts.CALIBRATED_CHOICES[key]


def _nodata_values(value: Any, where: str) -> list:
    items = value if isinstance(value, list) else ([] if value is None else [value])
    try:
        out = [float(v) for v in items]
    except (TypeError, ValueError):
        raise InputError(f"{where}: nodata must be a number or a list of numbers") from None
    if not all(np.isfinite(out)):
        raise InputError(f"{where}: nodata values must be finite numbers")
    return out


def parse_source(s: Any, i: int, model: ClassSpec, path: Path, what: str = "source",
                 extra_keys: Sequence[str] = ()) -> Source:
    """One entry of a data file's ``sources`` list (or of a benchmark suite's ``datasets``,
    ``what="dataset"``): checked, paths resolved against ``path``'s folder; the values of
    ``extra_keys`` go to ``Source.extra``. InputError naming the file and the entry."""
    if not isinstance(s, dict):
        raise InputError(f"{path}: {what} {i + 1} must be a mapping (images, labels, classes...)")
    name = str(s.get("name") or f"{what}{i + 1}")
    where = f"{path}: {what} {name!r}"
    for key in ("images", "labels", "classes"):
        if key not in s:
            raise InputError(f"{where}: needs '{key}'")
    unknown = set(s) - set(SOURCE_KEYS) - set(extra_keys)
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    try:
        weight = float(s.get("weight", 1.0))
    except (TypeError, ValueError):
        raise InputError(f"{where}: weight {s.get('weight')!r} is not a number") from None
    if not (weight > 0 and weight < float("inf")):
        raise InputError(f"{where}: weight must be a positive number, got {s.get('weight')!r}")
    stretch = str(s.get("stretch", "scene"))
    if stretch not in STRETCHES:
        raise InputError(f"{where}: stretch {stretch!r} is not one of {', '.join(STRETCHES)}")
    domain = s.get("domain")
    if domain is not None and domain not in contracts.DOMAIN_CHOICES:
        raise InputError(f"{where}: domain {domain!r} is not one of "
                         f"{', '.join(contracts.DOMAIN_CHOICES)}")
    bands = s.get("bands")
    bands = contracts.parse_bands(",".join(map(str, bands)) if isinstance(bands, list) else bands)
    base = path.parent
    return Source(
        name=name, images=_paths(s["images"], base, "images", where),
        labels=_paths(s["labels"], base, "labels", where),
        classes=_source_classes(s["classes"], s.get("ignore"), model, base, where),
        weight=weight, stretch=stretch, bands=bands, domain=domain,
        class_field=s.get("class_field"), pair_pattern=s.get("pair_pattern"),
        calibrated=parse_calibrated(s.get("calibrated"), where),
        nodata=_nodata_values(s.get("nodata"), where),
        extra={k: s[k] for k in extra_keys if k in s})


def parse_sources(items: Sequence[Any], model: ClassSpec, path: Path, what: str = "source",
                  extra_keys: Sequence[str] = ()) -> list[Source]:
    """Every entry of a ``sources`` list (:func:`parse_source`); names must be unique."""
    sources, names = [], set()
    for i, s in enumerate(items):
        src = parse_source(s, i, model, path, what, extra_keys)
        if src.name in names:
            raise InputError(f"{path}: {what} name {src.name!r} appears twice")
        names.add(src.name)
        sources.append(src)
    return sources


def model_classes(doc: dict, path: Path) -> ClassSpec:
    """The top-level ``classes`` of a data file or suite: the model's classes."""
    return _model_classes(doc, path)


def source_document(src: Source) -> dict:
    """``src`` as a data-file source entry (absolute paths), e.g. to write a data file of
    one source; :func:`parse_source` of it gives ``src`` back."""
    doc: dict[str, Any] = {"name": src.name, "images": list(src.images), "labels": list(src.labels),
                           "classes": {c["name"]: list(c["values"]) for c in src.classes.classes
                                       if c["values"]}}
    if src.classes.ignore:
        doc["ignore"] = [int(v) for v in src.classes.ignore]
    doc["weight"], doc["stretch"] = src.weight, src.stretch
    for key in ("bands", "domain", "class_field", "pair_pattern", "nodata"):
        if getattr(src, key):
            doc[key] = getattr(src, key)
    if src.calibrated is not None:
        doc["calibrated"] = "yes" if src.calibrated else "no"
    return doc


def load_data_file(path: os.PathLike | str) -> DataFile:
    """Parse and check a data file (not the rasters); InputError naming the file and source."""
    path = Path(path)
    doc = _read_doc(path)
    model = _model_classes(doc, path)
    return DataFile(path, model, parse_sources(doc["sources"], model, path))


def load_source_scenes(data: DataFile, prefer_bands=None, complex_part: str = "amplitude",
                       progress=None, log=None) -> list:
    """Every source's labelled scenes (train.labelled_scenes.LabelledScene) with the source's open
    options (pooled stretch, bands, domain) and crop weights weight_s / n_s."""
    from .file_pairing import RASTER_EXTS, expand_paths
    from .labelled_scenes import load_labelled_scenes

    out = []
    for src in data.sources:
        opts = src.open_options
        calibration = None
        try:
            if src.stretch == "source":
                files = expand_paths(src.images, "images", RASTER_EXTS)
                calibration = pooled.pooled_calibration(files, complex_part=complex_part,
                                                        prefer=prefer_bands, **opts)
            scenes, _ = load_labelled_scenes(
                src.images, src.labels, src.classes, src.class_field, src.pair_pattern,
                complex_part=complex_part, prefer_bands=prefer_bands, progress=progress,
                calibration=calibration, skip_empty=True, **opts)
        except InputError as e:   # the parameters named as the data file's keys
            raise InputError(f"{data.path}: source {src.name!r}: {e}") from None
        for sc in scenes:
            sc.options.update(opts)
            sc.weight = src.weight / len(scenes)
        if log:
            log(f"source {src.name}: {len(scenes)} image(s), weight {src.weight:g}, "
                f"stretch {src.stretch}"
                + (f", pooled calibration (gain, offset dB) "
                   f"{[[round(float(a), 4), round(float(b), 2)] for a, b in calibration]}"
                   if calibration is not None else ""))
        out.extend(scenes)
    return out


__all__ = ["Source", "DataFile", "load_data_file", "load_source_scenes", "parse_source",
           "parse_sources", "source_document", "model_classes", "STRETCHES"]
