"""Building the CrossEarth-SAR engine: the per-user virtual environment that runs ``ces``
for the Processing provider (its layout, and how the provider finds it on every run:
qgis_plugin/engine_lookup.py). Only the setup algorithm (engine_algorithm.py) and the
plugin's setup action import this module; running any other algorithm needs only the lookup.

A setup (:class:`EngineInstaller`) runs the plan of qgis_plugin/engine_plan.py: it creates the
venv with a Python >= 3.10 found on the machine, with ``-I`` and without QGIS's environment
(engine_lookup.engine_environment), so it never sees QGIS's site-packages; installs the
engine's lock (qgis_plugin/engine.lock, ``--require-hashes``: a file whose hash differs is
refused, :func:`classify_failure` names it), PyTorch at the lock's version from the index of
the backend (``cpu`` or ``cuXYZ``, chosen from ``nvidia-smi`` unless given), then this plugin
folder's own source (the plugin zip is the package); or everything offline from a local
wheel folder (``--no-index --find-links``; uv installs when the folder holds it;
scripts/engine_wheels.py makes one from the same lock). It builds in ``.build-<engine>-XXXX`` beside the engines,
holding ``.install.lock`` (:class:`InstallLock`), and renames the folder on success.
It ends with ``ces doctor --json``. Every command and its output go to install.log; a failure
is classified into a message with its fix (:func:`classify_failure`). Sizes are in MB.
Nothing here imports torch; only :func:`make_setup_task` needs qgis.core.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from ..version import __version__
from .engine_lookup import Engine, engine_environment, engine_name, installed_engines, venv_python
from .engine_plan import (
    CUDA_BACKEND,
    UV_CACHE,
    EngineError,
    Step,
    find_base_python,
    install_steps,
    lock_requirements,
)

PLUGIN_FOLDER = Path(__file__).resolve().parents[1]   # the package source, too
LOCK_NAME = ".install.lock"
# Sizes shown before a setup, measured (README, QGIS section): CPU 1,430 MB on disk from a
# 360 MB download (the wheels); CUDA 6,180 MB from 3,080 MB (PyPI's CUDA build of PyTorch).
ENGINE_SIZE_MB = {"cpu": 1450, CUDA_BACKEND: 6200}
DOWNLOAD_MB = {"cpu": 360, CUDA_BACKEND: 3100}
# Source files of the package not needed to install it (kept out of the build copy).
SOURCE_EXCLUDES = ("__pycache__", "*.pyc", ".git", ".venv", ".wheels", "venv", "tests", "benchmarks",
                   "build", "dist", "*.egg-info", "*.zip", ".pytest_cache", "runs")


# --- what went wrong -------------------------------------------------------------------------
_FAILURES = (
    ("disk_space", r"No space left on device|\[Errno 28\]|not enough space|disk quota",
     "The disk is full. Free some space (the engine needs about {size} MB) or choose another "
     "engine folder, then run the setup again."),
    ("proxy", r"ProxyError|407 Proxy|Proxy Authentication|Tunnel connection failed|"
              r"Cannot connect to proxy",
     "A proxy blocks the download. Set HTTPS_PROXY (e.g. http://user:password@proxy:8080) "
     "in Settings > Options > System > Environment, restart QGIS and run the setup again; or "
     "set it up offline from a folder of wheels."),
    ("ssl", r"CERTIFICATE_VERIFY_FAILED|SSLError|certificate verify failed",
     "A secure connection could not be verified (a proxy that inspects HTTPS?). Point "
     "PIP_CERT to your organisation's certificate bundle, or set up offline from wheels."),
    ("no_network", r"Failed to establish a new connection|Temporary failure in name resolution|"
                   r"Name or service not known|Network is unreachable|getaddrinfo failed|"
                   r"ConnectTimeout|ReadTimeout|Connection refused|Max retries exceeded|"
                   r"No route to host|nodename nor servname",
     "The package registry could not be reached (no internet connection?). Connect and run the "
     "setup again, or set it up offline: give the setup a folder of wheels made on a connected "
     "computer with `python3 scripts/engine_wheels.py wheels` (CrossEarth-SAR repository; "
     "same system and Python version)."),
    ("no_wheel", r"No matching distribution found|Could not find a version that satisfies|"
                 r"not found in the provided package locations",
     "A package was not found{where}. Online: check the connection; offline: the wheel folder "
     "must hold every package for this system and Python version (`python3 "
     "scripts/engine_wheels.py wheels` of the CrossEarth-SAR repository makes one)."),
    ("permission", r"Permission denied|Access is denied|\[Errno 13\]",
     "The engine folder cannot be written. Choose another engine folder (the setup's "
     "'Engine folder' parameter or CES_ENGINE_HOME) or fix its permissions."),
)


# A download whose hash is not the lock's: pip names it "name==version from URL:" under its
# "DO NOT MATCH THE HASHES" line, uv says "Hash mismatch for `name==version`".
_HASH_FAILURE = re.compile(r"DO NOT MATCH THE HASHES.*?^\s+(?P<pip>\S+==\S+?)(?: from |:)|"
                           r"[Hh]ash mismatch for `(?P<uv>[^`]+)`", re.DOTALL | re.MULTILINE)


def classify_failure(log_tail: str, wheels: Optional[Path] = None,
                     backend: str = "cpu", output: Optional[str] = None) -> EngineError:
    """The EngineError for a failed command from the end of its output (``output``, the whole
    of it, is searched for a hash mismatch: the list of a package's hashes can be long)."""
    where = f" in {wheels}" if wheels is not None else ""
    mismatch = _HASH_FAILURE.search(log_tail if output is None else output)
    if mismatch:
        package = mismatch.group("pip") or mismatch.group("uv")
        source = f"the wheel folder {wheels}" if wheels is not None else "the download"
        return EngineError("hash", (
            f"{package}: the file from {source} does not match the hash in the engine's lock "
            "(engine.lock in the plugin folder), so nothing was installed: a damaged, "
            "replaced or tampered file. Make the wheel folder again, or set up online."))
    for kind, pattern, message in _FAILURES:
        if re.search(pattern, log_tail, re.IGNORECASE):
            return EngineError(kind, message.format(size=ENGINE_SIZE_MB.get(backend, 2000),
                                                    where=where))
    last = [line for line in log_tail.splitlines() if line.strip()][-3:]
    return EngineError("failed", "The engine setup failed: " + " / ".join(last)
                       + ". The whole log is in install.log in the engine folder.")


# --- the lock ---------------------------------------------------------------------------------
def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name == "nt":
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # query limited info
        if handle:
            ctypes.windll.kernel32.CloseHandle(handle)
            return True
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class InstallLock:
    """An exclusive lock file in the engines folder (its content: the holder's process id).
    A lock whose process is gone is taken over; else EngineError(locked)."""

    def __init__(self, root: Path):
        self.path = Path(root) / LOCK_NAME
        self.held = False

    def acquire(self) -> "InstallLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                try:
                    pid = int(self.path.read_text().strip() or 0)
                except (OSError, ValueError):
                    pid = 0
                if _pid_alive(pid):
                    raise EngineError("locked", (
                        f"Another engine setup is running (process {pid}); wait for it to "
                        f"finish. If none is, delete {self.path}.")) from None
                self.path.unlink(missing_ok=True)   # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as f:
                f.write(str(os.getpid()))
            self.held = True
            return self
        raise EngineError("locked", f"Could not take the setup lock {self.path}.")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> "InstallLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# --- running a setup --------------------------------------------------------------------------
def copy_source(source: Path, target: Path) -> Path:
    """A copy of the package source (the plugin folder) to build from, so that the build
    never writes into the plugin folder."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(*SOURCE_EXCLUDES),
                    symlinks=False)
    return target


@dataclass
class EngineInstaller:
    """Builds one engine. ``progress(percent, text)`` and ``canceled()`` connect it to a
    QgsTask or a Processing feedback; ``log(line)`` receives each line of output too."""

    root: Path
    backend: str = "cpu"
    version: str = __version__
    wheels: Optional[Path] = None
    base_python: Optional[str] = None
    source: Path = PLUGIN_FOLDER
    progress: Callable[[float, str], None] = lambda percent, text: None
    canceled: Callable[[], bool] = lambda: False
    log: Callable[[str], None] = lambda line: None
    # The commands for a build folder; None: install_steps (venv, PyTorch, the package, check)
    plan: Optional[Callable[[Path], list[Step]]] = None
    doctor: dict = field(default_factory=dict)

    @property
    def folder(self) -> Path:
        return Path(self.root) / engine_name(self.version, self.backend)

    def run(self, replace: bool = False) -> Engine:
        """Build the engine (in a temporary folder, renamed on success); the Engine, or
        EngineError (classified) leaving nothing behind but the log."""
        root = Path(self.root)
        if self.folder.exists() and not replace:
            existing = [e for e in installed_engines(root) if e.folder == self.folder]
            if existing:
                return existing[0]
        with InstallLock(root):
            build = Path(tempfile.mkdtemp(prefix=f".build-{self.folder.name}-", dir=root))
            log_path = build / "install.log"
            try:
                self._build(build, log_path)
                if self.folder.exists():
                    shutil.rmtree(self.folder)
                os.replace(build, self.folder)
                relocate_scripts(self.folder / "venv", build / "venv", self.folder / "venv")
            except BaseException:
                failed_log = root / f"{self.folder.name}-install-failed.log"
                if log_path.is_file():
                    shutil.copyfile(log_path, failed_log)
                shutil.rmtree(build, ignore_errors=True)
                raise
        engine = [e for e in installed_engines(root) if e.folder == self.folder]
        if not engine:
            raise EngineError("failed", f"The engine in {self.folder} is incomplete.")
        return engine[0]

    def _build(self, build: Path, log_path: Path) -> None:
        with open(log_path, "w", encoding="utf-8") as log:
            def write(line: str) -> None:
                log.write(line + "\n")
                log.flush()
                self.log(line)

            write(f"# CrossEarth-SAR engine {self.version} ({self.backend}), "
                  f"{datetime.datetime.now().isoformat(timespec='seconds')}")
            if self.plan is not None:
                steps = self.plan(build)
            else:
                base = self.base_python
                if base is None:
                    base, _ = find_base_python()
                source = copy_source(self.source, build / "source")
                steps = install_steps(base, build, self.backend, source, self.wheels)
                for path, text in lock_requirements(build, self.wheels).items():
                    path.write_text(text, encoding="utf-8")
            total = sum(s.weight for s in steps) or 1.0
            done = 0.0
            output = ""
            for step in steps:
                self.progress(100.0 * done / total, step.label)
                write(f"$ {subprocess.list2cmdline(step.command)}")
                output = self._run_step(step, write)
                done += step.weight
            self.progress(100.0, "Done")
            self.doctor = _last_json(output)
            if not self.doctor.get("ok"):
                problems = "; ".join(self.doctor.get("problems") or ["no report"])
                raise EngineError("failed", f"The engine was installed but its check failed: "
                                            f"{problems}. See install.log.")
            # the check ran in the build folder; its paths name the final one
            self.doctor = json.loads(json.dumps(self.doctor).replace(
                json.dumps(str(build))[1:-1], json.dumps(str(self.folder))[1:-1]))
            info = {"version": self.version, "backend": self.backend,
                    "created": datetime.datetime.now().isoformat(timespec="seconds"),
                    "python": str(venv_python(self.folder / "venv")),
                    "wheels": str(self.wheels) if self.wheels else None, "doctor": self.doctor}
            (build / "engine.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
            for scratch in ("source", UV_CACHE):
                shutil.rmtree(build / scratch, ignore_errors=True)

    def _run_step(self, step: Step, write: Callable[[str], None]) -> str:
        """Run one command, its output into the log; cancel kills it. Returns its output."""
        lines: list[str] = []
        process = subprocess.Popen(step.command, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   env=engine_environment(), text=True, encoding="utf-8",
                                   errors="replace", bufsize=1)

        def pump() -> None:
            for line in process.stdout:
                line = line.rstrip("\n")
                lines.append(line)
                write(line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        while process.poll() is None:
            if self.canceled():
                process.kill()
                process.wait()
                reader.join(5)
                write("# canceled")
                raise EngineError("canceled", "The engine setup was canceled; nothing was "
                                              "installed.")
            time.sleep(0.1)
        reader.join(30)
        if process.returncode != 0:
            raise classify_failure("\n".join(lines[-60:]), self.wheels, self.backend,
                                   output="\n".join(lines))
        return "\n".join(lines)


def relocate_scripts(venv: Path, old: Path, new: Path) -> int:
    """After the rename of the build folder: the venv's text scripts (the shebangs of
    bin/ces, bin/pip, activate ...) and pyvenv.cfg name the new folder. Binary launchers
    (Windows .exe) are left alone: the provider runs the venv's Python itself. Returns the
    number of files rewritten."""
    before, after = str(old).encode(), str(new).encode()
    scripts = venv / ("Scripts" if (venv / "Scripts").is_dir() else "bin")
    changed = 0
    for path in [venv / "pyvenv.cfg", *(sorted(scripts.iterdir()) if scripts.is_dir() else [])]:
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if before not in data or b"\0" in data:
            continue
        path.write_bytes(data.replace(before, after))
        changed += 1
    return changed


def _last_json(output: str) -> dict:
    for line in reversed(output.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    return {}


def doctor_summary(doctor: dict, backend: str = "cpu") -> str:
    """``ces doctor --json`` in a few words for the user (of an engine of ``backend``)."""
    if not doctor:
        return "no check report"
    cuda = doctor.get("cuda") or {}
    model = doctor.get("model") or {}
    cuda_build = backend != "cpu" or "+cu" in str(doctor.get("torch"))
    if cuda.get("available"):
        device = f"GPU: {cuda.get('device')}"
    elif backend == "cpu" and cuda_build:   # PyTorch's CPU index unreachable: PyPI's build
        device = ("CPU, with the CUDA build of PyTorch from PyPI (PyTorch's CPU index could not "
                  "be reached; a setup from a wheel folder gets the CPU build, 4x smaller)")
    elif cuda_build:
        device = ("CPU: the CUDA build of PyTorch finds no usable GPU (update the NVIDIA "
                  "driver, or set the engine up with the cpu backend)")
    else:
        device = "CPU (no CUDA)"
    parts = [f"CrossEarth-SAR {doctor.get('version')}", f"Python {doctor.get('python')}",
             f"torch {doctor.get('torch')}", f"GDAL {doctor.get('gdal')}", device,
             "default model segments a test tile" if model.get("segments")
             else "default model check FAILED"]
    return ", ".join(parts)


# --- in QGIS: a background task -------------------------------------------------------------
def make_setup_task(installer: EngineInstaller, on_done: Callable[[Optional[Engine],
                                                                 Optional[EngineError]], None]):
    """A QgsTask (progress bar and Cancel in QGIS's task manager) that runs ``installer``
    and then calls ``on_done(engine, error)`` on the main thread."""
    from qgis.core import QgsTask

    class EngineSetupTask(QgsTask):
        def __init__(self):
            super().__init__("Setting up the CrossEarth-SAR engine", QgsTask.CanCancel)
            self.engine: Optional[Engine] = None
            self.error: Optional[EngineError] = None
            installer.progress = lambda percent, text: self.setProgress(percent)
            installer.canceled = self.isCanceled

        def run(self) -> bool:
            try:
                self.engine = installer.run(replace=True)
            except EngineError as e:
                self.error = e
            except Exception as e:  # noqa: BLE001 (reported, never raised in a worker thread)
                self.error = EngineError("failed", f"{type(e).__name__}: {e}")
            return self.engine is not None

        def finished(self, result: bool) -> None:
            on_done(self.engine, self.error)

    return EngineSetupTask()
