"""The area of each class as text lines, one home for every face (``ces segment --summary``,
``ces change --summary`` and the QGIS log of Segment and Flood extent).

``class_area_m2`` {class name: m²} -> ``"  NAME   12.3456 km²"`` lines in the model's class
order (square kilometres with four decimals, names padded to 20 characters).
"""
from __future__ import annotations


def area_lines(class_area_m2: dict) -> list[str]:
    """One line per class: its name and area in km²."""
    return [f"  {name:<20} {float(m2) / 1e6:12.4f} km²" for name, m2 in class_area_m2.items()]
