"""A picture of a segmentation: ``write_preview`` makes a small PNG of a scene as a grey
quicklook with the classes in their colours over it, and a legend below.

Inputs: the SAR scene (band 1 is shown; any raster GDAL reads) and the class raster of
``ces segment`` on the same grid (uint8 values of core.products.class_raster.raster_classes, 255 =
nodata). Both are read decimated so that the longer side is at most ``max_side`` pixels
(average for the scene, nearest for the classes), so memory stays small for any scene size.

The picture: grey = the scene, stretched between its 2nd and 98th percentiles (of 10*log10
when the values look like linear intensity or amplitude: all >= 0 and spanning more than a
factor 50); a class pixel is the class colour blended over the grey with ``opacity``,
except a background class (core.products.class_raster.is_background), which is left grey; nodata
pixels of the scene are white. The map is at the top left, padded with white to at least
MIN_WIDTH pixels across; the legend (a swatch and the name of each class, with its
share of the valid pixels) is a band below the map. Written directly: the caller makes it
atomic (core.inference.pipeline writes it with the other outputs, all or none).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import rasterio
from rasterio.enums import Resampling

from ..errors import InputError
from .class_raster import NODATA_CLASS, is_background, rgb

PathLike = Union[str, os.PathLike]
MAX_SIDE = 1024            # px, the longer side of the map part of the picture
OPACITY = 0.6              # class colour over the grey quicklook
LEGEND_ROW = 18            # px per legend entry
SWATCH = 12                # px, legend colour square
NODATA_GREY = 255          # white where the scene has no data
LOG_SPAN = 50.0            # p98 / p2 above this (values >= 0): stretch in dB
MIN_WIDTH = 240            # px: a narrower map is padded (white) so the legend fits


def check_path(output: PathLike) -> Path:
    """``output`` as a Path; InputError unless it names a .png file."""
    output = Path(output)
    if output.suffix.lower() != ".png":
        raise InputError(f"{output}: the preview is a PNG picture (.png)")
    return output


def _out_shape(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / float(max(width, height)))
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


def quicklook(scene: PathLike, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Band 1 of ``scene`` at ``shape`` (rows, cols) as uint8 grey, and its valid mask."""
    with rasterio.open(scene) as src:
        band = src.read(1, out_shape=shape, resampling=Resampling.average, masked=True)
    return grey_of(band)


def grey_of(band: np.ma.MaskedArray) -> tuple[np.ndarray, np.ndarray]:
    """A masked band [H, W] (any real or complex values) as uint8 grey (module doc's
    stretch), and its valid mask."""
    values = np.abs(band.data.astype(np.complex128)) if np.iscomplexobj(band.data) \
        else band.data.astype(np.float64)
    valid = ~np.ma.getmaskarray(band) & np.isfinite(values)
    shape = values.shape
    grey = np.full(shape, NODATA_GREY, np.uint8)
    if not valid.any():
        return grey, valid
    v = values[valid]
    lo, hi = np.percentile(v, [2, 98])
    if lo >= 0 and v.min() >= 0 and hi > LOG_SPAN * max(lo, 1e-12):
        v = 10.0 * np.log10(np.maximum(v, max(lo, 1e-12) * 1e-3))
        lo, hi = np.percentile(v, [2, 98])
    scaled = np.clip((v - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    grey[valid] = np.round(30 + 200 * scaled).astype(np.uint8)   # keep black and white apart
    return grey, valid


def compose(grey: np.ndarray, valid: np.ndarray, classes_array: np.ndarray,
            classes: Sequence[dict], opacity: float = OPACITY) -> np.ndarray:
    """The map part: [H, W, 3] uint8, class colours blended over the grey quicklook."""
    image = np.repeat(grey[..., None], 3, axis=-1).astype(np.float64)
    for i, c in enumerate(classes):
        if is_background(c):
            continue
        where = (classes_array == int(c["value"])) & valid
        image[where] = (1.0 - opacity) * image[where] + opacity * np.array(rgb(c.get("color"), i))
    return np.round(image).astype(np.uint8)


def legend(classes: Sequence[dict], shares: Sequence[float], width: int) -> np.ndarray:
    """The legend band: [LEGEND_ROW * len(classes) + 6, width, 3] uint8, white, one row per
    class: its colour swatch, its name and its share of the valid pixels."""
    from PIL import Image, ImageDraw, ImageFont

    height = LEGEND_ROW * len(classes) + 6
    band = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(band)
    font = ImageFont.load_default()
    for i, (c, share) in enumerate(zip(classes, shares)):
        y = 3 + i * LEGEND_ROW
        color = rgb(c.get("color"), i)
        draw.rectangle([6, y + 2, 6 + SWATCH - 1, y + 2 + SWATCH - 1], fill=color,
                       outline=(80, 80, 80) if is_background(c) else None)
        name = str(c.get("name", c.get("value")))
        note = " (left grey)" if is_background(c) else ""
        draw.text((6 + SWATCH + 6, y + 2), f"{name}: {100.0 * share:.1f} %{note}",
                  fill=(0, 0, 0), font=font)
    return np.asarray(band, np.uint8)


def write_preview(scene: PathLike, class_raster: PathLike, classes: Sequence[dict],
                  output: PathLike, *, max_side: int = MAX_SIDE,
                  opacity: float = OPACITY) -> dict:
    """Write the PNG picture of a segmentation (see the module docstring).

    ``classes``: [{"name", "value", "color"}] with the values of the class raster.
    Returns {"path", "width", "height", "shares": {name: fraction of valid pixels}}.
    InputError when the output is not a .png or the rasters' sizes differ.
    """
    output = check_path(output)
    with rasterio.open(scene) as src, rasterio.open(class_raster) as cls_src:
        if (src.width, src.height) != (cls_src.width, cls_src.height):
            raise InputError(f"{class_raster}: {cls_src.width} x {cls_src.height} px, but the "
                             f"scene {scene} is {src.width} x {src.height} px")
        shape = _out_shape(src.width, src.height, max_side)
        classes_array = cls_src.read(1, out_shape=shape, resampling=Resampling.nearest)
    grey, valid = quicklook(scene, shape)
    valid &= classes_array != NODATA_CLASS
    total = max(int(valid.sum()), 1)
    shares = [float(((classes_array == int(c["value"])) & valid).sum()) / total for c in classes]
    width = max(shape[1], MIN_WIDTH)
    mapped = np.full((shape[0], width, 3), 255, np.uint8)
    mapped[:, :shape[1]] = compose(grey, valid, classes_array, classes, opacity)
    picture = np.concatenate([mapped, legend(classes, shares, width)], axis=0)
    from PIL import Image

    Image.fromarray(picture, "RGB").save(output, format="PNG")
    return {"path": str(output), "width": int(picture.shape[1]), "height": int(picture.shape[0]),
            "shares": {str(c.get("name")): s for c, s in zip(classes, shares)}}
