"""End to end, as a new user without a terminal: a clean QGIS profile with no `ces` anywhere,
the plugin installed from the built zip, the "Set up CrossEarth-SAR engine" algorithm run
through qgis_process (CPU; offline from a local wheel folder, or against the package
registry), then the demo scene segmented through Processing to a styled GeoPackage.

Slow (minutes: it installs PyTorch); ``make test-slow``. The wheel folder is
``$CES_TEST_WHEELS`` when set, else made with ``pip download`` from this environment's
configured index (which may be a local mirror)."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("qgis.core")

from _helpers_qgis import DEMO_SCENE, REPO, run_qgis_process  # noqa: E402

from crossearth_sar.version import __version__  # noqa: E402

pytestmark = [pytest.mark.qgis, pytest.mark.slow]

SYSTEM_PYTHON = "/usr/bin/python3"
CLEAN_PATH = "/usr/bin:/bin"   # no `ces` on it


def _requirements() -> list[str]:
    """install_requires of setup.cfg plus what a build needs."""
    import configparser

    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    lines = [r.strip() for r in parser["options"]["install_requires"].splitlines() if r.strip()]
    return [r for r in lines if not r.startswith("torch")] + [
        "torch", "setuptools>=64", "wheel", "pip"]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    given = os.environ.get("CES_TEST_WHEELS")
    if given:
        return Path(given)
    folder = tmp_path_factory.mktemp("wheels")
    done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "-d", str(folder),
                           "--only-binary=:all:", *_requirements()],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder


@pytest.fixture(scope="module")
def clean_profile(tmp_path_factory) -> Path:
    """A QGIS profile folder with only this plugin, installed from the zip."""
    work = tmp_path_factory.mktemp("profile")
    plugin_zip = work / "crossearth_sar.zip"
    done = subprocess.run([SYSTEM_PYTHON, str(REPO / "scripts" / "build_plugin.py"),
                           str(plugin_zip)], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    config = work / "qgis_config"
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as zf:
        zf.extractall(plugins)
    return config


def _qgis(args: list[str], config: Path, engines: Path, timeout: float) -> subprocess.CompletedProcess:
    saved = {k: os.environ.get(k) for k in ("PATH", "CES_ENGINE_HOME", "CES_EXECUTABLE",
                                            "PYTHONPATH", "VIRTUAL_ENV")}
    os.environ.update(PATH=CLEAN_PATH, CES_ENGINE_HOME=str(engines), CES_EXECUTABLE="")
    os.environ.pop("PYTHONPATH", None)
    os.environ.pop("VIRTUAL_ENV", None)
    try:
        return run_qgis_process(args, config, timeout=timeout)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _folder_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink()) / 1e6


@pytest.mark.parametrize("source", ["offline", "online"])
def test_setup_engine_then_segment_without_a_terminal(source, clean_profile, tmp_path, request):
    if source == "online" and os.environ.get("CES_TEST_ONLINE") != "1":
        pytest.skip("set CES_TEST_ONLINE=1 to set the engine up against the package registry")
    engines = tmp_path / "engines"
    done = _qgis(["plugins", "enable", "crossearth_sar"], clean_profile, engines, 120)
    assert done.returncode == 0, done.stdout + done.stderr
    params = ["BACKEND=1"]
    if source == "offline":
        params.append(f"WHEELS={request.getfixturevalue('wheels')}")
    started = time.monotonic()
    done = _qgis(["--json", "run", "crossearth_sar:setup_engine", "--", *params],
                 clean_profile, engines, 3600)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(done.stdout)["results"]
    folder = Path(results["ENGINE"])
    assert folder == engines / f"{__version__}-cpu"
    info = json.loads((folder / "engine.json").read_text())
    assert info["doctor"]["ok"] is True and info["doctor"]["model"]["segments"] is True
    print(f"\nengine setup ({source}): {seconds:.0f} s, {_folder_mb(folder):.0f} MB on disk")

    out = tmp_path / "demo.gpkg"
    done = _qgis(["--json", "run", "crossearth_sar:segment", "--", f"INPUT={DEMO_SCENE}",
                  f"OUTPUT={out}"], clean_profile, engines, 600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with sqlite3.connect(out) as con:
        (styles,) = con.execute("SELECT count(*) FROM layer_styles WHERE useAsDefault = 1").fetchone()
        (polygons,) = con.execute("SELECT count(*) FROM landcover").fetchone()
    assert styles == 1 and polygons > 0
