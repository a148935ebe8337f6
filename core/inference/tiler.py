"""Tiled inference over a whole scene: windows, blending weights, streamed accumulation.

A scene is covered by square windows of ``tile`` pixels that overlap by ``overlap`` pixels;
the last window of a row / column is shifted back to end on the scene edge, and a scene
smaller than a tile is read as one window padded past its edge (the padding is invalid).
Windows without a valid pixel are skipped. Each pixel's class probabilities are the weighted
average, over the windows that cover it, of the model's probabilities, with a smooth
separable window that is > 0 everywhere (so scene borders are covered).

Memory stays O(width × tile × classes): probabilities are accumulated in a band of
``tile`` rows (``tile + stride`` when a row of windows is narrower than a batch, so that a batch
may span two rows) that slides down the scene; finished rows go to a ``sink`` as a class
band (uint8, ``NODATA_CLASS`` on nodata) and a confidence band (float32 max probability,
NaN on nodata). Windows are read on a background thread so I/O overlaps compute; on CUDA the
accumulation runs on the GPU and the model under bf16 autocast.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Protocol, Sequence

import numpy as np
import torch
from rasterio.windows import Window

from ..products.class_raster import NODATA_CLASS
from ..progress import ProgressCallback, ensure
from .devices import resolve_device  # noqa: F401 (the tiler's API)
from .window_grid import check_tiling, tile_windows, window_starts  # noqa: F401 (the tiler's API)

# predict(x [B,3,h,w], phys [B,h,w], valid [B,h,w]) -> probabilities [B,K,h,w] (sum 1 over K)
Predict = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# sink(row0, classes uint8 [h, W], confidence float32 [h, W]), called top to bottom
Sink = Callable[[int, np.ndarray, np.ndarray], None]


class WindowReader(Protocol):
    """What the tiler needs from a scene (core.scene.sar_io.SarScene satisfies it)."""

    width: int
    height: int

    def read_window(self, window: Window):  # -> WindowData(x, phys, valid)
        """The model input of one window: x [3, h, w] float32, phys [3, h, w], valid [h, w] bool."""
        ...


def blend_weights(tile: int, floor: float = 1e-3) -> np.ndarray:
    """Separable Hann-like window, float32 [tile, tile], in (0, 1], never below ``floor``."""
    t = (np.arange(tile, dtype=np.float64) + 0.5) / tile
    w = np.maximum(np.sin(np.pi * t) ** 2, floor)
    return np.outer(w, w).astype(np.float32)


@dataclass
class TilingStats:
    """What a tiled run did: window counts and where the time went (seconds)."""

    windows: int = 0
    windows_run: int = 0
    windows_skipped: int = 0
    forward_s: float = 0.0
    wait_read_s: float = 0.0
    total_s: float = 0.0
    tile: int = 0
    overlap: int = 0
    batch: int = 0
    device: str = "cpu"
    extra: dict = field(default_factory=dict)


class _Accumulator:
    """Weighted probability sums [K, rows, W] for the band of scene rows [base, base + rows).

    Only valid pixels contribute (weights × valid), so a pixel's sum over classes is its total
    weight: > 0 exactly where some window saw it valid, and dividing by it gives the blended
    probabilities. No separate weight or mask arrays are needed.
    """

    CHUNK_ROWS = 64  # rows finished at a time (bounds the temporaries of finish())

    def __init__(self, classes: int, rows: int, width: int, device: torch.device):
        self.base = 0
        self.rows = rows
        self.prob = torch.zeros((classes, rows, width), dtype=torch.float32, device=device)

    def add(self, row: int, col: int, probs: torch.Tensor, weight: torch.Tensor) -> None:
        """probs [K, h, w] and weight [h, w] (0 on invalid pixels) at scene offset (row, col)."""
        r = row - self.base
        h, w = weight.shape
        assert 0 <= r and r + h <= self.rows, "window outside the accumulation band"
        self.prob[:, r:r + h, col:col + w].addcmul_(probs, weight)

    def finish(self, n: int, lookup: torch.Tensor) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Finish the first n rows, CHUNK_ROWS at a time: yields (scene row, classes uint8
        [h, W], confidence float32 [h, W]); then slides the band down by n rows."""
        for i in range(0, n, self.CHUNK_ROWS):
            j = min(i + self.CHUNK_ROWS, n)
            band = self.prob[:, i:j]
            total = band.sum(dim=0)
            ok = total > 0
            conf, idx = band.max(dim=0)
            conf = torch.where(ok, conf / total.clamp_min(1e-30), torch.full_like(conf, float("nan")))
            cls = torch.where(ok, lookup[idx], torch.full_like(idx, NODATA_CLASS)).to(torch.uint8)
            yield self.base + i, cls.cpu().numpy(), conf.cpu().numpy()
        self._slide(n)

    def _slide(self, n: int) -> None:
        """Drop the first n rows: move the rest up (in non-overlapping steps) and zero the tail."""
        keep = self.rows - n
        for i in range(0, max(keep, 0), n):
            c = min(n, keep - i)
            self.prob[:, i:i + c].copy_(self.prob[:, n + i:n + i + c])
        self.prob[:, max(keep, 0):] = 0
        self.base += n


