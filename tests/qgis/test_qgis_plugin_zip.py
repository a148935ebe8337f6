"""The plugin zip as plugins.qgis.org checks it: built by scripts/build_plugin.py with Debian's
Python (as `make plugin`), at most 25 MB, only the default model inside, no build leftovers
(GDAL's .aux.xml side files, __pycache__, .pyc), the engine's lock, and metadata with a
homepage, tracker and repository. No QGIS needed: the zip is checked as a file."""
from __future__ import annotations

import configparser
import importlib.util
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build_plugin.py"


def _build_plugin_module():
    spec = importlib.util.spec_from_file_location("build_plugin", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_zip_passes_the_official_repository_checks(tmp_path):
    python = shutil.which("python3", path="/usr/bin") or "python3"
    out = tmp_path / "crossearth_sar.zip"
    done = subprocess.run([python, str(SCRIPT), str(out)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    size = out.stat().st_size
    print(f"plugin zip: {size / 1e6:.1f} MB")
    assert size <= 25 * 1000 * 1000
    with zipfile.ZipFile(out) as zf:
        names = zf.namelist()
        meta = configparser.ConfigParser(interpolation=None)
        meta.read_string(zf.read("crossearth_sar/metadata.txt").decode("utf-8"))
    assert all(n.startswith("crossearth_sar/") for n in names)
    assert [n for n in names if n.endswith(".safetensors")] == [
        "crossearth_sar/models/ces-s1-water.safetensors"]
    leftovers = [n for n in names if n.endswith((".aux.xml", ".pyc", ".pyo"))
                 or "__pycache__" in n or "/." in n]
    assert leftovers == []
    assert "crossearth_sar/qgis_plugin/engine.lock" in names
    assert "crossearth_sar/tests/conftest.py" not in names
    for key in ("homepage", "tracker", "repository"):
        assert meta["general"][key].startswith("https://")


def test_leftovers_and_other_models_are_left_out_and_a_big_zip_is_refused(tmp_path, monkeypatch):
    build_plugin = _build_plugin_module()
    for rel in ("examples/Spain_7370579_S1Hand.tif.aux.xml", "models/ces-ti-water.safetensors",
                "models/ces-ti-water-validation.png", "core/__pycache__/x.cpython-311.pyc"):
        assert build_plugin._excluded_file(Path(rel), tmp_path / "z.zip") or \
            build_plugin._excluded_dir(Path(rel).parent), rel
    for rel in ("models/ces-s1-water.safetensors", "models/README.md", "examples/Spain_7370579_S1Hand.tif"):
        assert not build_plugin._excluded_file(Path(rel), tmp_path / "z.zip"), rel
    monkeypatch.setattr(build_plugin, "MAX_ZIP_BYTES", 1_000_000)
    with pytest.raises(SystemExit, match="over the 1 MB that plugins.qgis.org accepts"):
        build_plugin.build(tmp_path / "big.zip")
    assert list(tmp_path.iterdir()) == []        # nothing half-written
