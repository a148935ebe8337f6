"""Benchmark suites (``ces benchmark SUITE.yaml -o results/``): the paper's domain-generalization
protocol as one resumable run. Train on one domain, evaluate on unseen ones, one table.

A suite file (YAML or JSON; paths relative to it) names datasets and experiments::

    name: dg-water                        # optional, shown in the table
    classes:                              # the models' classes, as in a data file
      - {name: background, value: 0, color: "#d9d9d9"}
      - {name: water, value: 1, color: "#1f78b4"}
    datasets:                             # data-file sources (train/sources.py) + max_images
      - {name: ombria-train, images: ombria/train/AFTER, labels: ombria/train/MASK,
         classes: {background: 0, water: 255}, max_images: 128}
      - {name: etci-nebraska, images: ..., labels: ..., classes: etci_classes.yaml,
         stretch: source}
    models: {ces-ti-water: default}       # optional names: a path, or default (the default model)
    evaluate: {tile: 512, batch: 4}       # optional: evaluate's sliding windows (overlap too)
    baseline: {base: ces-ti-water, method: none}    # the row the changes are against
    experiments:
      - base: ces-ti-water                # a models name, default, or a model path
        source: ombria-train
        targets: [ombria-test, etci-nebraska]
        methods: [decoder-only, earth-adapter]     # or method: one of METHODS
        iters: 30                         # also tile (crop, 512), batch (2), lr (1e-4),
                                          # warmup (-1), seed (0), save_every (50),
                                          # adapter_rank (64), adapter_cutoff (0.3)

``max_images: N`` keeps N image/label pairs evenly spread over the name-sorted pairs (all when
absent). Methods: ``none`` (the base as it is), ``decoder-only`` (backbone frozen, decoder
trained: the paper's fine-tuning, lr 1e-4, batch 2) and ``earth-adapter`` (core/models/adapter.py
trained with the decoder on the frozen backbone).

Cells: a fine-tune per distinct (base, source, method, settings) and an evaluation per
(model, target); every row of a source's table is evaluated on every target named for that
source. :func:`load_suite` checks the whole suite (keys, names, methods, numbers, models and
their classes, every dataset's files, pairing, grids and label values) and raises InputError
naming the file and the key before anything is written. :func:`run_suite` computes the missing
cells into the output folder and writes the tables::

    OUT/finetune/<id>.safetensors   fine-tuned model (+ <id>.ckpt/ checkpoints, <id>.data.yaml
                                    its one-source data file, <id>.json the record)
    OUT/evaluate/<id>.json          train.evaluate report of one model on one target
    OUT/table.md, table.csv, table.json

Cell ids end in a digest of everything that defines the cell (the base file's bytes, the
dataset's files and mapping, the settings), so a rerun reuses finished cells, a changed
setting makes a new cell, and an interrupted fine-tune continues from its checkpoint
(train/training_loop.py ``resume``). IoU in the JSON as fractions, in Markdown and CSV in percent;
changes are value minus baseline value, per class and for mIoU.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..core.errors import InputError
from ..core.models.adapter_options import DEFAULTS as ADAPTER
from ..core.number_checks import check_number
from ..core.progress import ProgressCallback, ensure
from .classes import ClassSpec, read_document
from .hyperparameters import FINETUNE
from .sources import Source, model_classes, parse_sources, source_document

METHODS = ("none", "decoder-only", "earth-adapter")
SUITE_KEYS = ("name", "classes", "datasets", "models", "evaluate", "baseline", "experiments")
EXPERIMENT_KEYS = ("name", "base", "source", "targets", "method", "methods", "iters", "tile", "batch",
                   "lr", "warmup", "seed", "save_every", "adapter_rank", "adapter_cutoff")
#: an experiment's settings when the suite does not give them: the fine-tuning recipe
#: (train/hyperparameters.py) and the Earth-Adapter's defaults (core/models/adapter.py), with the
#: suite's own crop size and checkpoint interval
DEFAULTS = {"tile": 512, "batch": FINETUNE.batch, "lr": FINETUNE.lr, "warmup": FINETUNE.warmup,
            "seed": FINETUNE.seed, "save_every": 50, "adapter_rank": ADAPTER["rank"],
            "adapter_cutoff": ADAPTER["cutoff"]}
EVALUATE_DEFAULTS = {"tile": 512, "overlap": None, "batch": 4}
DEFAULT_BASE = "default"

Log = Callable[[str], None]


@dataclass
class Dataset:
    """A suite dataset: its source description with explicit, paired file lists."""

    source: Source
    key: dict                      # what defines it (for cell digests)


@dataclass
class Base:
    """A base model of the suite: its name, file, the file's digest and its config."""

    name: str
    path: Path
    digest: str
    kind: str
    classes: list[str]


