"""Helpers for the QGIS plugin tests (their fixtures, one headless QgsApplication per session
with Processing initialized, the provider registered and a throw-away profile, are in
tests/qgis/conftest.py): the demo pair, the ``ces`` of this environment, ``qgis_process``,
the provider's setting, a tiny model, synthetic scenes, a recording feedback, rendering.

Tests import this module after ``pytest.importorskip("qgis.core")``, so they skip only where
QGIS is absent; it imports no QGIS module at import time.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

REPO = Path(__file__).resolve().parents[1]
QGIS_PYTHON_PLUGINS = "/usr/share/qgis/python/plugins"  # Debian: home of `processing`
DEMO_SCENE = REPO / "examples" / "Spain_7370579_S1Hand.tif"
DEMO_LABELS = REPO / "examples" / "Spain_7370579_LabelHand.tif"
PROVIDER_ID = "crossearth_sar"


def venv_ces() -> Optional[str]:
    """The ``ces`` program of the environment running the tests (the one under test)."""
    here = Path(sys.executable).parent / "ces"
    if here.is_file():
        return str(here)
    return shutil.which("ces")


def qgis_process_bin() -> Optional[str]:
    """``qgis_process.bin`` (Debian's ``qgis_process`` wrapper passes an unknown flag)."""
    return shutil.which("qgis_process.bin") or shutil.which("qgis_process")


def qgis_env(config_dir: Path, extra_path: Optional[str] = None) -> dict[str, str]:
    """Environment for a headless ``qgis_process.bin`` with its own profile folder."""
    env = dict(os.environ)
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["QGIS_CUSTOM_CONFIG_PATH"] = str(config_dir)
    env.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    if extra_path:
        env["PATH"] = extra_path + os.pathsep + env.get("PATH", "")
    return env


def run_qgis_process(args: list[str], config_dir: Path, extra_path: Optional[str] = None,
                     timeout: float = 120) -> subprocess.CompletedProcess:
    exe = qgis_process_bin()
    assert exe is not None, "qgis_process.bin not found: install QGIS (make qgis)"
    return subprocess.run([exe, *args], env=qgis_env(config_dir, extra_path), text=True,
                          capture_output=True, timeout=timeout)


@contextlib.contextmanager
def ces_setting(value: Optional[str]) -> Iterator[None]:
    """Temporarily set the provider's 'ces executable' setting (in memory only)."""
    from processing.core.ProcessingConfig import ProcessingConfig

    from crossearth_sar.qgis_plugin.ces_process import SETTING_CES_EXECUTABLE

    setting = ProcessingConfig.settings[SETTING_CES_EXECUTABLE]
    old = setting.value
    setting.value = value or ""
    try:
        yield
    finally:
        setting.value = old


TINY_CLASSES = [{"name": "land", "value": 0, "color": "#33a02c"},
                {"name": "water", "value": 1, "color": "#1f78b4"}]


def make_tiny_model(path: Path) -> Path:
    """A small randomly initialized model file (``ti``, 2 experts, 1 decoder layer, 8 queries,
    classes land / water) for segment runs."""
    from crossearth_sar.core.models import checkpoints, model as model_mod

    net = model_mod.build("ti", experts=2, classes=TINY_CLASSES, dec_layers=1, num_queries=8,
                          img_size=224)
    checkpoints.save(net, path)
    return path


def write_synthetic_scene(path: Path, size: int = 1024, seed: int = 0) -> Path:
    """A synthetic float32 dB SAR scene (EPSG:32630, 10 m pixels) of size x size pixels."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    water = (np.sin(xx / 37.0) + np.cos(yy / 53.0)) > 0.6
    db = np.where(water, -22.0, -9.0) + rng.normal(0, 1.5, (size, size))
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=1,
                       dtype="float32", crs="EPSG:32630",
                       transform=from_origin(500000, 4500000, 10, 10), nodata=float("nan"),
                       tiled=True, blockxsize=256, blockysize=256) as dst:
        dst.write(db.astype("float32"), 1)
    return path


def recording_feedback(cancel_when_progress_above: Optional[float] = None):
    """A QgsProcessingFeedback that records what it is told; optionally it presses Cancel
    as soon as progress passes a value (as a user would, mid-run), and never at the bar's
    starting value, which the provider sets before the engine reports (FIRST_PERCENT)."""
    from qgis.core import QgsProcessingFeedback

    class RecordingFeedback(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.errors: list[str] = []
            self.warnings: list[str] = []
            self.texts: list[str] = []
            self.infos: list[str] = []
            self.commands: list[str] = []
            self.progress_values: list[float] = []
            self.canceled_at: Optional[float] = None
            self.progressChanged.connect(self._on_progress)

        def _on_progress(self, value: float) -> None:
            import time

            self.progress_values.append(value)
            from crossearth_sar.qgis_plugin.ces_process import FIRST_PERCENT

            if cancel_when_progress_above is not None \
                    and value > max(cancel_when_progress_above, FIRST_PERCENT) \
                    and self.canceled_at is None:
                self.canceled_at = time.monotonic()
                self.cancel()

        def reportError(self, error, fatalError=False):  # noqa: N802,N803
            self.errors.append(error)

        def pushWarning(self, warning):  # noqa: N802
            self.warnings.append(warning)

        def setProgressText(self, text):  # noqa: N802
            self.texts.append(text)

        def pushInfo(self, info):  # noqa: N802
            self.infos.append(info)

        def pushCommandInfo(self, info):  # noqa: N802
            self.commands.append(info)

    return RecordingFeedback()


def processes_mentioning(marker: str) -> list[int]:
    """Ids of live processes whose command line contains ``marker`` (Linux /proc)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode("utf-8", "replace")
            with open(f"/proc/{entry}/stat", "rb") as f:
                state = f.read().split(b")")[-1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != b"Z":
            pids.append(int(entry))
    return pids


def files_named_like(folder: Path, stem: str) -> list[Path]:
    """Files in ``folder`` whose name contains ``stem`` (outputs and their temporaries)."""
    return sorted(p for p in folder.iterdir() if stem in p.name)


def render_layer(layer, width: int, height: int) -> np.ndarray:
    """The layer drawn by QGIS's map renderer over a transparent background: [H, W, 4] RGBA."""
    from qgis.core import QgsMapRendererSequentialJob, QgsMapSettings
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor, QImage

    settings = QgsMapSettings()
    settings.setLayers([layer])
    settings.setDestinationCrs(layer.crs())
    settings.setExtent(layer.extent())
    settings.setOutputSize(QSize(width, height))
    settings.setBackgroundColor(QColor(255, 255, 255, 0))
    job = QgsMapRendererSequentialJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage().convertToFormat(QImage.Format_RGBA8888)
    bits = image.constBits()
    bits.setsize(image.byteCount())
    return np.frombuffer(bits, np.uint8).reshape(height, image.bytesPerLine() // 4, 4)[:, :width].copy()


def digitized_polygons(crs: str, rectangles: dict[str, tuple[float, float, float, float]]):
    """A memory polygon layer as an analyst digitizes it: one rectangle (x0, y0, x1, y1, in
    ``crs`` units) per class name, the name in the field 'cover'."""
    from qgis.core import QgsFeature, QgsGeometry, QgsRectangle, QgsVectorLayer

    layer = QgsVectorLayer(f"Polygon?crs={crs}&field=cover:string", "digitized", "memory")
    features = []
    for cover, (x0, y0, x1, y1) in rectangles.items():
        feature = QgsFeature(layer.fields())
        feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(x0, y0, x1, y1)))
        feature["cover"] = cover
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    return layer
