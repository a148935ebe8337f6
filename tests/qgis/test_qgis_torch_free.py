"""The process boundary of the QGIS plugin, checked by importing it: every module of
qgis_plugin/ (each ``*.py`` of the folder, as ``crossearth_sar.qgis_plugin.NAME``), imported
in a fresh Python of this environment with QGIS's bindings and its processing plugin on the
path, leaves no torch, rasterio or geopandas in ``sys.modules`` (the provider runs ``ces`` as
a child process instead); and finding the engine, as every algorithm run does, never loads
the engine installer."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("qgis.core")

from _helpers_qgis import QGIS_PYTHON_PLUGINS, REPO  # noqa: E402

pytestmark = pytest.mark.qgis

HEAVY = ("torch", "rasterio", "geopandas")   # what QGIS's Python must never load for the plugin
PACKAGE = "crossearth_sar.qgis_plugin"

# Imports each module named on the command line in turn; a finder first on sys.meta_path
# records, for the first import of each heavy package, the files of this repository that were
# importing at that moment (the chain that pulled it in). Prints one JSON line.
IMPORT_ALL = r"""
import importlib, json, sys, traceback

package, plugins, repo, heavy = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")
names = sys.argv[5:]
sys.path.append(plugins)
chains = {}


class Recorder:
    def find_spec(self, fullname, path=None, target=None):
        top = fullname.split(".")[0]
        if top in heavy and top not in chains:
            chains[top] = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()
                           if f.filename.startswith(repo)]
        return None


sys.meta_path.insert(0, Recorder())
report = {"imported": [], "first": {}, "chains": chains}
for name in names:
    importlib.import_module(f"{package}.{name}")
    report["imported"].append(name)
    for top in heavy:
        if top in sys.modules and top not in report["first"]:
            report["first"][top] = name
report["loaded"] = [top for top in heavy if top in sys.modules]
print(json.dumps(report))
"""

# Finds the engine as an algorithm run does (ces_process.resolve_ces with no setting, in an
# empty engines folder), then says which engine modules are loaded.
FIND_ENGINE = r"""
import json, sys

sys.path.append(sys.argv[1])
from qgis.core import QgsProcessingException

from crossearth_sar.qgis_plugin import ces_process

try:
    ces_process.resolve_ces("")
except QgsProcessingException:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.startswith("crossearth_sar.qgis_plugin.engine_"))))
"""


def _plugin_modules() -> list[str]:
    """The modules of qgis_plugin/, found by listing the folder."""
    return sorted(p.stem for p in (REPO / "qgis_plugin").glob("*.py") if p.stem != "__init__")


def _python(code: str, *args: str, env: dict | None = None) -> str:
    """Run ``code`` in a fresh Python of this environment; its standard output (it must succeed)."""
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "QT_QPA_PLATFORM": "offscreen", **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_importing_every_plugin_module_loads_no_torch():
    names = _plugin_modules()
    assert {"ces_process", "engine_lookup", "engine_installer", "provider", "plugin"} <= set(names)
    report = json.loads(_python(IMPORT_ALL, PACKAGE, QGIS_PYTHON_PLUGINS, str(REPO), ",".join(HEAVY),
                                *names))
    assert report["imported"] == names
    assert report["loaded"] == [], (
        "the plugin loads " + ", ".join(
            f"{top} (first seen after importing {PACKAGE}.{report['first'][top]}; imported from "
            f"{' <- '.join(reversed(report['chains'].get(top, [])))})" for top in report["loaded"]))


def test_finding_the_engine_never_loads_the_installer(tmp_path):
    loaded = json.loads(_python(FIND_ENGINE, QGIS_PYTHON_PLUGINS,
                                env={"CES_ENGINE_HOME": str(tmp_path / "engines"), "CES_EXECUTABLE": "",
                                     "PATH": str(tmp_path)}))
    assert loaded == [f"{PACKAGE}.engine_lookup"], loaded