@dataclass
class Finetune:
    """One fine-tune cell."""

    id: str
    base: Base
    source: str
    method: str
    settings: dict                 # iters, tile, batch, lr, warmup, seed, save_every (+ adapter_*)


@dataclass
class Row:
    """A table row: a base model as it is (method none) or one of its fine-tunes."""

    base: Base
    method: str
    finetune: Optional[Finetune] = None

    @property
    def model_id(self) -> str:
        """The id of the model this row evaluates: its fine-tune's, or the base's as it is."""
        return self.finetune.id if self.finetune else f"{slug(self.base.name)}.none.{self.base.digest[:10]}"


@dataclass
class Table:
    """One table of the run: a source, its targets and rows."""

    source: str
    targets: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)


@dataclass
class Suite:
    """A checked suite file: classes, datasets, models, evaluation settings, baseline,
    fine-tuning cells and the tables they fill."""

    path: Path
    name: str
    classes: ClassSpec
    datasets: dict[str, Dataset]
    tables: list[Table]
    baseline: tuple[str, str]      # (base name, method)
    evaluate: dict

    @property
    def finetunes(self) -> list[Finetune]:
        """Every distinct fine-tune of the suite, in table order."""
        seen: dict[str, Finetune] = {}
        for t in self.tables:
            for r in t.rows:
                if r.finetune is not None:
                    seen.setdefault(r.finetune.id, r.finetune)
        return list(seen.values())

    def evaluations(self) -> list[tuple[Row, str]]:
        """(row, target) for every cell of every table, each distinct evaluation once."""
        out, seen = [], set()
        for t in self.tables:
            for r in t.rows:
                for target in t.targets:
                    if (r.model_id, target) not in seen:
                        seen.add((r.model_id, target))
                        out.append((r, target))
        return out


# -- reading and checking a suite --------------------------------------------------------------
def slug(text: str) -> str:
    """``text`` made safe for a file name (runs of other characters become "-")."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "x"


def digest(obj: Any) -> str:
    """SHA-256 (hex) of a JSON-able object, keys sorted: the identity of a cell."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _number(value: Any, where: str, kind: type, minimum: float, open_min: bool = False) -> Any:
    try:
        return check_number(value, kind, minimum, open_min)
    except ValueError as e:
        raise InputError(f"{where}: {e}") from None


def _names(value: Any, where: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) and v for v in items):
        raise InputError(f"{where}: must be a name or a non-empty list of names")
    return list(dict.fromkeys(items))


def _subset(pairs: list, n: Optional[int]) -> list:
    if n is None or n >= len(pairs):
        return pairs
    keep = np.unique(np.round(np.linspace(0, len(pairs) - 1, n)).astype(int))
    return [pairs[i] for i in keep]


def _resolve_dataset(src: Source, where: str) -> Dataset:
    """Explicit image and label lists (paired, subset by ``max_images``)."""
    from .file_pairing import RASTER_EXTS, expand_paths, is_vector, pair_files

    n = src.extra.get("max_images")
    if n is not None:
        n = _number(n, f"{where}: max_images", int, 1)
    images = expand_paths(src.images, "images", RASTER_EXTS)
    labels = expand_paths(src.labels, "labels")
    if len(labels) == 1 and is_vector(labels[0]):
        images = _subset(images, n)
    else:
        pairs = _subset(pair_files(images, labels, src.pair_pattern), n)
        images, labels = [p[0] for p in pairs], [p[1] for p in pairs]
    src.images = [str(p.resolve()) for p in images]
    src.labels = [str(p.resolve()) for p in labels]
    key = {k: v for k, v in source_document(src).items() if k not in ("name", "weight")}
    return Dataset(src, key)


