"""One event, "an engine setup succeeded", from wherever it happens to whoever shows state.

The plugin's message-bar invitation ("needs its engine") listens, and goes away when either
setup path succeeds: the Plugins-menu task (plugin.py) or the Processing algorithm
(engine_algorithm.py), which runs in a worker thread. Listeners are always called in the
thread of the Qt application (the GUI thread): :func:`announce_engine_ready` queues the call
through a signal of an object that lives there, so they may touch widgets.
"""
from __future__ import annotations

from typing import Callable

from qgis.PyQt.QtCore import QCoreApplication, QObject, pyqtSignal


class _EngineEvents(QObject):
    ready = pyqtSignal(str)          # the engine folder


_events: _EngineEvents | None = None


def _instance() -> _EngineEvents:
    """The one event object, created in (and moved to) the application's thread."""
    global _events
    if _events is None:
        _events = _EngineEvents()
        app = QCoreApplication.instance()
        if app is not None:
            _events.moveToThread(app.thread())
    return _events


def on_engine_ready(listener: Callable[[str], None]) -> Callable[[], None]:
    """Call ``listener(engine_folder)`` in the GUI thread after each successful setup;
    returns a function that stops it (for the plugin's unload)."""
    events = _instance()
    events.ready.connect(listener)

    def stop() -> None:
        try:
            events.ready.disconnect(listener)
        except (TypeError, RuntimeError):   # already disconnected
            pass
    return stop


def announce_engine_ready(engine_folder: str) -> None:
    """Tell the listeners, from any thread, that an engine is ready in ``engine_folder``."""
    _instance().ready.emit(str(engine_folder))