def _read_ahead(reader: WindowReader, windows: Sequence[Window], depth: int,
                stop: threading.Event) -> Iterator[tuple[int, object]]:
    """Yield (index, WindowData or None when it has no valid pixel), read on a thread."""
    q: "queue.Queue[tuple[int, object]]" = queue.Queue(maxsize=max(depth, 1))
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for i, win in enumerate(windows):
                data = reader.read_window(win)
                if not put((i, data if data.valid.any() else None)):
                    return
            put((-1, done))
        except BaseException as e:  # handed to the consumer, re-raised there
            put((-2, e))

    thread = threading.Thread(target=work, name="ces-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            i, item = q.get()
            if item is done:
                return
            if i == -2:
                raise item  # type: ignore[misc]
            yield i, item
    finally:
        stop.set()
        thread.join(timeout=5)


def run_tiled(reader: WindowReader, predict: Predict, num_classes: int, sink: Sink, *,
              tile: int = 512, overlap: int = 128, batch: int = 4,
              device: str | torch.device = "cpu", class_values: Optional[Sequence[int]] = None,
              progress: Optional[ProgressCallback] = None) -> TilingStats:
    """Run ``predict`` over the whole scene in blended windows; rows go to ``sink`` in order.

    ``class_values[k]`` is the raster value written for class index k (default k); nodata
    pixels get NODATA_CLASS. ``predict`` sees tensors on ``device`` and returns
    probabilities [B, K, tile, tile]; it runs under inference mode (and bf16 autocast on CUDA).
    """
    check_tiling(tile, overlap, batch)
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    progress = ensure(progress)
    t_start = time.perf_counter()
    width, height = int(reader.width), int(reader.height)
    windows = tile_windows(width, height, tile, overlap)
    stride = tile - overlap
    values = list(class_values) if class_values is not None else list(range(num_classes))
    if len(values) != num_classes or any(not 0 <= v < NODATA_CLASS for v in values):
        raise ValueError(f"class values {values} must be {num_classes} integers in 0..254")
    lookup = torch.tensor(values, dtype=torch.int64, device=dev)
    weights = torch.from_numpy(blend_weights(tile)).to(dev)
    # a batch spans at most two rows of windows, and only when a row has fewer windows than
    # the batch: then the band holds tile + stride rows, else tile rows (less memory)
    per_row = len(window_starts(width, tile, overlap))
    acc = _Accumulator(num_classes, tile if per_row >= batch else tile + stride, width, dev)
    stats = TilingStats(windows=len(windows), tile=tile, overlap=overlap, batch=batch,
                        device=str(dev))
    pending: list[tuple[Window, object]] = []
    emitted = 0  # rows [0, emitted) have gone to the sink

    def flush() -> None:
        if not pending:
            return
        x = torch.from_numpy(np.stack([d.x for _, d in pending])).to(dev, non_blocking=True)
        phys = torch.from_numpy(np.stack([d.phys for _, d in pending])).to(dev, non_blocking=True)
        valid = torch.from_numpy(np.stack([d.valid for _, d in pending])).to(dev, non_blocking=True)
        t0 = time.perf_counter()
        with torch.inference_mode(), torch.autocast(device_type=dev.type, dtype=torch.bfloat16,
                                                    enabled=dev.type == "cuda"):
            probs = predict(x, phys, valid)
        probs = probs.float()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        stats.forward_s += time.perf_counter() - t0
        if probs.shape[1] != num_classes:
            raise RuntimeError(f"the model returned {probs.shape[1]} classes, expected {num_classes}")
        for b, (win, _) in enumerate(pending):
            r, c = int(win.row_off), int(win.col_off)
            h, w = min(tile, height - r), min(tile, width - c)
            acc.add(r, c, probs[b, :, :h, :w], weights[:h, :w] * valid[b, :h, :w])
        stats.windows_run += len(pending)
        pending.clear()

    def emit(upto: int) -> None:
        nonlocal emitted
        upto = min(upto, height)
        while emitted < upto:
            n = min(upto - emitted, acc.rows)
            for row0, classes, conf in acc.finish(n, lookup):
                sink(row0, classes, conf)
            emitted += n

    stop = threading.Event()
    progress("segment", 0, len(windows))
    t_wait = time.perf_counter()
    for i, data in _read_ahead(reader, windows, depth=2 * batch, stop=stop):
        stats.wait_read_s += time.perf_counter() - t_wait
        win = windows[i]
        row = int(win.row_off)
        if row + tile > acc.base + acc.rows:  # the band cannot hold it: finish rows above it
            flush()
            emit(row)
        if data is None:
            stats.windows_skipped += 1
        else:
            pending.append((win, data))
            if len(pending) >= batch:
                flush()
        progress("segment", i + 1 - len(pending), len(windows))  # windows fully processed
        t_wait = time.perf_counter()
    flush()
    emit(height)
    progress("segment", len(windows), len(windows))
    stats.total_s = time.perf_counter() - t_start
    return stats
