"""The classes of a change product, from the classes of the model that made it.

* A *water model* (one class that is not background, e.g. ces-s1-water's background / water)
  gives :data:`WATER_CHANGE`: ``no water`` 0 (water on neither date; drawn without fill),
  ``flood`` 1 (water after, not before: it stands out in red), ``permanent water`` 2 (water
  on both dates: a quiet grey-blue), ``receded`` 3 (water before, not after: pale tan).
* Any other model gives from → to transitions: class i before and j after is value
  i·K + j (K classes, at most :data:`MAX_TRANSITION_CLASSES` so that values stay within
  0..254). An unchanged class keeps its name and colour and is drawn without fill; a
  transition "A → B" takes B's colour.

:func:`change_lookup` turns (reference class value, after class value) into the change value
with one table lookup; 255 (nodata) on either side gives 255. No torch, no qgis: the QGIS
plugin names and styles its layers with this module.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..class_colors import class_color, is_background
from ..products.class_raster import NODATA_CLASS

#: the change classes of a water model (values of the change raster)
WATER_CHANGE = [
    {"name": "no water", "value": 0, "color": "#d9d9d9", "background": True},
    {"name": "flood", "value": 1, "color": "#e8161b", "background": False},
    {"name": "permanent water", "value": 2, "color": "#7b93ad", "background": False},
    {"name": "receded", "value": 3, "color": "#d9c38c", "background": False},
]
MAX_TRANSITION_CLASSES = 15     # 15 x 15 = 225 transition values < 255 (nodata)
#: the label meanings a change evaluation knows: what the positive (water) class of a label
#: set stands for, and the change classes that then count as positive
LABEL_MEANINGS = {"new-water": ("flood",), "water-after": ("flood", "permanent water")}


def water_class(classes: Sequence[dict]) -> dict | None:
    """The one class of a water model that is not background, else None."""
    shown = [c for c in classes if not is_background(c)]
    return shown[0] if len(shown) == 1 and len(classes) >= 2 else None


def change_classes(classes: Sequence[dict]) -> list[dict]:
    """The change classes [{"name", "value", "color", "background"}] for a model's raster
    classes (core.products.class_raster.raster_classes). ValueError for more than
    MAX_TRANSITION_CLASSES classes."""
    if water_class(classes) is not None:
        return [dict(c) for c in WATER_CHANGE]
    k = len(classes)
    if k > MAX_TRANSITION_CLASSES:
        raise ValueError(f"the model has {k} classes; change maps of up to "
                         f"{MAX_TRANSITION_CLASSES} classes can be made")
    out = []
    for i, a in enumerate(classes):
        for j, b in enumerate(classes):
            color = b.get("color") or class_color(b.get("name"), j)
            name = str(a["name"]) if i == j else f"{a['name']} \u2192 {b['name']}"
            out.append({"name": name, "value": i * k + j, "color": color,
                        "background": i == j})
    return out


def change_lookup(classes: Sequence[dict]) -> np.ndarray:
    """uint8 [256, 256]: change value of (reference value, after value), 255 where either is
    nodata or not a class value."""
    lut = np.full((256, 256), NODATA_CLASS, np.uint8)
    water = water_class(classes)
    for i, a in enumerate(classes):
        for j, b in enumerate(classes):
            if water is not None:
                before, after = a is water, b is water
                value = {(False, False): 0, (False, True): 1, (True, True): 2,
                         (True, False): 3}[(before, after)]
            else:
                value = i * len(classes) + j
            lut[int(a["value"]), int(b["value"])] = value
    return lut


def vote_order(classes: Sequence[dict]) -> list[int]:
    """Class indexes in the order that wins ties of the reference vote: classes that are
    not background first (a pixel that half of the references see as water is reference
    water), then background, each by index."""
    return ([i for i, c in enumerate(classes) if not is_background(c)]
            + [i for i, c in enumerate(classes) if is_background(c)])


def positive_values(change: Sequence[dict], meaning: str) -> list[int]:
    """The change values that count as a label set's positive class under ``meaning`` (a key
    of LABEL_MEANINGS; water-model change classes only)."""
    names = LABEL_MEANINGS[meaning]
    return [int(c["value"]) for c in change if c["name"] in names]
