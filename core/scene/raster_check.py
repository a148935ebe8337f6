"""Full-resolution readability of a raster, and read errors that name the file and window.

A raster can open and show its overviews while its full-resolution pixels are damaged: a
COG cut short (a partial download) keeps its header and overviews, which GDAL writes first,
and loses its last full-resolution blocks; a VRT can outlive its source files. Without a
check the failure comes mid-run, after the inference, as rasterio's nameless "Read failed.
See previous exception for details."

* :func:`check_readable` finds these before any work, in two cheap passes:
  (1) GeoTIFFs: every block's byte range (TIFF directory: BLOCK_OFFSET / BLOCK_SIZE) must lie
  inside the file: no pixel is read, and any truncation is caught;
  (2) any format: a sparse sample of at most ``SAMPLE_BLOCKS`` blocks (the first, the last,
  the rest spread evenly in raster order) is read at full resolution: missing VRT sources
  and damaged data are caught where they are sampled.
* :func:`read` / :func:`read_masks` wrap ``DatasetReader.read`` / ``read_masks``: a failure
  that still happens becomes an InputError naming the file, the window and GDAL's own message.

Errors are InputError (the CLI exits 2 with one line).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from rasterio.errors import RasterioError
from rasterio.windows import Window

from ..errors import InputError, one_line

SAMPLE_BLOCKS = 16          # blocks read at full resolution by check_readable
MAX_LAYOUT_BLOCKS = 200_000  # blocks per band whose byte range is checked (beyond: strided)
_GENERIC = ("see previous exception", "read failed", "read or write failed")


def gdal_message(error: BaseException) -> str:
    """GDAL's own message behind a rasterio error (rasterio's "Read failed. See previous
    exception for details." says nothing; the chained CPLE error holds GDAL's words)."""
    seen, parts = set(), []
    e: Optional[BaseException] = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        text = one_line(str(e))
        if text and not any(g in text.lower() for g in _GENERIC):
            parts.append(text)
        e = e.__cause__ or e.__context__
    if not parts:
        return one_line(error)
    return parts[-1] if len(parts) == 1 else parts[0]


def _window_text(kwargs: dict) -> str:
    window = kwargs.get("window")
    if window is None:
        return "a reduced-resolution read" if "out_shape" in kwargs else "the whole raster"
    return (f"window col {int(window.col_off)}, row {int(window.row_off)}, "
            f"{int(window.width)} x {int(window.height)} px")


def _name(src, path) -> str:
    return str(path if path is not None else getattr(src, "name", "raster"))


def read(src, path: Optional[os.PathLike | str] = None, indexes=None, **kwargs) -> np.ndarray:
    """``src.read(indexes, **kwargs)``; InputError naming the file, window and GDAL's message."""
    try:
        return src.read(indexes, **kwargs)
    except RasterioError as e:
        raise InputError(f"{_name(src, path)}: cannot read pixels ({_window_text(kwargs)}): "
                         f"{gdal_message(e)}") from None


def read_masks(src, path: Optional[os.PathLike | str] = None, indexes=None, **kwargs) -> np.ndarray:
    """``src.read_masks(indexes, **kwargs)`` with the errors of :func:`read`."""
    try:
        return src.read_masks(indexes, **kwargs)
    except RasterioError as e:
        raise InputError(f"{_name(src, path)}: cannot read the validity mask "
                         f"({_window_text(kwargs)}): {gdal_message(e)}") from None


def _block_grid(src, band: int) -> tuple[int, int, int, int]:
    """(block height, block width, block rows, block cols) of ``band``."""
    bh, bw = src.block_shapes[band - 1]
    return bh, bw, math.ceil(src.height / bh), math.ceil(src.width / bw)


def check_block_layout(src, path: os.PathLike | str, bands: Sequence[int]) -> None:
    """GeoTIFF only: every block of ``bands`` lies inside the file (InputError otherwise)."""
    path = Path(path)
    if src.driver != "GTiff" or not path.is_file():
        return
    size = path.stat().st_size
    for band in bands:
        bh, bw, rows, cols = _block_grid(src, band)
        n = rows * cols
        step = max(1, n // MAX_LAYOUT_BLOCKS)
        order = list(range(0, n, step))
        if order[-1] != n - 1:
            order.append(n - 1)
        for i in order:
            r, c = divmod(i, cols)
            offset = src.get_tag_item(f"BLOCK_OFFSET_{c}_{r}", "TIFF", bidx=band)
            length = src.get_tag_item(f"BLOCK_SIZE_{c}_{r}", "TIFF", bidx=band)
            if offset is None or length is None:
                return  # GDAL does not expose the layout here: the sample read still runs
            end = int(offset) + int(length)
            if int(offset) and end > size:
                raise InputError(
                    f"{path}: the file is cut short (a partial download or copy?): the block "
                    f"at col {c * bw}, row {r * bh} of band {band} ends at byte {end}, the file "
                    f"has {size} bytes; its overviews may still display, the full-resolution "
                    f"pixels cannot be read")


def sample_windows(src, band: int = 1, count: int = SAMPLE_BLOCKS) -> list[Window]:
    """At most ``count`` block windows of ``band``: the first, the last, the rest spread
    evenly in raster order."""
    bh, bw, rows, cols = _block_grid(src, band)
    n = rows * cols
    picks = sorted({int(round(v)) for v in np.linspace(0, n - 1, min(count, n))})
    out = []
    for i in picks:
        r, c = divmod(i, cols)
        out.append(Window(c * bw, r * bh, min(bw, src.width - c * bw),
                          min(bh, src.height - r * bh)))
    return out


def check_readable(src, path: os.PathLike | str,
                   bands: Optional[Sequence[int]] = None) -> None:
    """InputError (naming the file, and the window with GDAL's message) unless the
    full-resolution pixels of ``bands`` (default all) look readable; see the module doc."""
    bands = list(bands or range(1, src.count + 1))
    check_block_layout(src, path, bands)
    for window in sample_windows(src, bands[0]):
        read(src, path, bands, window=window)
        read_masks(src, path, bands, window=window)


def check_file(path: os.PathLike | str) -> None:
    """Open ``path`` and :func:`check_readable` all its bands (InputError naming the file)."""
    import warnings

    import rasterio
    from rasterio.errors import NotGeoreferencedWarning

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a raster")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            src = rasterio.open(path)
    except RasterioError as e:
        raise InputError(f"{path}: not a raster GDAL can read ({gdal_message(e)})") from None
    with src:
        check_readable(src, path)
