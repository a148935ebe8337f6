"""The QGIS plugin object: registers the CrossEarth-SAR Processing provider and, in the
desktop, the Plugins-menu action "Set up CrossEarth-SAR engine" (engine_installer.py, run as a
QgsTask with progress and Cancel in QGIS's task bar)."""
from __future__ import annotations

from qgis.core import QgsApplication

from .provider import CrossEarthSARProvider

MENU = "&CrossEarth-SAR"


class CrossEarthSARPlugin:
    """Created by ``classFactory(iface)``; QGIS calls initProcessing/initGui/unload."""

    def __init__(self, iface=None):
        self.iface = iface
        self.provider: CrossEarthSARProvider | None = None
        self.action = None
        self.task = None
        self.invitation = None
        self._stop_listening = None

    def initProcessing(self) -> None:  # noqa: N802 (QGIS's name)
        """Register the provider (also called by qgis_process, which has no GUI)."""
        if self.provider is None:
            self.provider = CrossEarthSARProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()
        if self.iface is None:
            return
        from qgis.PyQt.QtGui import QIcon
        from qgis.PyQt.QtWidgets import QAction

        from .algorithm_base import ICON_PATH

        self.action = QAction(QIcon(ICON_PATH), "Set up CrossEarth-SAR engine…",
                              self.iface.mainWindow())
        self.action.triggered.connect(self.setup_engine)
        self.iface.addPluginToMenu(MENU, self.action)
        from .engine_events import on_engine_ready
        self._stop_listening = on_engine_ready(self.engine_ready)
        self.invite_engine_setup()

    def invite_engine_setup(self) -> bool:
        """When no engine is found, say so in QGIS's message bar with a "Set up engine…"
        button, right after the plugin is installed or QGIS starts (not only once an
        algorithm is opened). True when the invitation was shown."""
        from qgis.PyQt.QtWidgets import QPushButton

        from .algorithm_base import configured_ces
        from .ces_process import resolve_ces

        try:
            resolve_ces(configured_ces())
            return False
        except Exception:  # noqa: BLE001 (no engine, or one that cannot be used)
            pass
        from qgis.core import Qgis

        bar = self.iface.messageBar()
        message = bar.createMessage(
            "CrossEarth-SAR", "needs its engine (PyTorch in an environment of its own, about "
            "1.4 GB, a few minutes) before its algorithms can run.")
        button = QPushButton("Set up engine…", message)
        button.clicked.connect(lambda *_: self.setup_engine())
        message.layout().addWidget(button)
        bar.pushWidget(message, Qgis.Info, 0)
        self.invitation = message
        return True

    def engine_ready(self, engine_folder: str = "") -> None:
        """A setup succeeded (menu task or Processing algorithm): the invitation goes away."""
        if self.invitation is None or self.iface is None:
            return
        try:
            self.iface.messageBar().popWidget(self.invitation)
        except RuntimeError:   # the user closed it already (Qt deleted the widget)
            pass
        self.invitation = None

    def setup_engine(self) -> None:
        """Say what will be installed where, then build the engine in a background task."""
        from qgis.PyQt.QtWidgets import QMessageBox

        from ..version import __version__
        from .engine_installer import DOWNLOAD_MB, ENGINE_SIZE_MB, EngineInstaller, make_setup_task
        from .engine_lookup import configured_engines_root
        from .engine_plan import detect_backend

        root = configured_engines_root()
        backend = detect_backend()
        answer = QMessageBox.question(
            self.iface.mainWindow(), "Set up CrossEarth-SAR engine",
            f"This installs CrossEarth-SAR {__version__} with PyTorch ({backend}) and GDAL in "
            f"its own Python environment in\n{root}\n(a download of about "
            f"{DOWNLOAD_MB.get(backend)} MB, {ENGINE_SIZE_MB.get(backend)} MB on disk; a few "
            "minutes). It runs in the background: follow it in QGIS's task "
            "bar, where you can also cancel it.\n\nFor a CPU-only engine, an offline setup "
            "from a wheel folder, or another folder, use the Processing algorithm "
            "'Set up CrossEarth-SAR engine' instead.")
        if answer != QMessageBox.Yes:
            return
        self.task = make_setup_task(EngineInstaller(root=root, backend=backend), self._setup_done)
        QgsApplication.taskManager().addTask(self.task)

    def _setup_done(self, engine, error) -> None:
        from qgis.core import Qgis
        from qgis.PyQt.QtWidgets import QMessageBox

        from .engine_events import announce_engine_ready
        from .engine_installer import doctor_summary

        self.task = None
        if engine is not None:
            announce_engine_ready(str(engine.folder))
            QMessageBox.information(
                self.iface.mainWindow(), "CrossEarth-SAR engine ready",
                f"The engine is installed in {engine.folder}.\n\n"
                f"{doctor_summary(engine.info.get('doctor') or {}, engine.backend)}.\n\nThe CrossEarth-SAR "
                "algorithms of the Processing Toolbox use it from now on.")
        elif error is not None and error.kind == "canceled":
            self.iface.messageBar().pushMessage("CrossEarth-SAR", str(error), Qgis.Info, 8)
        else:
            QMessageBox.warning(self.iface.mainWindow(), "CrossEarth-SAR engine setup failed",
                                str(error))

    def unload(self) -> None:
        if self._stop_listening is not None:
            self._stop_listening()
            self._stop_listening = None
        if self.action is not None and self.iface is not None:
            self.iface.removePluginMenu(MENU, self.action)
            self.action = None
        if self.provider is not None:
            try:
                QgsApplication.processingRegistry().removeProvider(self.provider)
            except RuntimeError:  # already deleted by QGIS (e.g. at exit)
                pass
            self.provider = None
