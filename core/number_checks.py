"""Number checks shared by every face: the CLI's option types (crossearth_cli/validate.py) and
the keys of benchmark suites (train/benchmark_suite.py) accept and refuse the same numbers, in
the same words.

:func:`check_number` ``(value, kind, minimum=None, open_min=False) -> int | float``: ``value`` as
``kind`` (int or float) when it is one (an int-valued float passes as an int; bool never),
finite and at least ``minimum`` (more than it with ``open_min``); else ValueError whose text
says why, e.g. "0 must be an integer >= 1", "-1 must be a number > 0", "nan is not a finite
number". The caller prefixes the parameter's name in its own terms.
"""
from __future__ import annotations

import math
from typing import Optional, Union

Num = Union[int, float]


def check_number(value: object, kind: type = float, minimum: Optional[Num] = None,
                 open_min: bool = False) -> Num:
    """The checked number (module doc)."""
    what = "an integer" if kind is int else "a number"
    bound = "" if minimum is None else f" {'>' if open_min else '>='} {minimum:g}"
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if ok and not math.isfinite(value):
        raise ValueError(f"{value!r} is not a finite number")
    if ok and kind is int:
        ok = float(value).is_integer()
    if ok and minimum is not None:
        ok = value > minimum if open_min else value >= minimum
    if not ok:
        raise ValueError(f"{value!r} must be {what}{bound}")
    return kind(value)
