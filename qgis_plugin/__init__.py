"""QGIS Processing provider: builds a ``ces`` command line, runs it, reports. No torch."""