def _check_dataset(ds: Dataset, where: str) -> int:
    """Every raster readable, every label on its image's grid with known values (the readers
    training and evaluation use); the number of images."""
    from ..core.scene import raster_check
    from .file_pairing import is_vector
    from .labelled_scenes import load_labelled_scenes

    src = ds.source
    for p in [*src.images, *src.labels]:
        if not is_vector(p):
            raster_check.check_file(Path(p))
    try:
        scenes, _ = load_labelled_scenes(src.images, src.labels, src.classes, src.class_field,
                                         src.pair_pattern, domain=src.domain, bands=src.bands)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None
    return len(scenes)


class _Bases:
    """The suite's model names (``models:``), resolved to checked Base records: a name, the
    default model, or a path relative to the suite; each file read and digested once."""

    def __init__(self, models: dict, suite_dir: Path, default_model: Optional[Path]):
        self.models, self.suite_dir, self.default_model = models, suite_dir, default_model
        self.cache: dict[Path, Base] = {}

    def resolve(self, value: Any, where: str) -> Base:
        """The Base that ``value`` names; InputError naming ``where`` when it names none."""
        from ..core.models import checkpoints

        if not isinstance(value, str) or not value:
            raise InputError(f"{where}: must name a model (a models entry, {DEFAULT_BASE} or a path)")
        name, target = value, self.models.get(value, value)
        if target == DEFAULT_BASE:
            if self.default_model is None or not Path(self.default_model).is_file():
                raise InputError(f"{where}: no default model is installed ({self.default_model})")
            path = Path(self.default_model)
            if name == DEFAULT_BASE:
                name = path.name.split(".")[0]
        else:
            path = Path(target) if os.path.isabs(target) else self.suite_dir / target
            if value not in self.models:
                name = path.name.split(".")[0]
            if not path.is_file():
                raise InputError(f"{where}: {path}: no such model file")
        path = path.resolve()
        if path not in self.cache:
            try:
                config = checkpoints.read_config(path)
            except InputError as e:
                raise InputError(f"{where}: {e}") from None
            self.cache[path] = Base(name, path, _file_digest(path), str(config.get("kind")),
                                    [c["name"] for c in config.get("classes") or []])
        base = self.cache[path]
        return Base(name, base.path, base.digest, base.kind, base.classes)


def load_suite(path: os.PathLike | str, default_model: Optional[os.PathLike | str] = None,
               progress: Optional[ProgressCallback] = None) -> Suite:
    """Read and check a whole suite (see the module doc); InputError naming the file and key."""
    path = Path(path)
    progress = ensure(progress)
    doc = _suite_document(path)
    classes = model_classes(doc, path)
    sources = parse_sources(doc["datasets"], classes, path, what="dataset", extra_keys=("max_images",))
    by_name = {s.name: s for s in sources}
    models = doc.get("models") or {}
    if not isinstance(models, dict) or not all(isinstance(v, str) and v for v in models.values()):
        raise InputError(f"{path}: models: must map names to model paths (or {DEFAULT_BASE})")
    evaluate = _evaluate_settings(doc.get("evaluate") or {}, path)

    bases = _Bases(models, path.parent, default_model)
    tables: dict[str, Table] = {}
    used: list[str] = []
    for i, ex in enumerate(doc["experiments"]):
        used += _add_experiment(ex, f"{path}: experiments[{i + 1}]", by_name, bases, classes,
                                tables)
    baseline = _add_baseline(doc.get("baseline"), path, bases, classes, tables)
    datasets = _resolve_datasets(by_name, list(dict.fromkeys(used)), path, progress)
    _name_finetunes(tables, datasets, classes)
    name = str(doc.get("name") or path.stem)
    return Suite(path, name, classes, datasets, list(tables.values()), baseline, evaluate)


def _suite_document(path: Path) -> dict:
    """The suite file's mapping, its top-level keys checked."""
    doc = read_document(path, "benchmark suite")
    if not isinstance(doc, dict):
        raise InputError(f"{path}: a benchmark suite is a mapping with datasets and experiments")
    unknown = sorted(set(doc) - set(SUITE_KEYS))
    if unknown:
        raise InputError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(SUITE_KEYS)})")
    for key in ("classes", "datasets", "experiments"):
        if not doc.get(key):
            raise InputError(f"{path}: {key}: required (see 'ces benchmark --help')")
    if not isinstance(doc["datasets"], list):
        raise InputError(f"{path}: datasets: must be a list of datasets")
    if not isinstance(doc["experiments"], list):
        raise InputError(f"{path}: experiments: must be a list of experiments")
    return doc


