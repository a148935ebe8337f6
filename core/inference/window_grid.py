"""The window grid of tiled inference, without torch (so that the CLI can check its numbers
before torch loads).

A scene of ``size`` pixels along an axis is covered by windows of ``tile`` pixels that
overlap by ``overlap`` pixels (stride ``tile - overlap``); the last window is shifted back to
end on the scene edge, and a scene smaller than a tile is one window. ``batch`` windows go
through the model at a time.
"""
from __future__ import annotations

from rasterio.windows import Window

from ..errors import ParameterError

MIN_TILE = 16   # pixels: the smallest window or crop


def window_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the windows along one axis (the last one ends on the edge)."""
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride))
    starts.append(size - tile)
    return starts


def tile_windows(width: int, height: int, tile: int, overlap: int) -> list[Window]:
    """Row-major windows of ``tile`` × ``tile`` pixels covering a width × height scene."""
    check_tiling(tile, overlap)
    return [Window(c, r, tile, tile)
            for r in window_starts(height, tile, overlap)
            for c in window_starts(width, tile, overlap)]


def check_tiling(tile: int, overlap: int, batch: int = 1) -> None:
    """ParameterError (an InputError naming ``tile``, ``overlap`` or ``batch``) on a
    combination that cannot work."""
    if tile < MIN_TILE:
        raise ParameterError("tile", tile, f"must be at least {MIN_TILE} pixels")
    if not 0 <= overlap < tile:
        raise ParameterError("overlap", overlap, f"must be >= 0 and smaller than the tile "
                                                 f"({tile} pixels)")
    if batch < 1:
        raise ParameterError("batch", batch, "must be at least 1")
