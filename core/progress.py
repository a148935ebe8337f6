"""The progress protocol of the core: a plain callback, turned into tqdm or JSON by the CLI.

A callback is called as ``progress(stage, done, total)``: ``stage`` a short name such as
``"segment"`` or ``"vectorize"``, ``done`` and ``total`` counts of work units
(``total`` may be 0 when unknown). The core never prints.
"""
from __future__ import annotations

from typing import Callable, Optional

ProgressCallback = Callable[[str, int, int], None]


def no_progress(stage: str, done: int, total: int) -> None:
    """A callback that ignores everything."""


def ensure(callback: Optional[ProgressCallback]) -> ProgressCallback:
    """The callback itself, or :func:`no_progress` when None."""
    return callback if callback is not None else no_progress
