"""Complex SLC rasters: Sentinel-1 SLC measurement TIFFs are CInt16, one band of
counts. CInt16 and CFloat32 / CFloat64 rasters segment through the real ``ces segment``
(amplitude by default, not calibrated: an estimated calibration), and a raster georeferenced
only by ground control points, as a real SLC swath is, is refused in one line with the way
to orthorectify it, instead of a TypeError."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.crs import CRS
from rasterio.transform import from_origin

from crossearth_sar.core.models import checkpoints
from crossearth_sar.core.scene import sar_io

from _helpers_micro import micro_model

SIZE = 96


def _slc_counts(seed: int = 0) -> np.ndarray:
    """Complex counts like an SLC burst: circular Gaussian speckle, a dark (water) band."""
    rng = np.random.default_rng(seed)
    sigma = np.full((SIZE, SIZE), 120.0)
    sigma[:, 30:50] = 12.0                       # 20 dB darker: calm water
    z = (rng.normal(size=(SIZE, SIZE)) + 1j * rng.normal(size=(SIZE, SIZE))) * sigma
    return z


def _write(path, dtype, gcps=False):
    profile = dict(driver="GTiff", width=SIZE, height=SIZE, count=1, dtype=dtype, tiled=False)
    if not gcps:
        profile.update(crs="EPSG:32630", transform=from_origin(500000, 4500000, 10, 10))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(_slc_counts()[None].astype("complex64" if dtype == "complex_int16" else dtype))
        dst.set_band_description(1, "VV")
        if gcps:
            pts = [GroundControlPoint(r, c, -6.0 + c * 1e-4, 40.0 - r * 1e-4)
                   for r in (0, SIZE) for c in (0, SIZE)]
            dst.gcps = (pts, CRS.from_epsg(4326))
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "micro.safetensors"
    checkpoints.save(micro_model([{"name": "background", "value": 0, "color": "#d9d9d9"},
                                  {"name": "water", "value": 1, "color": "#1f78b4"}]), path)
    return path


def _cint32(path):
    """A CInt32 copy of a CFloat32 scene, written by GDAL itself (rasterio cannot)."""
    gdal = pytest.importorskip("osgeo.gdal")
    source = _write(path.with_name("cfloat32_source.tif"), "complex64")
    gdal.Translate(str(path), str(source), outputType=gdal.GDT_CInt32)
    return path


@pytest.mark.parametrize("dtype", ["complex_int16", "CInt32", "complex64", "complex128"])
def test_complex_rasters_segment(tmp_path, model_file, dtype):
    if dtype == "CInt32":
        scene = _cint32(tmp_path / "slc_cint32.tif")
    else:
        scene = _write(tmp_path / f"slc_{dtype}.tif", dtype)
        with rasterio.open(scene) as src:
            assert src.dtypes[0] == dtype
    with sar_io.open_scene(scene) as s:
        assert s.domain == "complex" and not s.calibrated
        assert "complex SLC counts" in s.calibration_reason
        w = s.read_window(rasterio.windows.Window(0, 0, SIZE, SIZE))
    # amplitude by default: the dark band reads darker than the rest
    assert w.x[0][:, 30:50].mean() < w.x[0][:, 60:].mean() - 0.1
    out = tmp_path / f"{dtype}.gpkg"
    r = subprocess.run([sys.executable, "-m", "crossearth_sar.crossearth_cli.main", "segment",
                        str(scene), "-o", str(out), "--model", str(model_file), "--tile", "96",
                        "--overlap", "0", "--progress", "json"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    done = json.loads(r.stdout.strip().splitlines()[-1])
    assert done["event"] == "done" and out.is_file()


def test_gcp_only_slc_is_refused_in_one_line(tmp_path, model_file):
    scene = _write(tmp_path / "swath.tif", "complex_int16", gcps=True)
    r = subprocess.run([sys.executable, "-m", "crossearth_sar.crossearth_cli.main", "segment",
                        str(scene), "-o", str(tmp_path / "o.gpkg"), "--model", str(model_file)],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "ground control points" in r.stderr
    assert "gdalwarp" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o.gpkg").exists()
