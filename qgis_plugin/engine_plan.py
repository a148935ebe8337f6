"""The plan of a CrossEarth-SAR engine setup, decided before anything is installed: which
Python on this machine builds the engine's virtual environment (:func:`find_base_python`:
>= 3.10, with venv and ensurepip, never QGIS's bundled interpreter on Windows/macOS, never a
macOS app bundle's), which PyTorch backend it gets (``cpu`` or ``CUDA_BACKEND``, from
``nvidia-smi`` unless the user chooses, :func:`choose_backend`) and the commands a setup runs
(:func:`install_steps`: venv, the locked packages, PyTorch, the package, ``ces doctor
--json``). What it installs is the engine's lock, qgis_plugin/engine.lock (engine_lock.py):
every package at its locked version with ``--require-hashes``, online and offline, and
PyTorch at the lock's version from its backend's index (:func:`lock_requirements` writes the
lock's subsets that the steps name; scripts/engine_wheels.py downloads the same lock).

qgis_plugin/engine_installer.py runs the plan; qgis_plugin/engine_lookup.py finds the result
(docs/contracts.md §7).
Standard library only (no torch, no qgis): scripts/engine_wheels.py imports it outside QGIS.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional

from .engine_lock import OPTIONAL, TOOLS, Lock, read_lock
from .engine_lookup import data_home, engine_environment, venv_python

ENV_ENGINE_PYTHON = "CES_ENGINE_PYTHON"
MIN_PYTHON = (3, 10)
PYTORCH_INDEX = "https://download.pytorch.org/whl/{backend}"
CUDA_BACKEND = "cu126"          # the CUDA build of PyTorch installed for an NVIDIA GPU
UV_CACHE = "uv-cache"           # uv's cache during an offline build, inside the build folder
# The lock's subsets a setup installs (written into the build folder): the packaging tools
# (and uv), then everything else the lock holds.
LOCKED_TOOLS, LOCKED_PACKAGES = "locked-tools.txt", "locked-packages.txt"


class EngineError(Exception):
    """A setup that failed: ``kind`` (no_python, no_network, proxy, disk_space, permission,
    ssl, no_wheel, hash, canceled, locked, failed) and a message that says how to fix it."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


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


def lock_requirements(build: Path, wheels: Optional[Path] = None,
                      lock: Optional[Lock] = None) -> dict[Path, str]:
    """The requirements files the steps of :func:`install_steps` name, by path in ``build``:
    the lock's packaging tools (with uv when the wheel folder holds it), and the rest of the
    lock; each with its hashes and markers (the engine's Python evaluates them)."""
    lock = read_lock() if lock is None else lock
    tools = [*TOOLS, *(OPTIONAL if uv_wheel(wheels) is not None else ())]
    return {build / LOCKED_TOOLS: lock.requirements(include=tools),
            build / LOCKED_PACKAGES: lock.requirements(exclude=[*TOOLS, *OPTIONAL])}


def install_steps(base_python: str, build: Path, backend: str, source: Path,
                  wheels: Optional[Path] = None, platform: Optional[str] = None,
                  lock: Optional[Lock] = None) -> list[Step]:
    """The commands that build an engine in ``build`` (the temporary folder): a venv, the
    lock's packaging tools, the rest of the lock (both ``--require-hashes --no-deps``, wheels
    only, from the files of :func:`lock_requirements`), PyTorch at the lock's version (from
    the backend's index, or ``wheels``; its dependencies are installed already, a CUDA
    build's CUDA runtime comes with it), the package from ``source`` (``--no-deps``), then
    the check (docs/contracts.md §7).

    Nothing is compiled to bytecode ahead (a quarter of the CPU time of a setup, measured):
    the check (``python -I``, so PYTHONDONTWRITEBYTECODE does not stop it) writes the
    bytecode of exactly the modules that ``ces`` imports. Offline from a wheel folder that
    holds uv, pip installs uv with the packaging tools and uv installs the rest (in parallel:
    51-67 s against pip's 85 s for the whole setup on 2 cores, measured; its cache in
    ``build``/uv-cache, removed at the end). Otherwise, and always online (pip reads the
    user's pip configuration: index mirror, proxy, certificates; uv does not), pip installs
    everything."""
    lock = read_lock() if lock is None else lock
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
    locked = ["--require-hashes", "--no-deps", "--only-binary", ":all:", "-r"]
    install = pip
    if uv_wheel(wheels) is not None:
        uv = str(venv_python(build / "venv", platform).with_name(
            "uv.exe" if (platform or sys.platform).startswith("win") else "uv"))
        install = [uv, "--no-config", "--cache-dir", str(build / UV_CACHE), "pip", "install",
                   "--python", python]
    return [
        Step("Creating the virtual environment", 5.0,
             [base_python, "-I", "-m", "venv", str(build / "venv")]),
        Step("Installing the packaging tools", 5.0,
             [*pip, *where, *locked, str(build / LOCKED_TOOLS)]),
        Step("Installing GDAL and the other locked packages", 25.0,
             [*install, *where, *locked, str(build / LOCKED_PACKAGES)]),
        Step(f"Installing PyTorch ({backend})", 50.0,
             [*install, *torch_where, "--only-binary", ":all:", f"torch=={lock.torch}"]),
        Step("Installing CrossEarth-SAR", 5.0,
             [*install, *where, "--no-deps", "--no-build-isolation", str(source)]),
        Step("Checking the engine (ces doctor)", 10.0,   # a CUDA engine: on the GPU if usable
             [python, "-I", "-m", "crossearth_sar.crossearth_cli.main", "doctor", "--json",
              "--device", "cpu" if backend == "cpu" else "auto"]),
    ]
