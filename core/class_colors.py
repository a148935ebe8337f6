"""Class colours and the background rule: one home for the polygons, the class raster and
the preview.

* :func:`class_color` ``(name, index) -> "#rrggbb"``: a colour that suits a land-cover name
  when the name says what the class is (water blue, urban red, vegetation green, bare soil
  tan, snow and ice pale cyan, wetland teal), else the index's colour of :data:`PALETTE`, a
  qualitative palette without black or near-white (a class must never hide the scene in
  black, nor vanish on a light map).
* :func:`is_background` ``(class dict) -> bool``: drawn without fill so the scene shows
  through: a class's own ``background: true|false`` when given (a classes file may say it),
  else a background-like name (:data:`BACKGROUND_NAMES`: "background", "land", "dry",
  "other", "no water", "not water", "none"...). When no class is background, every class is
  filled: a land-cover model whose value 0 is "water" keeps its water blue.

No torch, no qgis: the QGIS plugin, the CLI and the training code all use it.
"""
from __future__ import annotations

import re
from typing import Any

#: a class colour as classes files and model configs write it: "#rrggbb"
HEX_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")

#: qualitative colours for classes whose name says nothing (ColorBrewer Paired / Set3 hues,
#: black and near-white left out)
PALETTE = ["#1f78b4", "#33a02c", "#e31a1c", "#ff7f00", "#6a3d9a", "#b15928", "#a6cee3",
           "#b2df8a", "#fb9a99", "#fdbf6f", "#cab2d6", "#8dd3c7", "#bebada", "#80b1d3"]

#: names (lower case, spaces for _ and -) of classes drawn without fill
BACKGROUND_NAMES = frozenset({
    "background", "land", "dry", "dry land", "dryland", "other", "others", "rest",
    "no water", "not water", "non water", "nonwater", "no flood", "not flooded", "non flooded",
    "none", "nothing", "no data", "nodata", "unlabelled", "unlabeled", "unknown", "void",
    "clutter", "class 0 background"})

#: keyword (a whole word of the name) -> colour, first match wins
NAMED_COLORS: list[tuple[tuple[str, ...], str]] = [
    (("water", "river", "rivers", "lake", "lakes", "flood", "flooded", "sea", "ocean", "reservoir",
      "pond", "inundation", "inundated", "stream"), "#1f78b4"),
    (("wetland", "wetlands", "marsh", "swamp", "mangrove", "mangroves"), "#1b9e77"),
    (("urban", "built", "building", "buildings", "city", "settlement", "settlements",
      "residential", "industrial", "road", "roads", "impervious", "artificial"), "#e31a1c"),
    (("vegetation", "forest", "forests", "tree", "trees", "woodland", "crop", "crops",
      "cropland", "grass", "grassland", "agriculture", "agricultural", "farmland", "field",
      "fields", "shrub", "shrubland", "meadow", "pasture"), "#33a02c"),
    (("bare", "soil", "sand", "beach", "desert", "rock", "rocks", "barren", "mountain",
      "mountains", "gravel"), "#d2b48c"),
    (("snow", "ice", "glacier", "glaciers"), "#a6dbe8"),
]


def _words(name: Any) -> list[str]:
    return [w for w in re.split(r"[\s_\-/.,;:()]+", str(name or "").lower()) if w]


def is_background(cls: dict) -> bool:
    """Whether a class is drawn without fill (module doc)."""
    if "background" in cls and cls["background"] is not None:
        return bool(cls["background"])
    return " ".join(_words(cls.get("name"))) in BACKGROUND_NAMES


def class_color(name: Any, index: int) -> str:
    """The default colour "#rrggbb" of class ``index`` named ``name`` (module doc)."""
    words = set(_words(name))
    if " ".join(_words(name)) not in BACKGROUND_NAMES:
        for keys, color in NAMED_COLORS:
            if words & set(keys):
                return color
    return PALETTE[index % len(PALETTE)]


__all__ = ["PALETTE", "BACKGROUND_NAMES", "NAMED_COLORS", "is_background", "class_color"]
