"""The real QGIS 3.22 desktop under a virtual display (xvfb-run): the plugin installed from
the built zip into a clean profile, its Plugins-menu action present, each algorithm dialog
opened non-modally and checked (parameters, the default size fits, the help renders), one
Segment run through the dialog's Run button with the result layer styled, and one Cancel.

The checks run inside QGIS (``qgis --code``, the script below), which writes what it found
to a JSON file and exits; the test reads it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

pytest.importorskip("qgis.core")

from _helpers_qgis import (  # noqa: E402
    DEMO_SCENE,
    REPO,
    make_tiny_model,
    venv_ces,
    write_synthetic_scene,
)

pytestmark = pytest.mark.qgis

INSIDE_QGIS = r'''
import json, os, sys, time, traceback
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QPoint, QTimer
from qgis.PyQt.QtWidgets import QScrollArea, QTextBrowser, QToolButton
from qgis.utils import iface, plugins

ARGS = json.loads(os.environ["CES_GUI_TEST"])
found = {"errors": []}
QTimer.singleShot(110000, lambda: os._exit(3))   # never hang the test


def wait(condition, seconds):
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        QgsApplication.processEvents()
        time.sleep(0.02)
    return condition()


def panel(d):
    areas = [a for a in d.findChildren(QScrollArea) if a.widget() is not None and a.isVisible()]
    return areas[0]


try:
    import processing
    found["plugin_loaded"] = "crossearth_sar" in plugins
    menus = [a.text() for a in iface.pluginMenu().actions()]
    sub = [a.menu() for a in iface.pluginMenu().actions() if a.menu() is not None
           and "CrossEarth" in a.text()]
    found["menu"] = [a.text() for a in sub[0].actions()] if sub else menus
    found["dialogs"] = {}
    for name in ("segment", "descriptors", "finetune", "evaluate", "setup_engine"):
        d = processing.createAlgorithmDialog(f"crossearth_sar:{name}")
        d.show()
        QgsApplication.processEvents()
        area = panel(d)
        viewport = area.viewport()
        buttons = [b for b in area.widget().findChildren(QToolButton) if b.isVisible()]
        cut = [b.text() for b in buttons
               if b.mapTo(viewport, QPoint(b.width(), 0)).x() > viewport.width()]
        helps = [t.toPlainText() for t in d.findChildren(QTextBrowser) if t.toPlainText().strip()]
        found["dialogs"][name] = {
            "parameters": sorted(d.mainWidget().wrappers.keys()),
            "hscroll": area.horizontalScrollBar().maximum(), "buttons": len(buttons),
            "cut": cut, "size": [d.width(), d.height()],
            "help_blocks": len([b for b in helps[0].split("\n") if b.strip()]) if helps else 0}
        d.close()

    # Segment through the Run button
    scene = QgsRasterLayer(ARGS["scene"], "scene")
    QgsProject.instance().addMapLayer(scene)
    d = processing.createAlgorithmDialog("crossearth_sar:segment", {
        "INPUT": scene.id(), "MODEL": ARGS["model"], "TILE": 256, "OVERLAP": 32, "DEVICE": 1,
        "OUTPUT": ARGS["segment_out"]})
    d.show()
    done = {}
    d.algorithmFinished.connect(lambda ok, results: done.update(ok=ok))
    d.runButton().click()
    wait(lambda: done, 60)
    found["segment"] = done
    layers = [l for l in QgsProject.instance().mapLayers().values()
              if l.source().split("|")[0] == ARGS["segment_out"]]
    found["segment_layer"] = layers[0].renderer().type() if layers else None
    d.close()

    # Cancel through the dialog's Cancel button
    d = processing.createAlgorithmDialog("crossearth_sar:descriptors", {
        "INPUT": ARGS["big_scene"], "TILE": 8, "STRIDE": 2, "OUTPUT": ARGS["cancel_out"]})
    d.show()
    done = {}
    d.algorithmFinished.connect(lambda ok, results: done.update(ok=ok))
    d.runButton().click()
    progressed = wait(lambda: done or (getattr(d, "feedback", None) is not None
                                       and d.feedback.progress() > 0), 60)
    t0 = time.monotonic()
    d.cancelButton().click()
    wait(lambda: done or not d.cancelButton().isEnabled(), 20)
    wait(lambda: QgsApplication.taskManager().countActiveTasks() == 0, 20)
    found["cancel"] = {"progressed": bool(progressed), "seconds": time.monotonic() - t0,
                       "ok": done.get("ok"), "left": os.path.exists(ARGS["cancel_out"])}
    d.close()
except Exception:
    found["errors"].append(traceback.format_exc())
with open(ARGS["report"], "w") as f:
    json.dump(found, f)
os._exit(0)
'''


def _clean_profile(root: Path, plugin_zip: Path) -> Path:
    """profiles/default with only this plugin, extracted from the zip, and enabled."""
    profile = root / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as zf:
        zf.extractall(plugins)
    (profile / "QGIS").mkdir()
    (profile / "QGIS" / "QGIS3.ini").write_text(
        "[PythonPlugins]\ncrossearth_sar=true\n[qgis]\nshowTips=false\ncheckVersion=false\n")
    return root


@pytest.mark.skipif(shutil.which("xvfb-run") is None or shutil.which("qgis") is None,
                    reason="needs the QGIS desktop and xvfb-run (make qgis installs both)")
def test_desktop_dialogs_run_and_cancel(tmp_path):
    plugin_zip = tmp_path / "crossearth_sar.zip"
    done = subprocess.run(["/usr/bin/python3", str(REPO / "scripts" / "build_plugin.py"),
                           str(plugin_zip)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    root = _clean_profile(tmp_path / "qgis", plugin_zip)
    script = tmp_path / "inside_qgis.py"
    script.write_text(INSIDE_QGIS)
    args = {"scene": str(DEMO_SCENE), "model": str(make_tiny_model(tmp_path / "tiny.safetensors")),
            "segment_out": str(tmp_path / "landcover.gpkg"),
            "big_scene": str(write_synthetic_scene(tmp_path / "big.tif", size=1024)),
            "cancel_out": str(tmp_path / "cancel.tif"), "report": str(tmp_path / "report.json")}
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if k != "QT_QPA_PLATFORM"}
    env.update(CES_GUI_TEST=json.dumps(args), CES_EXECUTABLE=venv_ces(),
               CES_ENGINE_HOME=str(tmp_path / "engines"), XDG_RUNTIME_DIR=str(runtime))
    proc = subprocess.run(["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24", "qgis", "--nologo",
                           "--noversioncheck", "--profiles-path", str(root), "--code", str(script)],
                          env=env, capture_output=True, text=True, timeout=150)
    report_path = Path(args["report"])
    assert report_path.is_file(), proc.stdout[-2000:] + proc.stderr[-3000:]
    found = json.loads(report_path.read_text())
    assert found["errors"] == []
    assert found["plugin_loaded"] is True
    assert "Set up CrossEarth-SAR engine…" in found["menu"]
    for name, dialog in found["dialogs"].items():
        assert dialog["hscroll"] == 0 and dialog["cut"] == [], (name, dialog)
        assert dialog["buttons"] > 0 and dialog["help_blocks"] >= 3, (name, dialog)
    assert {"INPUT", "MODEL", "OUTPUT", "OUTPUT_PREVIEW"} <= set(found["dialogs"]["segment"]["parameters"])
    assert found["segment"] == {"ok": True}
    assert found["segment_layer"] == "categorizedSymbol"
    cancel = found["cancel"]
    assert cancel["progressed"] and cancel["ok"] is False and cancel["seconds"] < 5.0
    assert cancel["left"] is False
