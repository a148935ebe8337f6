"""The one version string of CrossEarth-SAR (package, CLI, QGIS metadata)."""
__version__ = "0.1.0"
