"""The Earth-Adapter's options and their defaults (core/models/adapter.py), readable without torch:
the CLI's option defaults and the benchmark suites take them from here.

``DEFAULTS = {"kind": "earth-adapter", "rank": r, "cutoff": c}``: the bottleneck width r of
each MLP, and the low-pass side c as a fraction of the token grid.
"""
from __future__ import annotations

KIND = "earth-adapter"
DEFAULTS = {"kind": KIND, "rank": 64, "cutoff": 0.3}
