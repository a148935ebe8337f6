"""The "Set up CrossEarth-SAR engine" Processing algorithm (also for ``qgis_process``): builds
the engine of engine_installer.py with the dialog's progress bar, log and Cancel."""
from __future__ import annotations

import os
from pathlib import Path

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFolder,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsSettings,
)

from ..version import __version__
from .algorithm_base import CesAlgorithm
from .engine_events import announce_engine_ready
from .engine_installer import DOWNLOAD_MB, ENGINE_SIZE_MB, EngineInstaller, doctor_summary
from .engine_lookup import SETTING_ENGINE_HOME, configured_engines_root, engines_root
from .engine_plan import BACKEND_CHOICES, CUDA_BACKEND, EngineError, choose_backend

BACKEND_OPTIONS = ["auto (CUDA when nvidia-smi finds a GPU)", "cpu", f"cuda ({CUDA_BACKEND})"]

HELP = f"""<p>Installs the CrossEarth-SAR engine that runs the other algorithms: its own Python
environment with CrossEarth-SAR {__version__}, PyTorch and GDAL, in a folder of your user
account (not inside QGIS, not in the plugin folder, so plugin updates keep it). No terminal
is needed.</p>
<p>It needs a Python 3.10 or newer on this computer and downloads about
{DOWNLOAD_MB['cpu']} MB (CPU; about {DOWNLOAD_MB[CUDA_BACKEND]} MB for CUDA), which take about
{ENGINE_SIZE_MB['cpu']} MB on disk (CPU) or {ENGINE_SIZE_MB[CUDA_BACKEND]} MB (CUDA); a few
minutes. At the end it checks the engine: the versions, the GPU, and the default model
segmenting a small test tile.</p>
<p><b>Backend</b>: <i>auto</i> installs the CUDA build of PyTorch when an NVIDIA GPU is
found, else the CPU build.</p>
<p>It installs the exact versions of the engine's lock (engine.lock in the plugin folder) and
checks the hash of every file against it; a file that differs is refused.</p>
<p><b>Wheel folder</b> (optional): install offline from a folder of wheel files made on a
connected computer, with no download at all. To make one, in a copy of the CrossEarth-SAR
repository: <code>python3 scripts/engine_wheels.py wheels</code>. It downloads the files of
the same lock (hash-checked) and PyTorch, for the computer and Python it runs on; for another
one add <code>--python-version 3.12</code> (that computer's Python) and <code>--platform</code>
<code>win_amd64</code>, <code>macosx_14_0_arm64</code> or <code>manylinux_2_28_x86_64</code>,
and <code>--backend cuda</code> for the CUDA build of PyTorch. Copy the folder and choose it
here.</p>
<p><b>Engine folder</b> (optional): where engines are kept (default: your user data folder,
CrossEarth-SAR/engines); a folder given here is remembered for the other algorithms.</p>
<p>Cancel stops the setup and leaves nothing half-installed; the log of each setup is kept in
the engine folder (install.log).</p>
"""


class EngineSetupAlgorithm(CesAlgorithm):
    """Runs engine_installer.EngineInstaller; outputs the engine folder and the check report."""
    NAME = "setup_engine"
    DISPLAY_NAME = "Set up CrossEarth-SAR engine"
    SHORT = "Installs the engine (PyTorch in a Python environment of its own) that the other algorithms run, without a terminal."
    README_SECTION = "Set up CrossEarth-SAR engine"
    GROUP = "Setup"
    GROUP_ID = "setup"
    HELP = HELP
    TAGS = ("install", "engine", "setup", "pytorch", "environment", "crossearth")
    BACKEND, WHEELS, FOLDER, REPLACE = "BACKEND", "WHEELS", "FOLDER", "REPLACE"
    ENGINE, CHECK = "ENGINE", "CHECK"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterEnum(
            self.BACKEND, self.tr("Backend"), options=BACKEND_OPTIONS, defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(
            self.WHEELS, self.tr("Wheel folder (offline)"), behavior=QgsProcessingParameterFile.Folder,
            optional=True))
        self.add_advanced(
            QgsProcessingParameterFile(self.FOLDER, self.tr("Engine folder"),
                                       behavior=QgsProcessingParameterFile.Folder, optional=True),
            QgsProcessingParameterBoolean(self.REPLACE, self.tr("Reinstall if present"), defaultValue=False))
        self.addOutput(QgsProcessingOutputFolder(self.ENGINE, self.tr("Engine folder")))
        self.addOutput(QgsProcessingOutputString(self.CHECK, self.tr("Engine check")))

    def canExecute(self):  # noqa: N802 (always: it is what sets the engine up)
        return True, ""

    def checkParameterValues(self, parameters, context):  # noqa: N802
        wheels = (self.parameterAsFile(parameters, self.WHEELS, context) or "").strip()
        if wheels and not os.path.isdir(wheels):
            return False, f"Wheel folder: {wheels} is not a folder."
        return super().checkParameterValues(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        folder = (self.parameterAsFile(parameters, self.FOLDER, context) or "").strip()
        root = engines_root(folder) if folder else configured_engines_root()
        wheels = (self.parameterAsFile(parameters, self.WHEELS, context) or "").strip()
        choice = self.parameterAsEnum(parameters, self.BACKEND, context)
        backend = choose_backend(BACKEND_CHOICES[choice])
        feedback.pushInfo(f"Engine {__version__} ({backend}) in {root}")
        state = {"text": None}

        def progress(percent: float, text: str) -> None:
            if text != state["text"]:
                state["text"] = text
                feedback.setProgressText(text)
            feedback.setProgress(percent)

        installer = EngineInstaller(root=root, backend=backend,
                                    wheels=Path(wheels) if wheels else None,
                                    progress=progress, canceled=feedback.isCanceled,
                                    log=feedback.pushConsoleInfo)
        try:
            engine = installer.run(replace=self.parameterAsBool(parameters, self.REPLACE, context))
        except EngineError as e:
            raise QgsProcessingException(str(e)) from None
        if folder:   # remembered, so that the provider finds the engine there
            QgsSettings().setValue(SETTING_ENGINE_HOME, str(root))
        summary = doctor_summary(engine.info.get("doctor") or {}, engine.backend)
        feedback.pushInfo(f"Engine ready in {engine.folder}: {summary}")
        announce_engine_ready(str(engine.folder))   # the plugin's "needs its engine" bar goes
        return {self.ENGINE: str(engine.folder), self.CHECK: summary}
