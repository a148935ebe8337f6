"""`ces info` and the CLI's error contract, run as a real process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

CES = [sys.executable, "-m", "crossearth_sar.crossearth_cli.main"]


def ces(*args, cwd=None):
    return subprocess.run(CES + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def test_version_and_help():
    from crossearth_sar.version import __version__

    r = ces("--version")
    assert r.returncode == 0 and __version__ in r.stdout
    r = ces("--help")
    assert r.returncode == 0 and "info" in r.stdout


def test_info_json_on_demo_scene(repo_root):
    r = ces("info", "--json", repo_root / "examples" / "Spain_7370579_S1Hand.tif")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    for key in ("width", "height", "count", "dtype", "crs", "pixel_size_m", "domain",
                "nodata_fraction", "bands"):
        assert key in info
    assert (info["width"], info["height"], info["count"]) == (512, 512, 2)
    assert info["crs"] == "EPSG:4326" and info["domain"] == "db"
    assert info["bands"] == ["VV", "VH"] and info["dtype"] == "float32"
    assert all(5 < v < 15 for v in info["pixel_size_m"])


def test_info_text(repo_root):
    r = ces("info", repo_root / "examples" / "Spain_7370579_S1Hand.tif")
    assert r.returncode == 0
    assert "EPSG:4326" in r.stdout and "dualpol: VV, VH, VV-VH" in r.stdout


def _one_line_error(r, name):
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], r.stderr
    return lines[0]


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    _one_line_error(ces("info", tmp_path / "missing.tif"), "missing.tif")
    (tmp_path / "notes.txt").write_text("not a raster\n")
    assert "not a raster" in _one_line_error(ces("info", tmp_path / "notes.txt"), "notes.txt")
    _one_line_error(ces("info", tmp_path), str(tmp_path))
    p = tmp_path / "i64.tif"
    with rasterio.open(p, "w", driver="GTiff", width=4, height=4, count=1, dtype="int64") as d:
        d.write(np.ones((1, 4, 4), np.int64))
    assert "unsupported data type" in _one_line_error(ces("info", p), "i64.tif")
    p = tmp_path / "nan.tif"
    with rasterio.open(p, "w", driver="GTiff", width=4, height=4, count=1, dtype="float32",
                       crs="EPSG:32630", transform=from_origin(0, 0, 10, 10),
                       nodata=float("nan")) as d:
        d.write(np.full((1, 4, 4), np.nan, np.float32))
    assert "nodata" in _one_line_error(ces("info", p), "nan.tif")


def test_installed_console_script_and_import_names(tmp_path):
    """After install: `ces` exists, crossearth_sar.* imports, plain `core`/`train` do not."""
    ces_exe = Path(sys.executable).with_name("ces")
    assert ces_exe.exists()
    code = ("import importlib.util as u, crossearth_sar.core.scene.sar_io;"
            "print(u.find_spec('core') is None and u.find_spec('train') is None)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.stdout.strip() == "True", r.stderr
