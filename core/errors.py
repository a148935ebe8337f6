"""Errors that mean "bad input or bad usage" (exit status 2), as opposed to a failure of the work.

A message may name parameters of the Python API (``tile``, ``overwrite``, ``pair_pattern``...)
through :func:`parameter`; each face words them in its own terms with
:meth:`InputError.worded`: the CLI as its flags (``--tile``), a data or suite file as its keys
(the bare name, which is also what ``str(error)`` gives), QGIS as the dialog's labels (from the
JSON error event's ``template`` and ``parameters``, docs/contracts.md §5).
"""
from __future__ import annotations

import re
from typing import Callable

_MARK = re.compile("\x02([A-Za-z_][A-Za-z0-9_]*)\x03")


def parameter(name: str) -> str:
    """``name`` (a Python API parameter) marked inside an error message, for each face to word."""
    return f"\x02{name}\x03"


def word_parameters(text: str, word: Callable[[str], str]) -> str:
    """``text`` (an error or warning) with each marked parameter as ``word(name)``."""
    return _MARK.sub(lambda m: word(m.group(1)), text)


def flag(name: str) -> str:
    """A parameter as the ``ces`` command line names it (``pair_pattern`` -> ``--pair-pattern``)."""
    return "--" + name.replace("_", "-")


def bare(name: str) -> str:
    """A parameter worded as its own name (the Python API's and the data files' words)."""
    return name


class InputError(ValueError):
    """Bad input: the message is one line that names the file and what is wrong.

    The CLI turns it into exit status 2; any other exception is a failure of the work (exit 1).
    An output that cannot be written (a full disk...) is one too: core/write_failures.py.
    ``template`` is the message with its parameters marked, ``parameters`` their names in order.
    """

    def __init__(self, message: str, path: object | None = None):
        if path is not None and str(path) not in message:
            message = f"{path}: {message}"
        self.template = one_line(message)
        self.parameters = tuple(dict.fromkeys(_MARK.findall(self.template)))
        self.path = path
        super().__init__(self.worded(bare))

    def worded(self, word: Callable[[str], str] = bare) -> str:
        """The message with each parameter as ``word(name)`` (e.g. ``--tile`` for the CLI)."""
        return word_parameters(self.template, word)


class ParameterError(InputError):
    """A bad value of a named parameter (``tile``, ``overlap``, ``batch``, ``device``...):
    ``PARAMETER VALUE: REQUIREMENT`` (the value left out when None), e.g. in the CLI's words
    ``--tile 8: must be at least 16 pixels``."""

    def __init__(self, parameter_name: str, value: object, requirement: str,
                 path: object | None = None):
        self.parameter, self.value, self.requirement = parameter_name, value, requirement
        shown = parameter(parameter_name) + ("" if value is None else f" {value}")
        super().__init__(f"{shown}: {requirement}", path)


def one_line(error: object) -> str:
    """An error (or any text) as one line, runs of whitespace as one space; an exception with
    no message gives its type's name."""
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        return type(error).__name__
    return text
