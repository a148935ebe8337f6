"""Turn the core's progress callback into tqdm bars or JSON lines (docs/contracts.md §5).

JSON mode prints one object per line on stdout::

    {"event": "progress", "stage": "segment", "done": 12, "total": 40}
    {"event": "done", "outputs": {...}}            # or
    {"event": "error", "message": "..."}
"""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from ..core.errors import InputError, flag, one_line, word_parameters
from ..core.interrupts import raise_if_requested

PROGRESS_CHOICE = click.Choice(["auto", "json", "none"])


def progress_option(f):
    """The ``--progress auto|json|none`` option shared by long-running commands."""
    return click.option(
        "--progress", "progress_mode", type=PROGRESS_CHOICE, default="auto", show_default=True,
        help="auto: a progress bar on a terminal; json: one JSON object per line on stdout "
             "(for programs such as the QGIS provider); none: quiet.")(f)


class Reporter:
    """A progress callback (``reporter(stage, done, total)``) plus done/error/warning events."""

    def __init__(self, mode: str = "auto"):
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "none"
        self.mode = mode
        self._bars: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        raise_if_requested()   # a stop signal lost in a finalizer or C callback (interrupts.py)
        if self.mode == "json":
            self._emit({"event": "progress", "stage": stage, "done": int(done), "total": int(total)})
        elif self.mode == "bar":
            from tqdm import tqdm

            bar = self._bars.get(stage)
            if bar is None or bar.disable:     # new, or a finished stage starting again
                bar = self._bars[stage] = tqdm(total=total or None, desc=stage, unit="it",
                                               leave=True, file=sys.stderr, dynamic_ncols=True)
            if total and bar.total != total:
                bar.total = total
            bar.n = done
            bar.refresh()
            if total and done >= total:
                bar.close()

    def warning(self, message: str) -> None:
        """A warning (its parameters worded as flags): always on stderr; collected for the JSON
        ``done`` event."""
        message = word_parameters(message, flag)
        self.close_bars()
        click.echo(f"ces: warning: {message}", err=True)
        self.warnings.append(message)

    @property
    def warnings(self) -> list[str]:
        if not hasattr(self, "_warnings"):
            self._warnings: list[str] = []
        return self._warnings

    def done(self, outputs: dict[str, Any], **extra: Any) -> None:
        self.close_bars()
        if self.mode == "json":
            event = {"event": "done", "outputs": outputs, **extra}
            if self.warnings:
                event["warnings"] = self.warnings
            self._emit(event)

    # Set once an error event went out, so that ces's main() does not send a second one.
    error_sent = False

    def error(self, error: BaseException | str) -> None:
        """The run's error event (:func:`error_event`): an exception or a message."""
        self.close_bars()
        if self.mode == "json":
            self._emit(error_event(error))
            Reporter.error_sent = True

    def close_bars(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()

    @staticmethod
    def _emit(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj, default=str) + "\n")
        sys.stdout.flush()


def error_text(error: BaseException) -> str:
    """An error in the CLI's words, one line: the parameters an InputError names as flags
    (``tile`` -> ``--tile``), anything else as it is."""
    if isinstance(error, InputError):
        return error.worded(flag)
    return one_line(error)


def error_event(error: BaseException | str) -> dict[str, Any]:
    """The JSON ``error`` event of an error: its message in the CLI's words; for an InputError
    that names parameters also ``template`` (the message with each parameter as ``{name}``)
    and ``parameters`` (their names), for other faces to word them (docs/contracts.md §5)."""
    event: dict[str, Any] = {"event": "error", "message": error if isinstance(error, str)
                             else error_text(error)}
    if isinstance(error, InputError) and error.parameters:
        event["template"] = error.worded(lambda name: "{" + name + "}")
        event["parameters"] = list(error.parameters)
    return event
