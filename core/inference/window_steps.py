"""Progress inside a window, for scenes of a few windows (a single chip is one window).

The tiler counts whole windows (``progress("segment", done, total)``), so a scene of one
window reports 0 of 1 for the whole forward pass and a bar cannot move. For a scene of at
most ``SMALL_SCENE_WINDOWS`` windows, :func:`window_steps` counts each window as ``S`` steps,
``S`` the number of transformer blocks of the model, and reports a step each time a block
finishes (a forward hook). The ``segment`` stage then reads ``done`` of ``total`` steps, with
``total = windows × S``; larger scenes keep counting windows (docs/contracts.md §5).

Steps are monotonic: hooks may run in several threads (CPU streams) and on batches of
several windows; a step never passes the next whole window the tiler reports.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Iterator

import torch

from ..progress import ProgressCallback, ensure

SMALL_SCENE_WINDOWS = 4     # at most this many windows: steps inside each window
STAGE = "segment"


class _StepCounter:
    """The wrapped callback: scales the tiler's window counts to steps, adds block steps."""

    def __init__(self, progress: ProgressCallback, steps: int):
        self.progress, self.steps = progress, steps
        self.lock = threading.Lock()
        self.scaled = False
        self.windows_done = self.total = self.last = 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != STAGE:
            self.progress(stage, done, total)
            return
        with self.lock:
            self.scaled = 0 < total <= SMALL_SCENE_WINDOWS
            if not self.scaled:
                self.progress(stage, done, total)
                return
            self.windows_done, self.total = done, total * self.steps
            self.last = max(self.last, done * self.steps)
            self.progress(stage, self.last, self.total)

    def block_done(self) -> None:
        """One transformer block finished (on the window(s) now running)."""
        with self.lock:
            if not self.scaled:
                return
            ceiling = (self.windows_done + 1) * self.steps - 1   # the tiler reports the window
            if self.last < ceiling:
                self.last += 1
                self.progress(STAGE, self.last, self.total)


@contextlib.contextmanager
def window_steps(model: torch.nn.Module,
                 progress: ProgressCallback | None) -> Iterator[ProgressCallback]:
    """Yield the callback to give the tiler: it reports block steps of ``model`` (a
    CrossEarthSAR, blocks at ``model.backbone.blocks``) for scenes of few windows. Without
    blocks to hook, the callback is ``progress`` unchanged."""
    progress = ensure(progress)
    blocks = list(getattr(getattr(model, "backbone", None), "blocks", None) or [])
    if not blocks:
        yield progress
        return
    counter = _StepCounter(progress, len(blocks))
    handles = [b.register_forward_hook(lambda *_: counter.block_done()) for b in blocks]
    try:
        yield counter
    finally:
        for handle in handles:
            handle.remove()
