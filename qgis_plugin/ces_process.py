"""Run the ``ces`` command line as a child process and relay it to a Processing feedback.

The provider never imports torch: every algorithm builds a ``ces ... --progress json``
command line and hands it to :func:`run_ces`, which runs it with :class:`QProcess`, turns the
JSON lines of the progress protocol (docs/contracts.md §5) into progress (every window) and
stage text (once per stage), errors into one :class:`QgsProcessingException` (Processing shows
it, once), and a Cancel into SIGINT (then SIGKILL) within 5 s, after which nothing is left at
the output paths. The engine it runs is found by engine_lookup (never engine_installer).
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Callable, Iterable, Optional

from qgis.core import QgsProcessingException, QgsProcessingFeedback
from qgis.PyQt.QtCore import QProcess, QProcessEnvironment

# The Processing setting (Settings > Options > Processing > Providers > CrossEarth-SAR).
SETTING_CES_EXECUTABLE = "CES_EXECUTABLE"
# The same, from the environment (handy for qgis_process and CI).
ENV_CES_EXECUTABLE = "CES_EXECUTABLE"
CLI_MODULE = "crossearth_sar.crossearth_cli.main"

HOW_TO_SET = (
    "Set up the engine: Plugins > CrossEarth-SAR > Set up CrossEarth-SAR engine (or the "
    "Processing algorithm 'Set up CrossEarth-SAR engine'); it installs CrossEarth-SAR with "
    "PyTorch in a folder of its own, without a terminal. Or, for an installation of your own, "
    "set 'ces executable' in Settings > Options > Processing > Providers > CrossEarth-SAR to "
    "its `ces` program or to a Python interpreter that has the crossearth_sar package."
)

STARTING_TEXT = "Starting the CrossEarth-SAR engine (PyTorch and the model)"
# QgsFeedback drops a change of less than 0.1 %, so a first setProgress(0) leaves the dialog's
# bar busy (indeterminate); this is the smallest value that makes it show 0 %.
FIRST_PERCENT = 0.1

# The progress text of each ces stage (QGIS's dialog also writes it into the log, so it is
# set once per stage; the bar itself advances with every window).
STAGE_TEXTS = {"segment": "Segmenting the scene, window by window",
               "compare": "Comparing the dates", "sieve": "Merging small patches", "vectorize": "Making polygons",
               "descriptors": "Measuring the descriptors, tile by tile",
               "read labels": "Reading the labels",
               "evaluate": "Comparing with the reference labels", "train": "Training",
               "calibrate": "Calibrating the Sentinel-1 product (sigma0, noise removed)",
               "geocode": "Geocoding the Sentinel-1 product"}

INTERRUPT_GRACE_S = 3.0   # after SIGINT, wait this long before SIGKILL
POLL_MS = 100             # how often a running process is checked for output and Cancel
_SIDE_FILES = ("-journal", "-wal", "-shm", ".aux.xml")

_PYTHON_NAME = re.compile(r"^python(\d+(\.\d+)?)?(\.exe)?$", re.IGNORECASE)


@dataclass
class CesCommand:
    """The program and the leading arguments that make up ``ces``.

    ``program`` is an absolute path; ``prefix`` is ``[]`` for the ``ces`` program itself or
    ``["-I", "-m", CLI_MODULE]`` for a Python interpreter that has the crossearth_sar package
    (``-I``: isolated from the user's site-packages and PYTHON* variables).
    """

    program: str
    prefix: list[str] = field(default_factory=list)
    version: Optional[str] = None   # known without asking (a managed engine)

    def arguments(self, args: Iterable[str]) -> list[str]:
        return [*self.prefix, *map(str, args)]

    def display(self, args: Iterable[str]) -> str:
        """The command as one shell-quoted line (for the log)."""
        import shlex

        return " ".join(shlex.quote(a) for a in [self.program, *self.arguments(args)])


def is_python_interpreter(path: str) -> bool:
    """True when ``path`` names a Python interpreter (python, python3, python3.11, ...)."""
    return bool(_PYTHON_NAME.match(os.path.basename(path)))


def resolve_ces(configured: Optional[str], engines_root: Optional[str] = None) -> CesCommand:
    """The ``ces`` command: the explicit setting (or the ``CES_EXECUTABLE`` environment
    variable), else the managed engine of this plugin's version (engine_lookup), else ``ces``
    on PATH, else a managed engine of another version (run_ces then says what to do). A
    Python interpreter (setting or engine) runs ``python -I -m`` the CLI module.
    Raises QgsProcessingException (saying how to set one up) when nothing usable is found.
    """
    from . import engine_lookup

    value = (configured or "").strip() or os.environ.get(ENV_CES_EXECUTABLE, "").strip()
    if value:
        path = os.path.expanduser(value)
        if not os.path.isabs(path):
            found = shutil.which(path)
            if found is None:
                raise QgsProcessingException(
                    f"The ces executable '{value}' was not found on PATH. {HOW_TO_SET}")
            path = found
        if not os.path.isfile(path):
            raise QgsProcessingException(
                f"The ces executable '{value}' does not exist. {HOW_TO_SET}")
        if not os.access(path, os.X_OK):
            raise QgsProcessingException(
                f"The ces executable '{value}' is not executable. {HOW_TO_SET}")
    else:
        root = engine_lookup.engines_root(engines_root) if engines_root \
            else engine_lookup.configured_engines_root()
        engine = engine_lookup.managed_engine(root=root)
        path = shutil.which("ces") if engine is None else None
        if engine is None and path is None:   # an engine of another version (it will say so)
            engine = engine_lookup.managed_engine(None, root=root)
        if engine is not None:
            return CesCommand(str(engine.python), ["-I", "-m", CLI_MODULE], engine.version)
        if path is None:
            raise QgsProcessingException(
                f"No CrossEarth-SAR engine was found (no engine set up by the plugin, no `ces` "
                f"on PATH). {HOW_TO_SET}")
    if is_python_interpreter(path):
        return CesCommand(path, ["-I", "-m", CLI_MODULE])
    return CesCommand(path)


_VERSIONS: dict = {}


def engine_version(ces: CesCommand, timeout: float = 20.0) -> Optional[str]:
    """The version ``ces --version`` reports (cached per program and its modification
    time); None when it cannot say."""
    if ces.version:
        return ces.version
    try:
        key = (ces.program, tuple(ces.prefix), os.stat(ces.program).st_mtime_ns)
    except OSError:
        return None
    if key not in _VERSIONS:
        import subprocess

        from .engine_lookup import engine_environment

        try:
            done = subprocess.run([ces.program, *ces.arguments(["--version"])],
                                  capture_output=True, text=True, timeout=timeout,
                                  env=engine_environment())
            match = re.search(r"version\s+(\S+)", done.stdout)
            _VERSIONS[key] = match.group(1) if match else None
        except (OSError, subprocess.SubprocessError):
            _VERSIONS[key] = None
    return _VERSIONS[key]


def version_advice(engine: Optional[str], plugin: str) -> Optional[str]:
    """What to do when the engine's version differs from the plugin's; None when equal
    (or unknown)."""
    if engine is None or engine == plugin:
        return None
    return (f"The CrossEarth-SAR engine is version {engine} but the plugin is {plugin}: results "
            "and options may differ. Run Plugins > CrossEarth-SAR > Set up CrossEarth-SAR "
            "engine to install the matching engine (the old one stays until you delete it), "
            f"or update the package in your own environment (pip install crossearth-sar=={plugin}).")


@dataclass
class CesResult:
    """What a finished ``ces`` run reported: its ``done`` event and the warnings on stderr."""

    done: dict
    warnings: list[str]

    @property
    def outputs(self) -> dict:
        return self.done.get("outputs") or {}


class _OutputGuard:
    """Remembers the state of output paths before a run; removes what the run left behind.

    Removes an output path that is new or changed since the start, and any temporary sibling
    of it in the pattern of core/atomic.py (``.NAME.tmp-XXXXXXXX.EXT`` plus SQLite side files)
    created since the start.
    """

    def __init__(self, paths: Iterable[str]):
        self.paths = [os.path.abspath(p) for p in paths if p]
        self.started = time.time() - 1.0
        self.before = {p: self._stamp(p) for p in self.paths}

    @staticmethod
    def _stamp(path: str):
        try:
            st = os.stat(path)
            return (st.st_mtime_ns, st.st_size)
        except OSError:
            return None

    def leftovers(self, work_folders: bool = False) -> list[str]:
        """What the run left: changed outputs, their temporaries and, with ``work_folders``
        (after a kill, when ces could not clean up), its ``.ces-*`` work folders."""
        found = []
        for path in self.paths:
            stamp = self._stamp(path)
            if stamp is not None and stamp != self.before[path]:
                found.append(path)
                found += [path + side for side in _SIDE_FILES if os.path.exists(path + side)]
            folder, name = os.path.split(path)
            suffix = "".join(PurePath(name).suffixes)   # as core/atomic.temporary_sibling
            stem = name[: len(name) - len(suffix)] if suffix else name
            for tmp in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(stem)}.tmp-*")):
                try:
                    if os.stat(tmp).st_mtime >= self.started:
                        found.append(tmp)
                except OSError:
                    pass
            if work_folders:
                for tmp in glob.glob(os.path.join(glob.escape(folder), ".ces-*")):
                    try:
                        if os.stat(tmp).st_mtime >= self.started and tmp not in found:
                            found.append(tmp)
                    except OSError:
                        pass
        return found

    def clean(self, work_folders: bool = False) -> list[str]:
        removed = []
        for path in self.leftovers(work_folders):
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
                removed.append(path)
            except OSError:
                pass
        return removed


def _process_state(pid: int) -> str:
    """What Linux says of ``pid``: "running", "exited, not reaped" (a zombie: it did stop,
    and only its parent had not noticed) or "gone"; "unknown" elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rsplit(b")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return "gone" if os.path.isdir("/proc") else "unknown"
    return "exited, not reaped" if state == b"Z" else f"running, state {state.decode()}"


def _stop(process: QProcess, feedback: QgsProcessingFeedback) -> bool:
    """Interrupt the child (SIGINT: ces removes its temporary files), then kill it.
    True when it had to be killed."""
    pid = int(process.processId() or 0)
    if pid > 0 and os.name != "nt":
        try:
            os.kill(pid, signal.SIGINT)
        except OSError:
            pass
        deadline = time.monotonic() + INTERRUPT_GRACE_S
        while process.state() != QProcess.NotRunning and time.monotonic() < deadline:
            process.waitForFinished(POLL_MS)
    if process.state() == QProcess.NotRunning:
        return False
    feedback.pushInfo("The CrossEarth-SAR engine did not stop on interrupt "
                      f"({_process_state(pid)}); killing it")
    process.kill()
    process.waitForFinished(1500)
    return True


def _without_program(line: str) -> str:
    """A ``ces: error: ...`` line without the program's name, a word a QGIS user never chose."""
    return re.sub(r"^ces: (error|failed): ", "", line, flags=re.IGNORECASE)


class _LineRelay:
    """Splits a byte stream into lines and hands complete lines to ``handle``."""

    def __init__(self, handle):
        self.handle = handle
        self.buffer = b""

    def feed(self, data: bytes) -> None:
        self.buffer += bytes(data)
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.handle(line.decode("utf-8", "replace").rstrip("\r"))

    def flush(self) -> None:
        if self.buffer:
            line, self.buffer = self.buffer, b""
            self.handle(line.decode("utf-8", "replace").rstrip("\r"))


class _EventHandler:
    """Turns the JSON events on stdout and the lines on stderr into feedback calls."""

    def __init__(self, feedback: QgsProcessingFeedback,
                 stage_weights: Optional[dict[str, float]] = None,
                 word_parameter: Optional[Callable[[str], str]] = None,
                 stage_passes: Optional[dict[str, int]] = None):
        self.feedback = feedback
        self.word_parameter = word_parameter
        self.stage_weights = dict(stage_weights or {})
        self.stage_passes = dict(stage_passes or {})
        self.pass_of: dict[str, int] = {}   # the pass a stage is in (0: its first run)
        self.done: Optional[dict] = None
        self.error: Optional[str] = None
        self.stderr_errors: list[str] = []
        self.stderr_tail: list[str] = []
        self.warnings: list[str] = []
        self.stage: Optional[str] = None

    def stdout_line(self, line: str) -> None:
        if not line.strip():
            return
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict) or "event" not in event:
            self.feedback.pushConsoleInfo(line)
            return
        kind = event.get("event")
        if kind == "progress":
            stage = str(event.get("stage") or "")
            done, total = int(event.get("done") or 0), int(event.get("total") or 0)
            if stage != self.stage:   # QGIS's dialog logs every progress text: once a stage
                if stage in self.pass_of:   # a stage that ran before starts its next pass
                    self.pass_of[stage] += 1
                else:
                    self.pass_of[stage] = 0
                self.stage = stage
                self.feedback.setProgressText(STAGE_TEXTS.get(stage, stage))
            if total > 0:
                self.feedback.setProgress(max(FIRST_PERCENT, self.percent(stage, min(done / total, 1.0))))
        elif kind == "done":
            self.done = event
        elif kind == "error":
            self.error = self.error_message(event)
        elif kind == "warning":
            self._warn(str(event.get("message") or ""))
        else:
            self.feedback.pushConsoleInfo(line)

    def percent(self, stage: str, fraction: float) -> float:
        """Overall percent: stages with a weight share one bar, in the order given; any
        other stage runs its own 0..100. Stages that run in n passes (``stage_passes``; the
        preparation of two products: calibrate, geocode, calibrate, geocode) form a block whose
        share fills one pass after the other."""
        if stage not in self.stage_weights:
            return max(0.0, min(100.0, 100.0 * fraction))
        names = list(self.stage_weights)
        weight = self.stage_weights[stage]
        before = sum(self.stage_weights[n] for n in names[:names.index(stage)])
        passes = self.stage_passes.get(stage, 1)
        if passes > 1:
            block = [n for n in names if self.stage_passes.get(n, 1) > 1]
            start = sum(self.stage_weights[n] for n in names[:names.index(block[0])])
            size = sum(self.stage_weights[n] for n in block)
            k = min(self.pass_of.get(stage, 0), passes - 1)
            within = before - start + weight * fraction
            before, weight, fraction = start, size, (k * size + within) / (passes * size)
        whole = sum(self.stage_weights.values()) or 1.0
        return max(0.0, min(100.0, 100.0 * (before + weight * fraction) / whole))

    def stderr_line(self, line: str) -> None:
        if not line.strip():
            return
        self.stderr_tail = (self.stderr_tail + [line])[-20:]
        low = line.lower()
        if low.startswith("ces: warning:"):
            self._warn(line.split(":", 2)[2].strip())
        elif low.startswith(("ces: error:", "ces: failed:", "error:", "usage:")) \
                or low.startswith("traceback"):
            self.stderr_errors.append(_without_program(line))   # shown once, as the message
        else:
            self.feedback.pushConsoleInfo(line)

    def _warn(self, message: str) -> None:
        if message and message not in self.warnings:
            self.warnings.append(message)
            self.feedback.pushWarning(message)

    def error_message(self, event: dict) -> str:
        """An error event's message; with ``word_parameter``, the parameters it names (the
        ``{name}`` of its ``template``) in the dialog's words."""
        template, names = event.get("template"), event.get("parameters")
        if self.word_parameter is None or not isinstance(template, str) \
                or not isinstance(names, list):
            return str(event.get("message") or "the CrossEarth-SAR engine failed")
        for name in map(str, names):
            template = template.replace("{" + name + "}", self.word_parameter(name))
        return template

    def failure_message(self, exit_code: int) -> str:
        if self.error:
            return self.error
        if self.stderr_errors:
            return " ".join(self.stderr_errors)
        if self.stderr_tail:
            return self.stderr_tail[-1]
        return f"the CrossEarth-SAR engine ended with exit status {exit_code} and no message"


def run_ces(args: Iterable[str], feedback: Optional[QgsProcessingFeedback],
            outputs: Iterable[str] = (), configured_executable: Optional[str] = None,
            ces: Optional[CesCommand] = None,
            word_parameter: Optional[Callable[[str], str]] = None,
            stage_weights: Optional[dict[str, float]] = None,
            stage_passes: Optional[dict[str, int]] = None) -> CesResult:
    """Run ``ces ARGS`` (ARGS should include ``--progress json``) and relay it to ``feedback``.

    ``outputs``: the output paths this run writes; after Cancel or a failure, whatever the
    run left there (and temporary siblings) is removed. ``word_parameter`` words each parameter
    that an error event names (its ``template`` and ``parameters``) in the dialog's terms. ``stage_weights``
    ({stage: weight}, in running order) joins those stages into one progress bar;
    ``stage_passes`` ({stage: n}) for stages that run n times (once per product). Returns
    the ``done`` event and the warnings.
    Raises QgsProcessingException on a missing executable, a failure, or Cancel.
    """
    feedback = feedback or QgsProcessingFeedback()
    args = [str(a) for a in args]
    ces = ces or resolve_ces(configured_executable)
    from ..version import __version__
    from .engine_lookup import engine_environment

    advice = version_advice(engine_version(ces), __version__)
    if advice:
        feedback.pushWarning(advice)
    guard = _OutputGuard(outputs)
    feedback.pushCommandInfo(ces.display(args))

    process = QProcess()
    env = QProcessEnvironment()
    for key, value in engine_environment().items():   # QGIS's environment stays in QGIS
        env.insert(key, value)
    process.setProcessEnvironment(env)
    process.setProgram(ces.program)
    process.setArguments(ces.arguments(args))
    handler = _EventHandler(feedback, stage_weights, word_parameter, stage_passes)
    out, err = _LineRelay(handler.stdout_line), _LineRelay(handler.stderr_line)

    process.start()
    if not process.waitForStarted(30000):
        raise QgsProcessingException(
            f"Could not start {ces.program}: {process.errorString()}. {HOW_TO_SET}")
    process.closeWriteChannel()
    feedback.setProgressText(STARTING_TEXT)   # a determinate bar from the start, before the
    feedback.setProgress(FIRST_PERCENT)       # engine has loaded PyTorch and the model

    canceled = killed = False
    while True:
        finished = process.waitForFinished(POLL_MS) or process.state() == QProcess.NotRunning
        out.feed(process.readAllStandardOutput())
        err.feed(process.readAllStandardError())
        if finished:
            break
        if feedback.isCanceled():
            canceled = True
            feedback.pushInfo("Canceling: stopping the CrossEarth-SAR engine")
            killed = _stop(process, feedback)
            break
    out.feed(process.readAllStandardOutput())
    err.feed(process.readAllStandardError())
    out.flush()
    err.flush()

    if canceled:
        removed = guard.clean(work_folders=killed)
        if removed:   # one line, however many files a run had started
            names = ", ".join(os.path.basename(p) for p in removed)
            feedback.pushInfo(f"Removed {len(removed)} partial file(s) of the canceled run: {names}")
        raise QgsProcessingException("Canceled: the CrossEarth-SAR engine was stopped; no output was kept.")

    exit_code = process.exitCode()
    crashed = process.exitStatus() != QProcess.NormalExit
    if crashed or exit_code != 0 or handler.done is None:
        guard.clean(work_folders=crashed)
        if crashed:
            message = (f"the CrossEarth-SAR engine stopped unexpectedly ({process.errorString()}); "
                       f"{handler.failure_message(exit_code)}")
        elif exit_code == 0:
            message = "the CrossEarth-SAR engine ended without reporting its outputs (no 'done' event)"
        else:
            message = handler.failure_message(exit_code)
            if exit_code == 2 and not message.lower().startswith("crossearth-sar"):
                message = f"CrossEarth-SAR rejected the input: {message}"
        raise QgsProcessingException(message)   # Processing shows it (once)
    feedback.setProgress(100)
    return CesResult(handler.done, handler.warnings)


__all__ = ["CesCommand", "CesResult", "resolve_ces", "run_ces", "is_python_interpreter",
           "engine_version", "version_advice",
           "SETTING_CES_EXECUTABLE", "HOW_TO_SET"]
