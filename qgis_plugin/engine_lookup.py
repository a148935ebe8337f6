"""Finding the CrossEarth-SAR engine: the per-user virtual environment, outside QGIS and
outside the plugin folder, that runs ``ces`` for the Processing provider (no torch in QGIS's
Python). This is what every algorithm run needs (qgis_plugin/ces_process.py); building an
engine is qgis_plugin/engine_installer.py, which this module never imports.

Layout (one folder per engine version and backend, so that plugin updates never wipe it and
a CPU and a CUDA engine can live side by side)::

    engines_root()/                      e.g. ~/.local/share/CrossEarth-SAR/engines
        0.1.0-cpu/                       engine_name() = <version>-<backend>
            venv/                        the virtual environment (bin/python, bin/ces)
            engine.json                  {"version", "backend", "python", "created", "doctor"}
            install.log                  what the last setup ran and printed
        .install.lock                    held while a setup runs (holds its process id)
        .build-0.1.0-cpu-XXXX/           a setup in progress; renamed to 0.1.0-cpu on success

engines_root(): ``$CES_ENGINE_HOME``, else the QGIS setting ``CrossEarth-SAR/engine_home``,
else Windows ``%LOCALAPPDATA%``, macOS ``~/Library/Application Support``, Linux
``$XDG_DATA_HOME`` (default ``~/.local/share``), followed by ``CrossEarth-SAR/engines``.

An engine's Python (and the Pythons a setup runs) get the environment of
:func:`engine_environment`: QGIS's own variables removed, so that they never see QGIS's
site-packages, libraries or data (the engine and its lookup order: docs/contracts.md §7).
Standard library only; qgis.core only to read the QGIS setting.
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

from ..version import __version__

APP_FOLDER = "CrossEarth-SAR"
ENV_ENGINE_HOME = "CES_ENGINE_HOME"
SETTING_ENGINE_HOME = "CrossEarth-SAR/engine_home"
# What a QGIS process sets and a separate Python must not inherit.
STRIPPED_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE",
                      "PYTHONEXECUTABLE", "PYTHONNOUSERSITE", "VIRTUAL_ENV", "CONDA_PREFIX",
                      "PROJ_LIB", "PROJ_DATA", "GDAL_DATA", "GDAL_DRIVER_PATH",
                      "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH", "DYLD_FALLBACK_LIBRARY_PATH",
                      "QT_PLUGIN_PATH", "QML2_IMPORT_PATH", "PYQGIS_STARTUP", "OSGEO4W_ROOT",
                      "__PYVENV_LAUNCHER__")
STRIPPED_PREFIXES = ("QGIS_", "PYQGIS")


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
    """The folder name of an engine under engines_root(): ``<version>-<backend>``."""
    return f"{version}-{backend}"


def venv_python(venv: Path, platform: Optional[str] = None) -> Path:
    """The Python of the virtual environment ``venv`` (bin/python; Windows Scripts/python.exe)."""
    platform = platform or sys.platform
    if platform.startswith("win"):
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


# --- which engines there are ---------------------------------------------------------------
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
