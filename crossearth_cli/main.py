"""The ``ces`` command group.

Subcommands live one per module and are imported only when used, so ``ces --help`` and
``ces info SCENE`` start without loading torch. Exit status: 0 success, 1 failure of the
work, 2 bad usage or bad input (one line naming the file and what is wrong), or an output
that could not be written: a full disk, a read-only file system... (one line naming the
user's output, core/write_failures.py; docs/contracts.md §5, "Exit status and messages").
"""
from __future__ import annotations

import importlib
import sys

import click

from ..core.errors import one_line
from ..version import __version__

# command name -> "module:attribute" (modules relative to this package)
COMMANDS: dict[str, str] = {
    "agreement": "agreement_cmd:agreement",
    "change": "change_cmd:change",
    "info": "info_cmd:info",
    "finetune": "train_cmds:finetune",
    "pretrain": "train_cmds:pretrain",
    "evaluate": "train_cmds:evaluate",
    "descriptors": "descriptors_cmd:descriptors",
    "doctor": "doctor_cmd:doctor",
    "models": "models_cmd:models",
    "prepare": "prepare_cmd:prepare",
    "segment": "segment_cmd:segment",
    "benchmark": "benchmark_cmd:benchmark",
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        return getattr(importlib.import_module(f"{__package__}.{module}"), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ces")
def cli() -> None:
    """CrossEarth-SAR: segment SAR scenes into land-cover polygons, fine-tune and pre-train."""


def _json_progress(argv: list[str]) -> bool:
    """Whether the command line asked for ``--progress json`` (errors then go out as JSON too)."""
    if "--progress=json" in argv:
        return True
    return any(a == "--progress" and b == "json" for a, b in zip(argv, argv[1:]))


def _report_error(error: BaseException | str, json_mode: bool) -> None:
    from .reporting import Reporter, error_event

    if json_mode and not Reporter.error_sent:   # one error event per run
        import json

        sys.stdout.write(json.dumps(error_event(error)) + "\n")
        sys.stdout.flush()


def _exit_now(code: int) -> None:
    """Exit at once, skipping the interpreter's teardown (freeing torch and GDAL objects,
    joining threads: most of the time from Ctrl-C to exit). Every ``finally`` and
    ``except`` clause, which remove temporary outputs, has run by now."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def usage_line(e: click.ClickException) -> str:
    """A click usage error as one line naming the flag: ``--domain: 'bogus' is not one of ...``
    (click's own form takes three lines: usage, a hint, the error)."""
    if isinstance(e, click.BadParameter) and not isinstance(e, click.MissingParameter) and e.param:
        name = (max(e.param.opts, key=len) if getattr(e.param, "opts", None)
                and isinstance(e.param, click.Option) else e.param.human_readable_name)
        message = f"{name}: {e.message}"
    else:
        message = e.format_message()
    ctx = getattr(e, "ctx", None)
    if isinstance(e, click.UsageError) and ctx is not None and (
            isinstance(e, click.MissingParameter) or not isinstance(e, click.BadParameter)):
        message += f" (see '{ctx.command_path} --help')"
    return " ".join(message.split())


#: warnings whose condition the input layer already reports in its own words
SILENCED_WARNINGS = ("NotGeoreferencedWarning",)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Third-party warnings as one ``ces: warning:`` line (no source path or line number)."""
    if category.__name__ in SILENCED_WARNINGS:
        return
    click.echo(f"ces: warning: {' '.join(str(message).split())}", err=True)


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: runs the group and maps errors to exit statuses."""
    import signal
    import threading
    import warnings

    from ..core import interrupts, tiff_messages
    from ..core.errors import InputError
    from .reporting import Reporter

    warnings.showwarning = show_warning
    tiff_messages.enable()   # libtiff's own error lines: counted by each write, never printed
    interrupts.clear()
    if threading.current_thread() is threading.main_thread():   # Ctrl-C / QGIS's Cancel,
        signal.signal(signal.SIGINT, interrupts.interrupt_handler)   # remembered (interrupts.py)
    args = list(sys.argv[1:] if argv is None else argv)
    json_mode = _json_progress(args)
    Reporter.error_sent = False
    try:
        cli.main(args=args, prog_name="ces", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("ces: interrupted", err=True)
        _report_error("interrupted", json_mode)
        if argv is None:   # the console script: outputs are cleaned up already (atomic_output)
            _exit_now(130)
        return 130
    except click.ClickException as e:
        message = usage_line(e)
        click.echo(f"ces: error: {message}", err=True)
        _report_error(message, json_mode)
        return 2 if e.exit_code == 2 else e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except InputError as e:
        from .reporting import error_text

        click.echo(f"ces: error: {error_text(e)}", err=True)
        _report_error(e, json_mode)
        return 2
    except Exception as e:  # a failure of the work: one line, no traceback
        if "CES_DEBUG" in __import__("os").environ:
            raise
        if type(e).__module__.startswith("rasterio") and "IOError" in type(e).__name__:
            # a read no pre-check or wrapper caught: GDAL's own words name the file
            from ..core.scene.raster_check import gdal_message

            message = f"cannot read a raster: {gdal_message(e)}"
            click.echo(f"ces: error: {message}", err=True)
            _report_error(message, json_mode)
            return 2
        msg = one_line(e)
        click.echo(f"ces: failed: {type(e).__name__}: {msg}", err=True)
        _report_error(f"{type(e).__name__}: {msg}", json_mode)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
