"""Numeric options checked while the command line is parsed, before any data or model is read.

``Number(kind, minimum, open_min)`` is a click parameter type: it parses an int or a float
and refuses NaN and ±inf (for floats) and values below ``minimum`` (or equal to it when
``open_min``), as a click usage error that ``main`` prints as one line naming the flag::

    ces: error: --lr: -0.001 must be a number > 0
    ces: error: --min-area: nan is not a finite number

The checks themselves are core/number_checks.py's, shared with benchmark suites.

The ready-made instances below cover the options of every command.
"""
from __future__ import annotations

from typing import Optional

import click

from ..core.number_checks import Num, check_number


class Number(click.ParamType):
    """An int or a finite float, at least ``minimum`` (more than it when ``open_min``)."""

    def __init__(self, kind: type = float, minimum: Optional[Num] = None, open_min: bool = False):
        self.kind, self.minimum, self.open_min = kind, minimum, open_min
        self.name = "integer" if kind is int else "number"

    def convert(self, value, param, ctx) -> Num:
        number = value
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            text = str(value).strip()
            try:
                number = int(text) if self.kind is int else float(text)
            except ValueError:
                self.fail(f"{text!r} is not {'an integer' if self.kind is int else 'a number'}",
                          param, ctx)
        try:
            return check_number(number, self.kind, self.minimum, self.open_min)
        except ValueError as e:
            self.fail(str(e), param, ctx)

    def __repr__(self) -> str:
        bound = "" if self.minimum is None else f" {'>' if self.open_min else '>='} {self.minimum}"
        return f"{self.name.upper()}{bound}"


POSITIVE_INT = Number(int, 1)
NON_NEGATIVE_INT = Number(int, 0)
TILE = Number(int, 16)                       # window / crop size in pixels
POSITIVE_FLOAT = Number(float, 0, open_min=True)
NON_NEGATIVE_FLOAT = Number(float, 0)
WARMUP = Number(int, -1)                     # -1: automatic


class MultilookFactors(click.ParamType):
    """Comma-separated positive integers such as ``1,2,4`` -> a sorted tuple (train/scale_jitter.py)."""

    name = "factors"

    def convert(self, value, param, ctx) -> tuple:
        if isinstance(value, tuple):
            return value
        from ..train.scale_jitter import parse_factors

        try:
            return parse_factors(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


MULTILOOK_FACTORS = MultilookFactors()


def check_rasters(*groups) -> None:
    """The pre-check of the training and evaluation commands: every raster named by the
    --images / --labels style ``groups`` (files, folders, globs) has readable full-resolution
    pixels (core.scene.raster_check); vector labels are left to their reader."""
    from ..core.scene import raster_check
    from ..train.file_pairing import expand_paths, is_vector

    for items in groups:
        if items:
            for path in expand_paths(items, "images or labels"):
                if not is_vector(path):
                    raster_check.check_file(path)
