"""End to end, as a new user without a terminal: a clean QGIS profile with no `ces` anywhere,
the plugin installed from the built zip, the "Set up CrossEarth-SAR engine" algorithm run
through qgis_process (CPU), then the demo scene segmented through Processing to a styled
GeoPackage.

Three sources of the engine's packages:
- ``offline`` (in ``make test``): the local wheel folder .wheels/ that ``make wheels`` fills
  (scripts/engine_wheels.py: the engine's lock, and PyTorch from the configured index); it
  holds uv, so uv installs; the engine's packages are exactly the lock's (``ces doctor``);
- ``offline-pip`` (slow): the same wheels without uv, so pip installs everything;
- ``online`` (slow, and only with CES_TEST_ONLINE=1): against the package registry.
``$CES_TEST_WHEELS`` names another wheel folder. Each prints its setup time and the
engine's size on disk."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("qgis.core")

from crossearth_sar.qgis_plugin.engine_plan import uv_wheel  # noqa: E402
from crossearth_sar.version import __version__  # noqa: E402

from _helpers_qgis import DEMO_SCENE, REPO, run_qgis_process  # noqa: E402

pytestmark = pytest.mark.qgis

SYSTEM_PYTHON = "/usr/bin/python3"
CLEAN_PATH = "/usr/bin:/bin"   # no `ces` on it
WHEELS = REPO / ".wheels"      # made by `make wheels`


@pytest.fixture(scope="module")
def wheels() -> Path:
    folder = Path(os.environ.get("CES_TEST_WHEELS") or WHEELS)
    if not (folder / ".complete").is_file():
        pytest.fail(f"no complete wheel folder in {folder}: run `make wheels` (make test does)")
    return folder


@pytest.fixture(scope="module")
def wheels_without_uv(wheels, tmp_path_factory) -> Path:
    """The same wheels without uv's (links, no copies)."""
    folder = tmp_path_factory.mktemp("wheels-pip")
    for wheel in wheels.glob("*.whl"):
        if wheel != uv_wheel(wheels):
            (folder / wheel.name).symlink_to(wheel)
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


@pytest.mark.parametrize("source", [
    "offline",
    pytest.param("offline-pip", marks=pytest.mark.slow),
    pytest.param("online", marks=pytest.mark.slow),
])
def test_setup_engine_then_segment_without_a_terminal(source, clean_profile, tmp_path, request):
    if source == "online" and os.environ.get("CES_TEST_ONLINE") != "1":
        pytest.skip("set CES_TEST_ONLINE=1 to set the engine up against the package registry")
    engines = tmp_path / "engines"
    done = _qgis(["plugins", "enable", "crossearth_sar"], clean_profile, engines, 120)
    assert done.returncode == 0, done.stdout + done.stderr
    params = ["BACKEND=1"]
    if source != "online":
        fixture = "wheels" if source == "offline" else "wheels_without_uv"
        params.append(f"WHEELS={request.getfixturevalue(fixture)}")
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
    assert info["doctor"]["lock"]["matches"] is True, info["doctor"]["lock"]   # engine.lock exactly
    commands = [line for line in (folder / "install.log").read_text().splitlines()
                if line.startswith("$ ")]
    used_uv = [c for c in commands if "/venv/bin/uv " in c]
    assert len(used_uv) == (3 if source == "offline" else 0), commands   # lock, torch, package
    assert not (folder / "uv-cache").exists() and not (folder / "source").exists()
    assert ".build-" not in json.dumps(info)   # the paths of the check name the final folder
    ces = subprocess.run([str(folder / "venv" / "bin" / "ces"), "--version"], capture_output=True,
                         text=True, env={"PATH": CLEAN_PATH})   # its script names the final folder
    assert ces.returncode == 0 and __version__ in ces.stdout, ces.stderr
    print(f"\nengine setup ({source}): {seconds:.0f} s, {_folder_mb(folder):.0f} MB on disk")

    out = tmp_path / "demo.gpkg"
    done = _qgis(["--json", "run", "crossearth_sar:segment", "--", f"INPUT={DEMO_SCENE}",
                  f"OUTPUT={out}"], clean_profile, engines, 600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with sqlite3.connect(out) as con:
        (styles,) = con.execute("SELECT count(*) FROM layer_styles WHERE useAsDefault = 1").fetchone()
        (polygons,) = con.execute("SELECT count(*) FROM landcover").fetchone()
    assert styles == 1 and polygons > 0
