"""Fixtures of the QGIS plugin tests, in real QGIS 3.22: the headless application with
Processing initialized (a throw-away profile and engines folder), the plugin and its
provider registered once per session, and the provider set to this environment's ``ces``.
The tiny model file (``tiny_model``) is shared with tests outside this folder and stays in
tests/conftest.py; plain helpers live in tests/_helpers_qgis.py."""
from __future__ import annotations

import os
import sys

import pytest

from _helpers_qgis import PROVIDER_ID, QGIS_PYTHON_PLUGINS, ces_setting, venv_ces

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