def _evaluate_settings(ev: Any, path: Path) -> dict:
    """The ``evaluate:`` windows (tile, overlap, batch), defaults filled in and checked."""
    if not isinstance(ev, dict) or set(ev) - set(EVALUATE_DEFAULTS):
        raise InputError(f"{path}: evaluate: takes only {', '.join(EVALUATE_DEFAULTS)}")
    evaluate = dict(EVALUATE_DEFAULTS)
    evaluate["tile"] = _number(ev.get("tile", 512), f"{path}: evaluate.tile", int, 16)
    evaluate["batch"] = _number(ev.get("batch", 4), f"{path}: evaluate.batch", int, 1)
    evaluate["overlap"] = (min(128, evaluate["tile"] // 4) if ev.get("overlap") is None else
                           _number(ev["overlap"], f"{path}: evaluate.overlap", int, 0))
    if evaluate["overlap"] * 2 >= evaluate["tile"]:
        raise InputError(f"{path}: evaluate.overlap: {evaluate['overlap']} must be less than half "
                         f"the tile ({evaluate['tile']})")
    return evaluate


#: the fine-tuning settings of an experiment: key, type, minimum, minimum excluded
SETTING_CHECKS = (("tile", int, 16, False), ("batch", int, 1, False), ("lr", float, 0, True),
                  ("warmup", int, -1, False), ("seed", int, 0, False),
                  ("save_every", int, 0, False), ("adapter_rank", int, 1, False),
                  ("adapter_cutoff", float, 0, True))


def _add_experiment(ex: Any, where: str, by_name: dict, bases: _Bases, classes: ClassSpec,
                    tables: dict[str, Table]) -> list[str]:
    """Check one experiment and add its rows to its source's table; the datasets it uses."""
    if not isinstance(ex, dict):
        raise InputError(f"{where}: must be a mapping (base, source, targets, methods, iters)")
    unknown = sorted(set(ex) - set(EXPERIMENT_KEYS))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}")
    for key in ("source", "targets"):
        if key not in ex:
            raise InputError(f"{where}.{key}: required")
    if "method" in ex and "methods" in ex:
        raise InputError(f"{where}: give method or methods, not both")
    methods = _names(ex.get("methods", ex.get("method", "decoder-only")), f"{where}.methods")
    for m in methods:
        if m not in METHODS:
            raise InputError(f"{where}.methods: {m!r} is not one of {', '.join(METHODS)}")
    source = ex["source"]
    if source not in by_name:
        raise InputError(f"{where}.source: {source!r} is not a dataset ({', '.join(by_name)})")
    targets = _names(ex["targets"], f"{where}.targets")
    for t in targets:
        if t not in by_name:
            raise InputError(f"{where}.targets: {t!r} is not a dataset ({', '.join(by_name)})")
    base = bases.resolve(ex.get("base", DEFAULT_BASE), f"{where}.base")
    settings = _settings(ex, where, base, methods)
    table = tables.setdefault(source, Table(source))
    table.targets += [t for t in targets if t not in table.targets]
    for m in methods:
        _add_row(table, base, m, source, settings, where)
        if m == "none":
            _check_as_is(base, classes, f"{where}.base")
    return [source, *targets]


def _settings(ex: dict, where: str, base: Base, methods: list[str]) -> dict:
    """An experiment's fine-tuning settings (DEFAULTS for those it leaves out), checked when
    one of its methods trains."""
    settings = {k: ex.get(k, v) for k, v in DEFAULTS.items()}
    if not any(m != "none" for m in methods):
        return settings
    if "iters" not in ex:
        raise InputError(f"{where}.iters: required (optimizer steps per fine-tune)")
    settings["iters"] = _number(ex["iters"], f"{where}.iters", int, 1)
    for key, kind, low, open_min in SETTING_CHECKS:
        settings[key] = _number(settings[key], f"{where}.{key}", kind, low, open_min)
    if settings["adapter_cutoff"] > 1:
        raise InputError(f"{where}.adapter_cutoff: {settings['adapter_cutoff']} must lie in (0, 1]")
    if base.kind not in ("model", "backbone"):
        raise InputError(f"{where}.base: {base.path} is a {base.kind} checkpoint")
    return settings


