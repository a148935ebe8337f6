"""The CrossEarth-SAR engine: a per-user virtual environment, outside QGIS and outside the
plugin folder, that runs ``ces`` for the Processing provider (no torch in QGIS's Python).

Layout (one folder per engine version and backend, so that plugin updates never wipe it and
a CPU and a CUDA engine can live side by side)::

    engines_root()/                      e.g. ~/.local/share/CrossEarth-SAR/engines
        0.1.0-cpu/                       ENGINE = <version>-<backend>
            venv/                        the virtual environment (bin/python, bin/ces)
            engine.json                  {"version", "backend", "python", "created", "doctor"}
            install.log                  what the last setup ran and printed
        .install.lock                    held while a setup runs (holds its process id)
        .build-0.1.0-cpu-XXXX/           a setup in progress; renamed to 0.1.0-cpu on success

engines_root(): ``$CES_ENGINE_HOME``, else the QGIS setting ``CrossEarth-SAR/engine_home``,
else Windows ``%LOCALAPPDATA%``, macOS ``~/Library/Application Support``, Linux
``$XDG_DATA_HOME`` (default ``~/.local/share``), followed by ``CrossEarth-SAR/engines``.

A setup (:class:`EngineInstaller`) creates the venv with a Python >= 3.10 found on the
machine (never QGIS's bundled interpreter on Windows/macOS, never a macOS app bundle's), with
``-I`` and without QGIS's environment (:func:`engine_environment`), so it never sees QGIS's
site-packages; installs PyTorch from the index of the backend (``cpu`` or ``cuXYZ``, chosen
from ``nvidia-smi`` unless given), then this plugin folder's own source (the plugin zip is the
package); or everything offline from a local wheel folder (``--no-index --find-links``;
uv installs when the folder holds it, see :func:`install_steps`; scripts/engine_wheels.py
makes one).
It ends with ``ces doctor --json``. Every command and its output go to install.log; a failure
is classified into a message with its fix (:func:`classify_failure`). Nothing here imports
torch; only :class:`EngineSetupTask` needs qgis.core.
"""
from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Optional

from ..version import __version__

PLUGIN_FOLDER = Path(__file__).resolve().parents[1]   # the package source, too
APP_FOLDER = "CrossEarth-SAR"
ENV_ENGINE_HOME = "CES_ENGINE_HOME"
ENV_ENGINE_PYTHON = "CES_ENGINE_PYTHON"
SETTING_ENGINE_HOME = "CrossEarth-SAR/engine_home"
LOCK_NAME = ".install.lock"
MIN_PYTHON = (3, 10)
PYTORCH_INDEX = "https://download.pytorch.org/whl/{backend}"
CUDA_BACKEND = "cu126"          # the CUDA build of PyTorch installed for an NVIDIA GPU
BACKENDS = ("cpu", CUDA_BACKEND)
TORCH_REQUIREMENT = "torch>=2.1"
PACKAGING_TOOLS = ("pip", "setuptools>=64", "wheel")   # a build of the package needs them
UV_CACHE = "uv-cache"           # uv's cache during an offline build, inside the build folder
# Sizes shown before a setup, measured (README, QGIS section): CPU 1,430 MB on disk from a
# 360 MB download (the wheels); CUDA 6,180 MB from 3,080 MB (PyPI's CUDA build of PyTorch).
ENGINE_SIZE_MB = {"cpu": 1450, CUDA_BACKEND: 6200}
DOWNLOAD_MB = {"cpu": 360, CUDA_BACKEND: 3100}
# What a QGIS process sets and a separate Python must not inherit.
STRIPPED_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE",
                      "PYTHONEXECUTABLE", "PYTHONNOUSERSITE", "VIRTUAL_ENV", "CONDA_PREFIX",
                      "PROJ_LIB", "PROJ_DATA", "GDAL_DATA", "GDAL_DRIVER_PATH",
                      "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "DYLD_FALLBACK_LIBRARY_PATH",
                      "QT_PLUGIN_PATH", "QML2_IMPORT_PATH", "PYQGIS_STARTUP", "OSGEO4W_ROOT",
                      "__PYVENV_LAUNCHER__")
STRIPPED_PREFIXES = ("QGIS_", "PYQGIS")
# Source files of the package not needed to install it (kept out of the build copy).
SOURCE_EXCLUDES = ("__pycache__", "*.pyc", ".git", ".venv", ".wheels", "venv", "tests", "benchmarks",
                   "build", "dist", "*.egg-info", "*.zip", ".pytest_cache", "runs")


