"""core/number_checks.py: every rule of check_number (ints against floats, bool, NaN / inf, the
minimum, open or closed) with the exact words of its refusals, and the parameter's name that
each face puts before them (the CLI's option type names the flag)."""
from __future__ import annotations

import math
from typing import Union

import click
import pytest

from crossearth_sar.core.number_checks import Num, check_number
from crossearth_sar.crossearth_cli import validate
from crossearth_sar.crossearth_cli.main import usage_line


def test_num_is_int_or_float():
    assert Num == Union[int, float]


# -- accepted numbers: the value, as the kind asked for ----------------------------------------
@pytest.mark.parametrize("value, kind, minimum, open_min, expected, expected_type", [
    (3, float, None, False, 3.0, float),         # an int is a number
    (2.5, float, None, False, 2.5, float),
    (-1e300, float, None, False, -1e300, float),  # no minimum: any finite number
    (7, int, None, False, 7, int),
    (4.0, int, None, False, 4, int),              # an int-valued float passes as an int
    (-0.0, int, 0, False, 0, int),
    (10 ** 20, int, 1, False, 10 ** 20, int),
    (1, int, 1, False, 1, int),                   # the minimum itself, closed
    (0, float, 0, False, 0.0, float),
    (1e-9, float, 0, True, 1e-9, float),          # just above an open minimum
    (16, int, 16, False, 16, int),
    (-1, int, -1, False, -1, int),
])
def test_accepted(value, kind, minimum, open_min, expected, expected_type):
    got = check_number(value, kind, minimum, open_min)
    assert got == expected and type(got) is expected_type


def test_defaults_are_a_float_without_minimum():
    got = check_number(-5)
    assert got == -5.0 and type(got) is float


# -- refused numbers: the exact words ------------------------------------------------------
@pytest.mark.parametrize("value, kind, minimum, open_min, message", [
    (0, int, 1, False, "0 must be an integer >= 1"),              # the module doc's examples
    (-1, float, 0, True, "-1 must be a number > 0"),
    (float("nan"), float, None, False, "nan is not a finite number"),
    (float("inf"), float, None, False, "inf is not a finite number"),
    (float("-inf"), float, 0, False, "-inf is not a finite number"),  # finiteness comes first
    (float("nan"), int, 1, False, "nan is not a finite number"),
    (math.inf, int, None, False, "inf is not a finite number"),
    (2.5, int, None, False, "2.5 must be an integer"),
    (2.5, int, 1, False, "2.5 must be an integer >= 1"),
    (0, float, 0, True, "0 must be a number > 0"),               # open: the minimum itself is out
    (0.0, float, 0, True, "0.0 must be a number > 0"),
    (15, int, 16, False, "15 must be an integer >= 16"),
    (-2, int, -1, False, "-2 must be an integer >= -1"),
    (0.1, float, 0.5, False, "0.1 must be a number >= 0.5"),
    (0, float, 1e-6, True, "0 must be a number > 1e-06"),        # the minimum as :g
    (5, float, 1000000, False, "5 must be a number >= 1e+06"),
    (True, int, None, False, "True must be an integer"),           # bool is never a number
    (False, float, None, False, "False must be a number"),
    (True, float, 0, False, "True must be a number >= 0"),
    ("3", float, None, False, "'3' must be a number"),             # text is the caller's to parse
    ("3", int, 1, False, "'3' must be an integer >= 1"),
    (None, float, None, False, "None must be a number"),
    ([1], int, None, False, "[1] must be an integer"),
])
def test_refused_with_exact_words(value, kind, minimum, open_min, message):
    with pytest.raises(ValueError) as info:
        check_number(value, kind, minimum, open_min)
    assert str(info.value) == message
    assert type(info.value) is ValueError


# -- the parameter's name: each face prefixes its own ---------------------------------------
def _cli_error(number_type: validate.Number, flag: str, value: str) -> str:
    """The one line ``ces`` prints for ``flag value`` on a command with that option."""
    @click.command()
    @click.option(flag, type=number_type)
    def cmd(**kwargs):
        pass

    with pytest.raises(click.BadParameter) as info:
        cmd.main([flag, value], standalone_mode=False)
    return usage_line(info.value)


@pytest.mark.parametrize("number_type, flag, value, line", [
    (validate.POSITIVE_FLOAT, "--lr", "-0.001", "--lr: -0.001 must be a number > 0"),   # validate.py's doc
    (validate.NON_NEGATIVE_FLOAT, "--min-area", "nan", "--min-area: nan is not a finite number"),
    (validate.POSITIVE_INT, "--batch", "0", "--batch: 0 must be an integer >= 1"),
    (validate.TILE, "--tile", "8", "--tile: 8 must be an integer >= 16"),
    (validate.WARMUP, "--warmup", "-2", "--warmup: -2 must be an integer >= -1"),
    (validate.NON_NEGATIVE_INT, "--seed", "1.5", "--seed: '1.5' is not an integer"),
    (validate.POSITIVE_FLOAT, "--lr", "fast", "--lr: 'fast' is not a number"),
    (validate.POSITIVE_FLOAT, "--lr", "inf", "--lr: inf is not a finite number"),
])
def test_the_cli_names_the_flag_before_the_same_words(number_type, flag, value, line):
    assert _cli_error(number_type, flag, value) == line


@pytest.mark.parametrize("number_type, text, expected, expected_type", [
    (validate.POSITIVE_FLOAT, "0.001", 0.001, float),
    (validate.TILE, "16", 16, int),
    (validate.WARMUP, "-1", -1, int),
    (validate.NON_NEGATIVE_FLOAT, "0", 0.0, float),
])
def test_the_cli_accepts_what_check_number_accepts(number_type, text, expected, expected_type):
    got = number_type.convert(text, None, None)
    assert got == expected and type(got) is expected_type
    assert check_number(got, number_type.kind, number_type.minimum, number_type.open_min) == expected
