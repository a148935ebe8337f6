"""Shared test fixtures: the real data folder, small torch thread pools, one intra-op thread
for the modules that ask for it, and real QGIS (the application, the plugin and its provider,
the provider set to this environment's ``ces``, a tiny model file). Plain helpers live in
``_helpers_*.py``."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from _helpers_qgis import (
    PROVIDER_ID,
    QGIS_PYTHON_PLUGINS,
    ces_setting,
    make_tiny_model,
    venv_ces,
)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CES_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real SAR data sets (../shared/data); the test is skipped where they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(autouse=True, scope="session")
def _small_thread_pools():
    try:
        import torch

        torch.set_num_threads(min(2, os.cpu_count() or 1))
    except ImportError:
        pass
    yield


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module (``pytestmark = pytest.mark.usefixtures(
    "one_thread")``): its models are tiny, and on a busy 2-core machine a second spinning
    thread makes them many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


_SESSION_PLUGIN: list = []


@pytest.fixture(scope="session")
def qgis_app(tmp_path_factory):
    """The headless QgsApplication with Processing initialized (created once, never exited:
    exitQgis() segfaults when layers outlive it)."""
    from qgis.core import QgsApplication

    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    app = QgsApplication.instance()
    if app is None:
        # A throw-away profile, so that settings written by tests never reach a real one.
        os.environ.setdefault("QGIS_CUSTOM_CONFIG_PATH", str(tmp_path_factory.mktemp("qgis_profile")))
        # No engine set up by the plugin in the user's real data folder is used by tests.
        os.environ.setdefault("CES_ENGINE_HOME", str(tmp_path_factory.mktemp("engines")))
        app = QgsApplication([], False)
        app.initQgis()
    if QGIS_PYTHON_PLUGINS not in sys.path:
        sys.path.append(QGIS_PYTHON_PLUGINS)
    from processing.core.Processing import Processing

    Processing.initialize()
    return app


@pytest.fixture(scope="session")
def ces_plugin(qgis_app):
    """The CrossEarth-SAR plugin object, its provider registered as QGIS does: one per session
    (a second provider with the same id is never registered)."""
    from crossearth_sar.qgis_plugin.plugin import CrossEarthSARPlugin

    if not _SESSION_PLUGIN:
        plugin = CrossEarthSARPlugin(None)
        plugin.initProcessing()
        _SESSION_PLUGIN.append(plugin)
    return _SESSION_PLUGIN[0]


@pytest.fixture
def ces_provider(ces_plugin):
    """The registered provider (registered again if a test unloaded it)."""
    from qgis.core import QgsApplication

    registry = QgsApplication.processingRegistry()
    if registry.providerById(PROVIDER_ID) is None:
        ces_plugin.initProcessing()
    return registry.providerById(PROVIDER_ID)


@pytest.fixture
def with_venv_ces(ces_provider):
    """The provider set to run this environment's ``ces``."""
    ces = venv_ces()
    assert ces is not None, "the ces program is not installed in this environment (make venv)"
    with ces_setting(ces):
        yield ces


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny model file, made once per session."""
    return make_tiny_model(tmp_path_factory.mktemp("model") / "tiny.safetensors")