class EngineError(Exception):
    """A setup that failed: ``kind`` (no_python, no_network, proxy, disk_space, permission,
    ssl, no_wheel, canceled, locked, failed) and a message that says how to fix it."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# --- where ---------------------------------------------------------------------------------
def data_home(env: Optional[Mapping[str, str]] = None, platform: Optional[str] = None) -> Path:
    """The per-user data folder of the operating system (not QGIS's, not the plugin's)."""
    env = os.environ if env is None else env
    platform = platform or sys.platform
    home = Path(env.get("HOME") or env.get("USERPROFILE") or Path.home())
    if platform.startswith("win"):
        return Path(env.get("LOCALAPPDATA") or home / "AppData" / "Local")
    if platform == "darwin":
        return home / "Library" / "Application Support"
    return Path(env.get("XDG_DATA_HOME") or home / ".local" / "share")


def engines_root(override: Optional[str] = None, env: Optional[Mapping[str, str]] = None,
                 platform: Optional[str] = None) -> Path:
    """The folder holding the engines: ``override`` (a folder chosen for this setup), else
    ``$CES_ENGINE_HOME``, else data_home()/CrossEarth-SAR/engines."""
    env = os.environ if env is None else env
    chosen = (override or "").strip() or env.get(ENV_ENGINE_HOME, "").strip()
    if chosen:
        return Path(os.path.expanduser(chosen))
    return data_home(env, platform) / APP_FOLDER / "engines"


def configured_engines_root() -> Path:
    """Where the provider looks: ``$CES_ENGINE_HOME``, else the QGIS setting (a folder
    chosen in the setup algorithm), else the default of engines_root()."""
    if os.environ.get(ENV_ENGINE_HOME, "").strip():
        return engines_root()
    try:
        from qgis.core import QgsSettings

        return engines_root(str(QgsSettings().value(SETTING_ENGINE_HOME, "") or ""))
    except ImportError:
        return engines_root()


def engine_name(version: str, backend: str) -> str:
    return f"{version}-{backend}"


def venv_python(venv: Path, platform: Optional[str] = None) -> Path:
    platform = platform or sys.platform
    if platform.startswith("win"):
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


@dataclass
class Engine:
    """An installed engine: its folder, version, backend and the venv's Python."""

    folder: Path
    version: str
    backend: str
    info: dict = field(default_factory=dict)

    @property
    def python(self) -> Path:
        return venv_python(self.folder / "venv")


