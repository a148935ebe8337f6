"""CrossEarth-SAR: SAR scenes to land-cover polygons.

This folder is both the Python package ``crossearth_sar`` and the QGIS plugin folder.
It imports nothing heavy: QGIS calls :func:`classFactory`, which loads only the
Processing provider (no torch; the provider runs the ``ces`` command as a process).
"""
try:
    from .version import __version__  # noqa: F401
except ImportError:  # imported as a plain module, e.g. by pytest collecting the repository
    __version__ = None  # root of a clone whose folder name is not a Python name ("fresh-1")


def classFactory(iface):  # noqa: N802 (QGIS's name)
    """QGIS plugin entry point."""
    from .qgis_plugin.plugin import CrossEarthSARPlugin

    return CrossEarthSARPlugin(iface)
