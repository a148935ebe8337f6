"""The plugin as QGIS users install it: the zip of `make plugin` in a clean profile, and
`qgis_process.bin` (QGIS's command-line Processing runner) running its algorithms."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("qgis.core")

from _helpers_qgis import (  # noqa: E402
    DEMO_SCENE,
    REPO,
    run_qgis_process,
    venv_ces,
    write_synthetic_scene,
)

pytestmark = pytest.mark.qgis

SYSTEM_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
EXCLUDED_PARTS = {"__pycache__", "tests", "benchmarks", ".git", ".venv", "docs", ".ci", "scripts"}


@pytest.fixture(scope="module")
def plugin_zip(tmp_path_factory) -> Path:
    """crossearth_sar.zip built the way `make plugin` builds it."""
    out = tmp_path_factory.mktemp("zip") / "crossearth_sar.zip"
    done = subprocess.run([SYSTEM_PYTHON, str(REPO / "scripts" / "build_plugin.py"), str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """A folder for QGIS_PLUGINPATH holding this working tree as the plugin `crossearth_sar`."""
    folder = tmp_path_factory.mktemp("plugins")
    (folder / "crossearth_sar").symlink_to(REPO, target_is_directory=True)
    return folder


def _enable(config: Path, plugin_path: Path | None = None) -> None:
    extra = {"QGIS_PLUGINPATH": str(plugin_path)} if plugin_path else {}
    done = _qgis_process(["plugins", "enable", "crossearth_sar"], config, **extra)
    assert done.returncode == 0, done.stdout + done.stderr


def _qgis_process(args, config: Path, path_prefix: str | None = None, timeout: float = 180,
                  **env):
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return run_qgis_process(args, config, extra_path=path_prefix, timeout=timeout)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_zip_has_one_top_folder_and_no_development_files(plugin_zip):
    with zipfile.ZipFile(plugin_zip) as zf:
        names = zf.namelist()
    assert names and all(n.startswith("crossearth_sar/") for n in names)
    for required in ("metadata.txt", "__init__.py", "LICENSE", "icon.png", "version.py",
                     "qgis_plugin/plugin.py", "qgis_plugin/provider.py",
                     "qgis_plugin/ces_process.py", "qgis_plugin/icon.svg"):
        assert f"crossearth_sar/{required}" in names, required
    for name in names:
        parts = set(Path(name).parts[1:])
        assert not parts & EXCLUDED_PARTS, name
        assert not name.endswith((".pyc", ".zip")) and ".egg-info" not in name, name


def test_zip_installs_into_a_clean_profile_and_the_provider_loads(plugin_zip, tmp_path):
    config = tmp_path / "qgis_config"
    plugins = config / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as zf:
        zf.extractall(plugins)
    assert (plugins / "crossearth_sar" / "metadata.txt").is_file()

    _enable(config)
    listed = _qgis_process(["list"], config)
    assert listed.returncode == 0, listed.stderr
    for alg in ("segment", "descriptors", "finetune", "evaluate", "setup_engine"):
        assert f"crossearth_sar:{alg}" in listed.stdout
    helped = _qgis_process(["help", "crossearth_sar:segment"], config)
    assert helped.returncode == 0 and "SAR scene" in helped.stdout


def test_qgis_process_runs_descriptors_with_ces_from_the_environment(plugin_path, tmp_path):
    """The plugin on QGIS_PLUGINPATH; `ces` named by the CES_EXECUTABLE variable."""
    ces = venv_ces()
    assert ces is not None, "the ces program is not installed in this environment"
    config = tmp_path / "qgis_config"
    _enable(config, plugin_path)
    out = tmp_path / "descriptors.tif"
    done = _qgis_process(
        ["--json", "run", "crossearth_sar:descriptors", "--",
         f"INPUT={DEMO_SCENE}", "TILE=128", f"OUTPUT={out}"],
        config, QGIS_PLUGINPATH=str(plugin_path), CES_EXECUTABLE=ces)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(done.stdout)["results"]
    assert results["OUTPUT"] == str(out) and out.is_file()


def test_qgis_process_runs_segment(plugin_path, tiny_model, tmp_path):
    """`qgis_process.bin run crossearth_sar:segment ...` with `ces` found on PATH, on a small
    synthetic scene (the demo scene runs in-process in test_qgis_plugin.py)."""
    ces = venv_ces()
    scene = write_synthetic_scene(tmp_path / "small_scene.tif", size=128)
    config = tmp_path / "qgis_config"
    _enable(config, plugin_path)
    out = tmp_path / "landcover.gpkg"
    done = _qgis_process(
        ["run", "crossearth_sar:segment", "--", f"INPUT={scene}", f"MODEL={tiny_model}",
         "TILE=128", "OVERLAP=0", "DEVICE=1", f"OUTPUT={out}"],
        config, path_prefix=str(Path(ces).parent), QGIS_PLUGINPATH=str(plugin_path),
        CES_EXECUTABLE="")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert out.is_file()
    assert "OUTPUT:\t" + str(out) in done.stdout or str(out) in done.stdout


def test_finetuned_model_outlives_qgis_and_segments_after_a_restart(plugin_path, tiny_model,
                                                                      tmp_path):
    """A fine-tuned model outlives QGIS: fine-tune with the output left as a temporary file,
    close QGIS (the process ends and Processing's temporary folder goes), start it again,
    segment with the model. The model is kept in the models folder beside the engines, named
    after the labels."""
    import geopandas as gpd
    from shapely.geometry import box

    ces = venv_ces()
    scene = write_synthetic_scene(tmp_path / "small_scene.tif", size=128)
    polygons = tmp_path / "my_labels.gpkg"
    x0, y0 = 500000, 4500000 - 1280
    gpd.GeoDataFrame({"cover": ["water", "land"]},
                     geometry=[box(x0, y0, x0 + 600, y0 + 600),
                               box(x0 + 700, y0 + 700, x0 + 1200, y0 + 1200)],
                     crs="EPSG:32630").to_file(polygons, driver="GPKG")
    home = tmp_path / "CrossEarth-SAR" / "engines"
    config = tmp_path / "qgis_config"
    _enable(config, plugin_path)
    env = dict(path_prefix=str(Path(ces).parent), QGIS_PLUGINPATH=str(plugin_path),
               CES_EXECUTABLE="", CES_ENGINE_HOME=str(home))
    done = _qgis_process(
        ["run", "crossearth_sar:finetune", "--", f"INPUT={scene}", f"LABELS={polygons}",
         "CLASS_FIELD=cover", f"BASE={tiny_model}", "ITERATIONS=1", "BATCH=1", "TILE=64",
         "DEVICE=1", "OUTPUT=TEMPORARY_OUTPUT"], config, **env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    models = sorted((tmp_path / "CrossEarth-SAR" / "models").glob("*.safetensors"))
    assert len(models) == 1 and models[0].name.startswith("my_labels_"), models
    assert not list(models[0].parent.glob("*.ckpt"))        # a finished run keeps no checkpoint
    out = tmp_path / "after_restart.gpkg"
    done = _qgis_process(
        ["run", "crossearth_sar:segment", "--", f"INPUT={scene}", f"MODEL={models[0]}",
         "TILE=128", "OVERLAP=0", "DEVICE=1", f"OUTPUT={out}"], config, **env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert out.is_file()


def test_build_script_refuses_a_version_mismatch(tmp_path):
    """metadata.txt's version must equal version.py's (the build checks before zipping)."""
    root = tmp_path / "tree"
    root.mkdir()
    for name in ("metadata.txt", "LICENSE", "icon.png", "__init__.py"):
        shutil.copy(REPO / name, root / name)
    (root / "version.py").write_text('__version__ = "9.9.9"\n')
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import build_plugin
    finally:
        sys.path.remove(str(REPO / "scripts"))
    with pytest.raises(SystemExit, match="differs from version.py"):
        build_plugin.build(tmp_path / "x.zip", root=root)
    assert not (tmp_path / "x.zip").exists()
