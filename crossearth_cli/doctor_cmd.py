"""``ces doctor [--json]``: is this installation able to segment? (the engine check of the
QGIS plugin's setup, and a first thing to run after installing).

Reports the versions of CrossEarth-SAR, Python, torch, GDAL (through rasterio), whether CUDA
is available and on which device, whether the default model loads and segments a 64 x 64
synthetic tile end to end (GeoTIFF in, GeoPackage out, in a temporary folder), and where the
installed packages differ from the engine's lock (qgis_plugin/engine.lock, the versions a
QGIS engine setup installs: docs/contracts.md §7). ``--json`` prints one JSON object on
stdout::

    {"ok": true, "version": "...", "python": "3.11.2", "executable": "...",
     "torch": "2.13.0+cpu", "gdal": "3.9.3", "rasterio": "1.4.3",
     "cuda": {"available": false, "device": null},
     "model": {"path": "...", "loads": true, "segments": true, "classes": ["background", ...],
               "seconds": 1.2},
     "lock": {"path": ".../engine.lock", "torch": "2.13.0", "packages": 34, "matches": false,
              "differences": [{"name": "numpy", "installed": "1.26.4", "locked": "2.4.6"}]},
     "problems": []}

``ok`` is true when every check passed; each failed check adds one line to ``problems``.
A difference from the lock is reported (``lock``; ``installed`` null: not installed) but is
no problem: an installation made without the lock (pip, a development checkout) can segment.
``lock`` is null when the lock cannot be read. Exit status 0 when ok, 1 otherwise.
"""
from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import click

from ..core.errors import one_line
from ..version import __version__

TILE = 64   # px, the synthetic test tile


def _synthetic_tile(path: Path) -> Path:
    """A 64 x 64 float32 dB scene (EPSG:32630, 10 m): a dark water band across bright land."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    db = np.full((TILE, TILE), -8.0) + rng.normal(0.0, 1.5, (TILE, TILE))
    db[24:40] = -22.0 + rng.normal(0.0, 1.0, (16, TILE))
    with rasterio.open(path, "w", driver="GTiff", width=TILE, height=TILE, count=1,
                       dtype="float32", crs="EPSG:32630", nodata=float("nan"),
                       transform=from_origin(500000, 4500000, 10, 10)) as dst:
        dst.write(db.astype("float32"), 1)
        dst.set_band_description(1, "VV")
    return path


def _check_model(report: dict, device: str) -> None:
    """Load the default model and segment the synthetic tile; fills report["model"]."""
    from .segment_cmd import default_model_path

    model = {"path": str(default_model_path()), "loads": False, "segments": False,
             "classes": [], "seconds": None}
    report["model"] = model
    if not default_model_path().is_file():
        report["problems"].append(f"no default model is installed ({model['path']} is missing)")
        return
    t0 = time.perf_counter()
    try:
        from ..core.inference import pipeline
        from ..core.models import checkpoints

        net = checkpoints.load(default_model_path(), map_location="cpu")
        model["loads"] = True
        model["classes"] = [str(c.get("name")) for c in getattr(net, "classes", [])]
        with tempfile.TemporaryDirectory(prefix="ces-doctor-") as tmp:
            scene = _synthetic_tile(Path(tmp) / "tile.tif")
            result = pipeline.segment_scene(scene, net, Path(tmp) / "tile.gpkg", tile=TILE,
                                            overlap=0, batch=1, device=device)
        model["segments"] = result["polygons"] > 0
        if not model["segments"]:
            report["problems"].append("the default model segmented the test tile into nothing")
    except Exception as e:  # a broken installation: report it, do not crash
        stage = "segment the test tile" if model["loads"] else "load"
        report["problems"].append(f"the default model does not {stage}: "
                                  f"{type(e).__name__}: {one_line(e)}")
    model["seconds"] = round(time.perf_counter() - t0, 2)


def _check_lock() -> dict | None:
    """This Python's packages against the engine's lock (``lock`` of the report)."""
    from ..qgis_plugin import engine_lock

    try:
        lock = engine_lock.read_lock()
    except (OSError, ValueError):
        return None
    environment = engine_lock.target_environment()
    differences = engine_lock.differences(lock, engine_lock.installed_versions(), environment)
    return {"path": str(lock.path), "torch": lock.torch,
            "packages": len(lock.applicable(environment)) + 1, "matches": not differences,
            "differences": differences}


def doctor_report(device: str = "auto") -> dict:
    """The report described in the module docstring."""
    report: dict = {"ok": False, "version": __version__, "python": platform.python_version(),
                    "executable": sys.executable, "torch": None, "gdal": None, "rasterio": None,
                    "cuda": {"available": False, "device": None}, "model": None, "lock": None,
                    "problems": []}
    try:
        import rasterio

        report["rasterio"] = rasterio.__version__
        report["gdal"] = rasterio.__gdal_version__
    except Exception as e:  # noqa: BLE001
        report["problems"].append(f"rasterio/GDAL cannot be imported: {type(e).__name__}: {e}")
    try:
        import torch

        report["torch"] = torch.__version__
        if torch.cuda.is_available():
            report["cuda"] = {"available": True, "device": torch.cuda.get_device_name(0)}
    except Exception as e:  # noqa: BLE001
        report["problems"].append(f"torch cannot be imported: {type(e).__name__}: {e}")
    if not report["problems"]:
        _check_model(report, device)
    report["lock"] = _check_lock()
    report["ok"] = not report["problems"]
    return report


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option("--device", default="auto", show_default=True,
              help="Device of the test segmentation: auto, cpu, cuda or cuda:N.")
def doctor(as_json: bool, device: str) -> None:
    """Check that this installation can segment: versions of CrossEarth-SAR, torch and GDAL,
    CUDA, and the default model segmenting a small synthetic tile."""
    report = doctor_report(device)
    if as_json:
        click.echo(json.dumps(report))
    else:
        cuda = report["cuda"]
        click.echo(f"CrossEarth-SAR {report['version']} on Python {report['python']} "
                   f"({report['executable']})")
        click.echo(f"torch {report['torch']}, GDAL {report['gdal']} (rasterio {report['rasterio']})")
        click.echo(f"CUDA: {cuda['device'] if cuda['available'] else 'not available (CPU)'}")
        model = report["model"] or {}
        if model:
            click.echo(f"default model: {model['path']}: loads {model['loads']}, segments a "
                       f"{TILE}² tile {model['segments']} ({model['seconds']} s)")
        lock = report["lock"]
        if lock is None:
            click.echo("lock: the engine's lock (engine.lock) cannot be read")
        elif lock["matches"]:
            click.echo(f"lock: the {lock['packages']} packages match {lock['path']}")
        else:
            click.echo(f"lock: {len(lock['differences'])} of {lock['packages']} packages differ "
                       f"from {lock['path']}:")
            for d in lock["differences"]:
                have = f"{d['installed']} installed" if d["installed"] else "not installed"
                click.echo(f"  {d['name']}: {have}, {d['locked']} locked")
        for problem in report["problems"]:
            click.echo(f"problem: {problem}")
        click.echo("ok" if report["ok"] else "NOT ok")
    if not report["ok"]:
        raise click.exceptions.Exit(1)
