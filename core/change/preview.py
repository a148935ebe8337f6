"""A picture of a change product: ``write_change_preview`` makes one PNG with three panels on
the after scene's grid, before | after | change, and a legend below.

* before: the (first) reference scene in grey, brought onto the after grid (GDAL warp,
  average; only for the picture), with its classes in their colours over it (nearest);
* after: the after scene in grey with its classes;
* change: the after scene in grey with the change classes (core.change.classes).

Each panel's longer side is at most ``max_side`` pixels (decimated reads, so memory stays
small for any scene size); a title above each, white gaps between. The legend lists the
change classes with their share of the valid pixels. Grey stretch, blending and nodata
white as in core.products.preview. Written directly: core.change.detect makes it atomic with the other
outputs.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

from ..products.class_raster import NODATA_CLASS
from ..products.preview import MIN_WIDTH, OPACITY, PathLike, _out_shape, check_path, compose, grey_of, legend

MAX_SIDE = 512     # px, the longer side of each panel
GAP = 8            # px of white between panels
TITLE = 16         # px, the title band above the panels
TITLES = ("before", "after", "change")


def _on_grid(path: PathLike, grid, shape: tuple[int, int], resampling: Resampling,
             dtype: str, nodata) -> np.ndarray:
    """Band 1 of ``path`` on ``grid`` (an open after-grid raster) decimated to ``shape``."""
    with rasterio.open(path) as src:
        if grid.crs is None or src.crs is None:
            return src.read(1, out_shape=shape, resampling=resampling).astype(dtype)
        out = np.full(shape, nodata, dtype)
        dst_transform = grid.transform * grid.transform.scale(grid.width / shape[1],
                                                              grid.height / shape[0])
        src_nodata = src.nodata if src.nodata is not None else nodata
        reproject(source=rasterio.band(src, 1), destination=out, src_transform=src.transform,
                  src_crs=src.crs, src_nodata=src_nodata, dst_transform=dst_transform,
                  dst_crs=grid.crs, dst_nodata=nodata, resampling=resampling)
        return out


def _title_band(width: int, spans: Sequence[tuple[int, str]]) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    band = Image.new("RGB", (width, TITLE), (255, 255, 255))
    draw = ImageDraw.Draw(band)
    for x, text in spans:
        draw.text((x + 2, 2), text, fill=(0, 0, 0), font=ImageFont.load_default())
    return np.asarray(band, np.uint8)


def write_change_preview(before_scene: PathLike, after_scene: PathLike,
                         before_classes: PathLike, after_classes: PathLike,
                         change_raster: PathLike, classes: Sequence[dict],
                         change: Sequence[dict], output: PathLike, *,
                         max_side: int = MAX_SIDE) -> dict:
    """Write the three-panel PNG (module doc). ``before_classes`` lies on the before scene's
    grid, ``after_classes`` and ``change_raster`` on the after scene's; ``classes``: the
    model's raster classes, ``change``: the change classes. Returns {"path", "width",
    "height", "shares": {change class: fraction of valid pixels}}."""
    output = check_path(output)
    with rasterio.open(change_raster) as grid:
        shape = _out_shape(grid.width, grid.height, max_side)
        changed = grid.read(1, out_shape=shape, resampling=Resampling.nearest)
        after_values = _on_grid(after_scene, grid, shape, Resampling.average, "float64", np.nan)
        before_values = _on_grid(before_scene, grid, shape, Resampling.average, "float64", np.nan)
        after = _on_grid(after_classes, grid, shape, Resampling.nearest, "uint8", NODATA_CLASS)
        before = _on_grid(before_classes, grid, shape, Resampling.nearest, "uint8", NODATA_CLASS)
    panels = []
    for values, cls, table in ((before_values, before, classes), (after_values, after, classes),
                               (after_values, changed, change)):
        grey, valid = grey_of(np.ma.masked_invalid(values))
        panels.append(compose(grey, valid & (cls != NODATA_CLASS), cls, table, OPACITY))
    gap = np.full((shape[0], GAP, 3), 255, np.uint8)
    row = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    width = max(row.shape[1], MIN_WIDTH)
    mapped = np.full((shape[0], width, 3), 255, np.uint8)
    mapped[:, :row.shape[1]] = row
    valid = changed != NODATA_CLASS
    total = max(int(valid.sum()), 1)
    shares = [float(((changed == int(c["value"])) & valid).sum()) / total for c in change]
    titles = _title_band(width, [(i * (shape[1] + GAP), t) for i, t in enumerate(TITLES)])
    picture = np.concatenate([titles, mapped, legend(change, shares, width)], axis=0)
    from PIL import Image

    Image.fromarray(picture, "RGB").save(output, format="PNG")
    return {"path": str(output), "width": int(picture.shape[1]), "height": int(picture.shape[0]),
            "shares": {str(c["name"]): s for c, s in zip(change, shares)}}