def _add_row(table: Table, base: Base, method: str, source: str, settings: dict,
             where: str) -> None:
    """The row of ``base`` / ``method`` in its source's table (one per model and method)."""
    ft = None
    if method != "none":
        own = {k: settings[k] for k in ("iters", "tile", "batch", "lr", "warmup", "seed")}
        if method == "earth-adapter":
            own.update(adapter_rank=settings["adapter_rank"],
                       adapter_cutoff=settings["adapter_cutoff"])
        own["save_every"] = settings["save_every"]
        ft = Finetune("", base, source, method, own)
    same = [r for r in table.rows if r.base.name == base.name and r.method == method]
    if not same:
        table.rows.append(Row(base, method, ft))
    elif ft is not None and (same[0].finetune.settings != ft.settings
                             or same[0].base.path != base.path):
        raise InputError(f"{where}: a second {base.name} / {method} row for source {source!r} "
                         f"with other settings; one row per model and method in a table")


def _add_baseline(bl: Any, path: Path, bases: _Bases, classes: ClassSpec,
                  tables: dict[str, Table]) -> tuple[str, str]:
    """Check ``baseline:``; put its row first in every table that lacks it (as it is).
    Returns (base name, method)."""
    if not isinstance(bl, dict) or set(bl) - {"base", "method"} or "base" not in bl:
        raise InputError(f"{path}: baseline: required, {{base: MODEL, method: none|decoder-only|"
                         f"earth-adapter}} (the row the changes are against)")
    bl_method = bl.get("method", "none")
    if bl_method not in METHODS:
        raise InputError(f"{path}: baseline.method: {bl_method!r} is not one of {', '.join(METHODS)}")
    bl_base = bases.resolve(bl["base"], f"{path}: baseline.base")
    for table in tables.values():
        found = [r for r in table.rows if r.base.name == bl_base.name and r.method == bl_method]
        if not found and bl_method != "none":
            raise InputError(f"{path}: baseline: no experiment with source {table.source!r} has "
                             f"base {bl_base.name!r} and method {bl_method!r}")
        if not found:
            _check_as_is(bl_base, classes, f"{path}: baseline.base")
            table.rows.insert(0, Row(bl_base, "none"))
    return bl_base.name, bl_method


def _resolve_datasets(by_name: dict, names: list[str], path: Path,
                      progress: ProgressCallback) -> dict[str, Dataset]:
    """The datasets the experiments use, their files paired and checked."""
    datasets: dict[str, Dataset] = {}
    for n, name in enumerate(names):
        where = f"{path}: datasets {name!r}"
        try:
            datasets[name] = _resolve_dataset(by_name[name], where)
        except InputError as e:
            raise InputError(f"{where}: {e}") from None
        _check_dataset(datasets[name], where)
        progress("check datasets", n + 1, len(names))
    return datasets


def _name_finetunes(tables: dict[str, Table], datasets: dict[str, Dataset],
                    classes: ClassSpec) -> None:
    """Each fine-tune's id: readable parts and a digest of everything that defines it."""
    for table in tables.values():
        for row in table.rows:
            ft = row.finetune
            if ft is not None:
                key = {"base": ft.base.digest, "source": datasets[ft.source].key, "method": ft.method,
                       "classes": classes.to_config(), **{k: v for k, v in ft.settings.items()
                                                          if k != "save_every"}}
                ft.id = (f"{slug(ft.source)}.{slug(ft.base.name)}.{ft.method}.i{ft.settings['iters']}"
                         f".{digest(key)[:10]}")


def _check_as_is(base: Base, classes: ClassSpec, where: str) -> None:
    """A base evaluated without fine-tuning needs the suite's classes, in order."""
    if base.kind != "model":
        raise InputError(f"{where}: {base.path} is a {base.kind} checkpoint; method none "
                         f"evaluates a whole model")
    if base.classes != list(classes.names):
        raise InputError(f"{where}: {base.name} has the classes ({', '.join(base.classes)}), the "
                         f"suite ({', '.join(classes.names)}); as it is (method none) it can only "
                         f"be evaluated on the same classes in the same order")
