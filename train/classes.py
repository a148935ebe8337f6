"""The classes file: class names, label values and colours, plus ignored values.

YAML or JSON, e.g.::

    classes:
      - {name: background, value: 0, color: "#d9d9d9"}
      - {name: water, values: [1, 2], color: "#1f78b4"}   # flood and permanent water
    ignore: [-1]

Label values (integers in the label rasters, or in the vector class field; for vectors a
class may also be given by its name) map to class indices 0..K-1 in the order of the file.
A class takes one ``value`` or a list of ``values`` (merged into the one class); a value
claimed by two classes is an error naming both.
Ignored values, nodata and unlabelled pixels map to :data:`IGNORE_INDEX` (255).
A flood label set may say what its water class stands for (``meaning: new-water`` or
``meaning: water-after``; ``ces evaluate --before`` scores a change product by it).
Without a classes file the classes are inferred from the label values (sorted).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from ..core.change.classes import LABEL_MEANINGS
from ..core.class_colors import HEX_COLOR, class_color
from ..core.errors import InputError

IGNORE_INDEX = 255



@dataclass
class ClassSpec:
    """Classes in index order: ``classes[i] = {"name", "value", "values", "color"}`` (``value``
    the first of ``values``, the label values merged into the class); ``ignore`` values;
    ``meaning``: what the positive class of a water label set stands for when it labels a
    flood (a key of core.change.classes.LABEL_MEANINGS: "new-water" or "water-after"), or
    None when the file does not say."""

    classes: list[dict[str, Any]]
    ignore: list[int] = field(default_factory=list)
    source: str = "inferred"
    meaning: Optional[str] = None

    @property
    def names(self) -> list[str]:
        """The class names, in order."""
        return [c["name"] for c in self.classes]

    @property
    def values(self) -> list[int]:
        """Every label value of every class, in class order."""
        return [int(v) for c in self.classes for v in class_values(c)]

    def __len__(self) -> int:
        return len(self.classes)

    def index_of(self, key: Any, where: str = "") -> int:
        """Class index of a label value or a class name; IGNORE_INDEX for ignored values."""
        if isinstance(key, str):
            for i, c in enumerate(self.classes):
                if c["name"] == key:
                    return i
            try:
                key = int(float(key))
            except ValueError:
                raise InputError(f"{where}class {key!r} is not in {self._described()}") from None
        key = int(key)
        if key in self.ignore:
            return IGNORE_INDEX
        for i, c in enumerate(self.classes):
            if key in class_values(c):
                return i
        raise InputError(f"{where}label value {key} is not in {self._described()}")

    def map_labels(self, raw: np.ndarray, valid: np.ndarray | None = None,
                   where: str = "") -> np.ndarray:
        """Raw label values [H, W] -> uint8 class indices, 255 for ignored/nodata pixels.

        InputError naming the first value that is neither a class nor ignored.
        """
        out = np.full(raw.shape, IGNORE_INDEX, np.uint8)
        keep = np.ones(raw.shape, bool) if valid is None else valid.copy()
        if np.issubdtype(raw.dtype, np.floating):
            keep &= np.isfinite(raw)
        values = np.unique(raw[keep])
        for v in values:
            idx = self.index_of(int(v), where)
            if idx != IGNORE_INDEX:
                out[keep & (raw == v)] = idx
        return out

    def to_config(self) -> list[dict[str, Any]]:
        """The list stored in a model's config (``model.classes``)."""
        out = []
        for c in self.classes:
            vals = class_values(c)
            out.append(dict(name=c["name"], value=vals[0], color=c["color"],
                            **({"values": vals} if len(vals) > 1 else {}), **_background(c)))
        return out

    def _described(self) -> str:
        vals = ", ".join(f"{'/'.join(map(str, class_values(c)))} ({c['name']})"
                         for c in self.classes)
        what = f"the classes file {self.source}" if self.source != "inferred" else "the classes"
        return f"{what} (classes: {vals}; ignore: {self.ignore or 'none'})"


def _background(c: dict[str, Any]) -> dict[str, bool]:
    """A class's own ``background`` key (core/class_colors.is_background), to carry along."""
    return {"background": bool(c["background"])} if c.get("background") is not None else {}


def _color(value: Any, i: int, where: str, name: Any = None) -> str:
    if value is None:
        return class_color(name, i)
    if isinstance(value, (list, tuple)) and len(value) == 3:
        return "#" + "".join(f"{int(c):02x}" for c in value)
    if isinstance(value, str) and HEX_COLOR.match(value):
        return value.lower()
    raise InputError(f"{where}: colour {value!r} is neither '#rrggbb' nor [r, g, b]")