def installed_engines(root: Optional[Path] = None) -> list[Engine]:
    """The complete engines under ``root`` (with engine.json and the venv's Python)."""
    root = configured_engines_root() if root is None else Path(root)
    found = []
    if not root.is_dir():
        return found
    for folder in sorted(root.iterdir()):
        if folder.name.startswith("."):
            continue
        try:
            info = json.loads((folder / "engine.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        engine = Engine(folder, str(info.get("version", "")), str(info.get("backend", "")), info)
        if engine.python.is_file():
            found.append(engine)
    return found


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.+-]", version))


def managed_engine(version: Optional[str] = __version__,
                   root: Optional[Path] = None) -> Optional[Engine]:
    """The engine of ``version`` (a CUDA one before CPU); with ``version`` None, the newest
    installed engine of any version; None when there is none."""
    engines = installed_engines(root)
    if version is not None:
        engines = [e for e in engines if e.version == version]
    engines.sort(key=lambda e: (_version_key(e.version), e.backend != "cpu"), reverse=True)
    return engines[0] if engines else None


# --- the environment a child Python gets ---------------------------------------------------
def engine_environment(base: Optional[Mapping[str, str]] = None) -> dict[str, str]:
    """``base`` (the current environment) without what would make a separate Python load
    QGIS's libraries, data or packages: PYTHONPATH/HOME, PROJ/GDAL data, library paths, Qt and
    QGIS variables. PATH keeps only folders that are not QGIS's own."""
    base = dict(os.environ if base is None else base)
    env = {k: v for k, v in base.items()
           if k not in STRIPPED_VARIABLES and not k.upper().startswith(STRIPPED_PREFIXES)}
    prefixes = [os.path.abspath(base[k]) for k in ("QGIS_PREFIX_PATH", "OSGEO4W_ROOT")
                if base.get(k)]
    if prefixes and env.get("PATH"):   # QGIS's own DLLs and programs (Windows: OSGeo4W\bin)
        env["PATH"] = os.pathsep.join(
            p for p in env["PATH"].split(os.pathsep)
            if not any(os.path.abspath(p).startswith(prefix) for prefix in prefixes))
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env["PYTHONUNBUFFERED"] = "1"
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


# --- which Python builds the venv ------------------------------------------------------------
def is_bundled_python(path: str, platform: Optional[str] = None,
                      host_python: Optional[str] = None) -> bool:
    """A Python that must not build the engine: a macOS app bundle's, or (Windows, macOS)
    the interpreter QGIS itself runs (``host_python``)."""
    platform = platform or sys.platform
    real = os.path.realpath(path)
    if ".app/Contents/" in real:
        return True
    if platform.startswith("win") or platform == "darwin":
        host = os.path.realpath(host_python or sys.executable)
        if os.path.dirname(real) == os.path.dirname(host):
            return True
        if re.search(r"[\\/](qgis|osgeo4w)[^\\/]*[\\/]", real, re.IGNORECASE):
            return True
    return False


def python_version(path: str, env: Optional[Mapping[str, str]] = None) -> Optional[tuple[int, int]]:
    """(major, minor) of the Python at ``path`` when it can make a venv with pip, else None."""
    code = ("import sys, venv, ensurepip; "
            "print('%d.%d' % sys.version_info[:2])")
    try:
        done = subprocess.run([path, "-I", "-c", code], capture_output=True, text=True,
                              timeout=30, env=engine_environment(env))
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.fullmatch(r"(\d+)\.(\d+)", done.stdout.strip())
    if done.returncode != 0 or not match:
        return None
    return int(match.group(1)), int(match.group(2))


def python_candidates(env: Optional[Mapping[str, str]] = None,
                      platform: Optional[str] = None) -> list[str]:
    """Pythons to try, in order: $CES_ENGINE_PYTHON, python3.13 ... python3.10, python3,
    python on PATH (and the ``py`` launcher's on Windows), uv-managed ones; no duplicates."""
    env = os.environ if env is None else env
    platform = platform or sys.platform
    path = env.get("PATH")
    names = [f"python3.{minor}" for minor in range(13, MIN_PYTHON[1] - 1, -1)] + ["python3", "python"]
    found: list[str] = []
    if env.get(ENV_ENGINE_PYTHON):
        found.append(env[ENV_ENGINE_PYTHON])
    for name in names:
        hit = shutil.which(name, path=path)
        if hit:
            found.append(hit)
    if platform.startswith("win"):
        local = Path(env.get("LOCALAPPDATA") or "")
        found += sorted(map(str, local.glob("Programs/Python/Python3*/python.exe")), reverse=True)
    uv_home = Path(env.get("UV_PYTHON_INSTALL_DIR") or data_home(env, platform) / "uv" / "python")
    pattern = "cpython-3.*/python.exe" if platform.startswith("win") else "cpython-3.*/bin/python3"
    found += sorted(map(str, uv_home.glob(pattern)), reverse=True)
    unique, seen = [], set()
    for candidate in found:
        real = os.path.realpath(candidate)
        if real not in seen:
            seen.add(real)
            unique.append(candidate)
    return unique


def find_base_python(candidates: Optional[Iterable[str]] = None,
                     platform: Optional[str] = None) -> tuple[str, tuple[int, int]]:
    """The first usable Python >= 3.10 (with venv and ensurepip) that is not bundled;
    EngineError(no_python) saying what to install otherwise."""
    tried = []
    for candidate in (python_candidates(platform=platform) if candidates is None else candidates):
        if is_bundled_python(candidate, platform):
            tried.append(f"{candidate} (QGIS's own or an app bundle's)")
            continue
        version = python_version(candidate)
        if version is None:
            tried.append(f"{candidate} (no venv/ensurepip)")
        elif version < MIN_PYTHON:
            tried.append(f"{candidate} ({version[0]}.{version[1]})")
        else:
            return candidate, version
    raise EngineError("no_python", (
        "No Python 3.10 or newer with venv was found to build the engine"
        + (f" (tried: {'; '.join(tried)})" if tried else "")
        + ". Install one: on Windows from python.org (tick 'Add python.exe to PATH'), on macOS "
        "from python.org or Homebrew, on Debian/Ubuntu `sudo apt install python3-venv`; or "
        "`uv python install 3.12`. Or name one in the CES_ENGINE_PYTHON environment variable."))


def detect_backend(nvidia_smi: Optional[str] = None) -> str:
    """``CUDA_BACKEND`` when ``nvidia-smi -L`` lists a GPU, else ``cpu``."""
    exe = nvidia_smi or shutil.which("nvidia-smi")
    if not exe:
        return "cpu"
    try:
        done = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return "cpu"
    return CUDA_BACKEND if done.returncode == 0 and "GPU" in done.stdout else "cpu"


BACKEND_CHOICES = ("auto", "cpu", "cuda")   # what a user may ask for


def choose_backend(choice: str = "auto", nvidia_smi: Optional[str] = None) -> str:
    """The backend of a setup: ``cpu`` or ``CUDA_BACKEND`` when the user asked for it (the
    override, whatever the machine has), else (``auto``) what :func:`detect_backend` finds."""
    if choice not in BACKEND_CHOICES:
        raise ValueError(f"backend {choice!r}: expected one of {', '.join(BACKEND_CHOICES)}")
    if choice == "auto":
        return detect_backend(nvidia_smi)
    return "cpu" if choice == "cpu" else CUDA_BACKEND


# --- what a setup runs -----------------------------------------------------------------------
@dataclass
class Step:
    """One command of a setup: what it is for (shown as progress text), its weight in the
    progress bar, and the command line."""

    label: str
    weight: float
    command: list[str]


def uv_wheel(wheels: Optional[Path]) -> Optional[Path]:
    """The uv wheel of a wheel folder (uv installs faster than pip; optional), else None."""
    if wheels is None or not Path(wheels).is_dir():
        return None
    return next(iter(sorted(Path(wheels).glob("uv-*.whl"))), None)


def install_steps(base_python: str, build: Path, backend: str, source: Path,
                  wheels: Optional[Path] = None, platform: Optional[str] = None) -> list[Step]:
    """The commands that build an engine in ``build`` (the temporary folder): a venv, PyTorch
    (from the backend's index, or ``wheels``), the package from ``source``, then the check.

    Nothing is compiled to bytecode ahead (a quarter of the CPU time of a setup, measured):
    the check (``python -I``, so PYTHONDONTWRITEBYTECODE does not stop it) writes the
    bytecode of exactly the modules that ``ces`` imports. Offline from a wheel folder that
    holds uv, pip installs uv with the packaging tools and uv installs PyTorch and the
    package (in parallel: 51-67 s against pip's 85 s for the whole setup on 2 cores, measured;
    its cache in ``build``/uv-cache, removed at the end). Otherwise, and always online (pip reads the user's pip configuration: index
    mirror, proxy, certificates; uv does not), pip installs everything."""
    python = str(venv_python(build / "venv", platform))
    pip = [python, "-I", "-m", "pip", "install", "--no-input", "--progress-bar", "off",
           "--no-compile"]
    if wheels is not None:
        where = ["--no-index", "--find-links", str(wheels)]
        torch_where = where
    else:
        where = []
        torch_where = ["--index-url", PYTORCH_INDEX.format(backend=backend),
                       "--extra-index-url", "https://pypi.org/simple"]
    tools = [*PACKAGING_TOOLS]
    install = pip
    if uv_wheel(wheels) is not None:
        tools.append("uv")
        uv = str(venv_python(build / "venv", platform).with_name(
            "uv.exe" if (platform or sys.platform).startswith("win") else "uv"))
        install = [uv, "--no-config", "--cache-dir", str(build / UV_CACHE), "pip", "install",
                   "--python", python]
    return [
        Step("Creating the virtual environment", 5.0,
             [base_python, "-I", "-m", "venv", str(build / "venv")]),
        Step("Installing the packaging tools", 5.0, [*pip, *where, "--upgrade", *tools]),
        Step(f"Installing PyTorch ({backend})", 50.0, [*install, *torch_where, TORCH_REQUIREMENT]),
        Step("Installing CrossEarth-SAR and GDAL", 30.0,
             [*install, *where, "--no-build-isolation", str(source)]),
        Step("Checking the engine (ces doctor)", 10.0,   # a CUDA engine: on the GPU if usable
             [python, "-I", "-m", "crossearth_sar.crossearth_cli.main", "doctor", "--json",
              "--device", "cpu" if backend == "cpu" else "auto"]),
    ]


def offline_requirements(install_requires: Iterable[str]) -> list[str]:
    """What a wheel folder for an offline setup must hold (scripts/engine_wheels.py downloads
    it): the packaging tools, PyTorch and the package's other requirements, and uv (optional:
    it makes the offline install faster)."""
    return [*PACKAGING_TOOLS, "uv", TORCH_REQUIREMENT,
            *(r for r in install_requires if not re.match(r"torch\b", r))]


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


def classify_failure(log_tail: str, wheels: Optional[Path] = None,
                     backend: str = "cpu") -> EngineError:
    """The EngineError for a failed command from the end of its output."""
    where = f" in {wheels}" if wheels is not None else ""
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
            raise classify_failure("\n".join(lines[-60:]), self.wheels, self.backend)
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
