"""How a result looks when QGIS opens it: its layer name, and a QGIS style (QML, categorized by
class name) stored in a GeoPackage's ``layer_styles`` table.

QGIS applies the style whose ``useAsDefault`` is 1 when it opens the layer (docs/contracts.md §6).
A background class (see core/class_colors.py ``is_background``) is drawn as an outline without
fill, so the scene shows through it. Plain sqlite3 and string building: this module never
imports qgis (nor torch), so the CLI writes the style and the QGIS plugin reuses it
(qgis_plugin/class_style.py styles the layers it loads).
"""
from __future__ import annotations

import os
import sqlite3
from typing import Sequence
from xml.sax.saxutils import quoteattr

from ..class_colors import is_background
from .class_raster import rgb

STYLE_NAME = "CrossEarth-SAR classes"
QGIS_VERSION = "3.22.0-Białowieża"


def layer_name(scene: str, model: str, classes: Sequence[dict], kind: str = "polygons") -> str:
    """The QGIS layer name of a result: the scene, what it shows and the model, e.g.
    "Spain_7370579_S1Hand – water (ces-s1-water)" for the polygons of a water model (its
    classes without the background ones), "... – class raster (...)", "... – confidence
    (...)". ``scene`` / ``model``: paths or names (the stem is used)."""
    stem = os.path.splitext(os.path.basename(str(scene)))[0] or str(scene)
    model_stem = os.path.splitext(os.path.basename(str(model)))[0] or str(model)
    if kind == "polygons":
        shown = [str(c.get("name")) for c in classes if not is_background(c)] or \
            [str(c.get("name")) for c in classes]
        what = ", ".join(shown) if len(shown) <= 3 else "land cover"
    else:
        what = {"raster": "class raster", "confidence": "confidence"}.get(kind, kind)
    return f"{stem} \u2013 {what} ({model_stem})"


def _fill_symbol(name: str, color: tuple[int, int, int], filled: bool = True) -> str:
    r, g, b = color
    dark = f"{max(r - 60, 0)},{max(g - 60, 0)},{max(b - 60, 0)},255"
    options = {
        "color": f"{r},{g},{b},255", "style": "solid" if filled else "no",
        "outline_style": "solid", "outline_color": dark,
        "outline_width": "0.1" if filled else "0.26", "outline_width_unit": "MM",
        "joinstyle": "bevel",
        "border_width_map_unit_scale": "3x:0,0,0,0,0,0", "offset": "0,0",
        "offset_unit": "MM", "offset_map_unit_scale": "3x:0,0,0,0,0,0",
    }
    opts = "".join(f'<Option type="QString" name={quoteattr(k)} value={quoteattr(v)}/>'
                   for k, v in options.items())
    props = "".join(f"<prop k={quoteattr(k)} v={quoteattr(v)}/>" for k, v in options.items())
    return (f'<symbol type="fill" name={quoteattr(name)} alpha="1" clip_to_extent="1" '
            f'force_rhr="0"><data_defined_properties><Option type="Map">'
            f'<Option type="QString" name="name" value=""/><Option name="properties"/>'
            f'<Option type="QString" name="type" value="collection"/></Option>'
            f'</data_defined_properties>'
            f'<layer class="SimpleFill" enabled="1" pass="0" locked="0">'
            f'<Option type="Map">{opts}</Option>{props}</layer></symbol>')


def categorized_qml(classes: Sequence[dict], field: str = "class_name") -> str:
    """QML of a categorized renderer on ``field``: one category per class, the class colour.

    ``classes``: [{"name": str, "value": int, "color": "#rrggbb" | [r, g, b]}, ...]; a
    background class (:func:`is_background`) gets an outline and no fill.
    """
    cats, symbols = [], []
    for i, c in enumerate(classes):
        name = str(c.get("name", c.get("value", i)))
        cats.append(f'<category render="true" symbol="{i}" value={quoteattr(name)} '
                    f'label={quoteattr(name)}/>')
        symbols.append(_fill_symbol(str(i), rgb(c.get("color"), i), not is_background(c)))
    return (
        "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"
        f'<qgis version={quoteattr(QGIS_VERSION)} styleCategories="Symbology">\n'
        f'<renderer-v2 type="categorizedSymbol" attr={quoteattr(field)} symbollevels="0" '
        f'enableorderby="0" forceraster="0" referencescale="-1">'
        f'<categories>{"".join(cats)}</categories>'
        f'<symbols>{"".join(symbols)}</symbols>'
        f'<rotation/><sizescale/></renderer-v2>\n'
        '<blendMode>0</blendMode><featureBlendMode>0</featureBlendMode>'
        '<layerOpacity>1</layerOpacity>\n'
        '<layerGeometryType>2</layerGeometryType>\n'
        "</qgis>\n"
    )


_CREATE = """CREATE TABLE IF NOT EXISTS layer_styles (
    id INTEGER PRIMARY KEY AUTOINCREMENT, f_table_catalog TEXT(256), f_table_schema TEXT(256),
    f_table_name TEXT(256), f_geometry_column TEXT(256), styleName TEXT(30), styleQML TEXT,
    styleSLD TEXT, useAsDefault BOOLEAN, description TEXT, owner TEXT(30), ui TEXT(30),
    update_time DATETIME DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))"""


def write_gpkg_style(gpkg: str | os.PathLike, layer: str, qml: str,
                     style_name: str = STYLE_NAME,
                     description: str = "Land-cover classes of the CrossEarth-SAR model") -> None:
    """Store ``qml`` as the default style of ``layer`` in the GeoPackage ``gpkg``."""
    con = sqlite3.connect(os.fspath(gpkg))
    try:
        with con:
            geom_col = con.execute(
                "SELECT column_name FROM gpkg_geometry_columns WHERE table_name = ?",
                (layer,)).fetchone()
            geom_col = geom_col[0] if geom_col else "geom"
            con.execute(_CREATE)
            con.execute("INSERT OR IGNORE INTO gpkg_contents (table_name, data_type, identifier, "
                        "description, last_change) VALUES ('layer_styles', 'attributes', "
                        "'layer_styles', '', strftime('%Y-%m-%dT%H:%M:%fZ','now'))")
            con.execute("UPDATE layer_styles SET useAsDefault = 0 WHERE f_table_name = ?",
                        (layer,))
            con.execute(
                "INSERT INTO layer_styles (f_table_catalog, f_table_schema, f_table_name, "
                "f_geometry_column, styleName, styleQML, styleSLD, useAsDefault, description, "
                "owner, ui) VALUES ('', '', ?, ?, ?, ?, '', 1, ?, '', NULL)",
                (layer, geom_col, style_name, qml, description))
    finally:
        con.close()