def read_document(path: os.PathLike | str, what: str) -> Any:
    """The parsed YAML or JSON (by extension) of ``path``; InputError naming the file and
    ``what`` it is ("classes file", "data file") when it cannot be read or parsed."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise InputError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception as e:  # parse errors of either format
        first = str(e).splitlines()[0] if str(e) else ""
        raise InputError(f"{path}: not a valid {what} ({type(e).__name__}: {first})") from None


def load_classes(path: os.PathLike | str) -> ClassSpec:
    """Read a classes file (.yaml/.yml/.json); InputError naming the file on any problem."""
    return parse_classes(read_document(path, "classes file"), Path(path))


def parse_classes(doc: Any, path: os.PathLike | str) -> ClassSpec:
    """A ClassSpec from a parsed classes document (``{classes: [...], ignore: [...]}`` or the
    bare list); ``path`` names where it came from in errors."""
    if isinstance(doc, list):
        doc = {"classes": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("classes"), list) or not doc["classes"]:
        raise InputError(f"{path}: a classes file needs a non-empty 'classes' list")
    classes, seen_names, owner = [], set(), {}
    for i, c in enumerate(doc["classes"]):
        if not isinstance(c, dict) or not ("value" in c or "values" in c):
            raise InputError(f"{path}: class {i + 1} needs a 'value' or 'values' (and a 'name')")
        values = _label_values(c, i, path)
        name = str(c.get("name", f"class_{values[0]}"))
        if name in seen_names:
            raise InputError(f"{path}: class name {name!r} appears twice")
        for v in values:
            if v in owner:
                raise InputError(f"{path}: label value {v} is claimed by two classes, "
                                 f"{owner[v]!r} and {name!r}")
            owner[v] = name
        seen_names.add(name)
        classes.append({"name": name, "value": values[0], "values": values,
                        "color": _color(c.get("color"), i, str(path), name), **_background(c)})
    seen_values = set(owner)
    ignore = doc.get("ignore", []) or []
    if not isinstance(ignore, list):
        ignore = [ignore]
    try:
        ignore = [int(v) for v in ignore]
    except (TypeError, ValueError):
        raise InputError(f"{path}: 'ignore' must be a list of integers") from None
    if set(ignore) & seen_values:
        raise InputError(f"{path}: values {sorted(set(ignore) & seen_values)} are both classes and ignored")
    meaning = doc.get("meaning")
    if meaning is not None and meaning not in LABEL_MEANINGS:
        raise InputError(f"{path}: meaning {meaning!r} is not one of {', '.join(LABEL_MEANINGS)}")
    return ClassSpec(classes, ignore, source=str(path), meaning=meaning)


CLASSES_FILE_NAMES = ("classes", "*_classes", "*-classes")
CLASSES_FILE_SUFFIXES = (".yaml", ".yml", ".json")


def classes_file_beside(label_paths: Sequence[os.PathLike | str]) -> Optional[str]:
    """The one classes file in the folder of the first label raster (``classes.yaml``, or
    ``NAME_classes.yaml`` / ``NAME-classes.yaml``; .yml and .json too), None when there is
    none or several. ``ces evaluate`` and the QGIS Evaluate dialog both use it when no
    classes file is given (e.g. examples/sen1floods11_classes.yaml beside the demo labels)."""
    import glob

    if not label_paths:
        return None
    first = Path(label_paths[0])
    folder = os.path.dirname(os.path.abspath(first if first.is_file() else first / "x"))
    found = sorted({path for stem in CLASSES_FILE_NAMES for suffix in CLASSES_FILE_SUFFIXES
                    for path in glob.glob(os.path.join(glob.escape(folder), stem + suffix))})
    return found[0] if len(found) == 1 else None


def class_values(c: dict[str, Any]) -> list[int]:
    """The label values of one class dict: its ``values`` list, else [its ``value``]."""
    vals = c.get("values")
    if vals is not None:
        return [int(v) for v in vals]
    return [int(c["value"])]


def _label_values(c: dict[str, Any], i: int, path: Path) -> list[int]:
    """The integer label values of class entry ``c`` (``value`` or ``values``)."""
    if "value" in c and "values" in c:
        raise InputError(f"{path}: class {i + 1} gives both 'value' and 'values'; use one")
    raw = c["values"] if "values" in c else [c["value"]]
    if not isinstance(raw, list) or not raw:
        raise InputError(f"{path}: class {i + 1} 'values' must be a non-empty list of integers")
    out = []
    for v in raw:
        if isinstance(v, bool) or not isinstance(v, (int, float, str)):
            raise InputError(f"{path}: class {i + 1} value {v!r} is not an integer")
        try:
            iv = int(v)
        except (TypeError, ValueError):
            raise InputError(f"{path}: class {i + 1} value {v!r} is not an integer") from None
        if float(iv) != float(v):
            raise InputError(f"{path}: class {i + 1} value {v!r} is not an integer")
        if iv in out:
            raise InputError(f"{path}: class {i + 1} lists value {iv} twice")
        out.append(iv)
    return out


def infer_classes(values: Iterable[Any], ignore: Iterable[int] = ()) -> ClassSpec:
    """Classes from the label values found (sorted; names ``class_<value>``, or the strings
    themselves for named vector classes)."""
    ignore = [int(v) for v in ignore]
    vals = sorted({v for v in values if isinstance(v, str) or int(v) not in ignore},
                  key=lambda v: (isinstance(v, str), v))
    classes = []
    for i, v in enumerate(vals):
        if isinstance(v, str):
            classes.append({"name": v, "value": i, "color": class_color(v, i)})
        else:
            classes.append({"name": f"class_{int(v)}", "value": int(v),
                            "color": class_color(None, i)})
    return ClassSpec(classes, ignore, source="inferred")


def from_model_classes(classes: list[dict[str, Any]]) -> ClassSpec:
    """A ClassSpec from a model's ``config["classes"]`` (evaluation without a classes file)."""
    out = []
    for i, c in enumerate(classes):
        color = c.get("color")
        vals = class_values(c) if ("values" in c or "value" in c) else [i]
        name = str(c.get("name", f"class_{i}"))
        out.append({"name": name, "value": vals[0], "values": vals,
                    "color": _color(color, i, "model", name), **_background(c)})
    return ClassSpec(out, [], source="of the model")
