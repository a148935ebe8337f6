"""The checks of a before/after pair, made before any model work: torch-free, so
``ces change`` refuses bad input in well under a second (nothing written).

* :func:`check_distinct`: no file given twice (as the after scene or a reference);
* :func:`check_pair`: the footprints overlap (compared in the after scene's CRS), both or
  neither are georeferenced (neither: the same size, compared pixel for pixel), and both are
  read with the same polarizations;
* :func:`check_scenes`: all of it for one after scene and its references, and a warning
  when a reference's acquisition date (core.scene.scene_date) is after the after scene's, or
  when the scenes come from different relative orbits (the RELATIVE_ORBIT tag of a prepared
  Sentinel-1 product): their geometry differs.

Each error is an InputError whose one line names both files.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence, Union

from rasterio.transform import array_bounds
from rasterio.warp import transform_bounds

from ..errors import InputError, parameter
from ..scene import sar_io
from ..scene.scene_date import scene_date

PathLike = Union[str, os.PathLike]


def scene_footprint(scene: sar_io.SarScene) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a scene in its CRS units."""
    return array_bounds(scene.height, scene.width, scene.transform)


def check_pair(after: sar_io.SarScene, before: sar_io.SarScene) -> None:
    """InputError naming both files when ``before`` cannot serve as a reference for ``after``:
    no overlap, georeferencing on one side only, no georeferencing and different sizes, or
    different polarizations."""
    a, b = Path(after.path), Path(before.path)
    both = f"{b} and {a}"
    if (after.crs is None) != (before.crs is None):
        raise InputError(f"{both}: one scene is georeferenced and the other is not; give both "
                         f"a CRS (or neither, for pixel-aligned tiles)")
    if after.crs is None:
        if (after.width, after.height) != (before.width, before.height):
            raise InputError(f"{both}: neither is georeferenced, so they are compared pixel "
                             f"for pixel, but they differ in size ({before.width} x "
                             f"{before.height} and {after.width} x {after.height} px)")
    else:
        left, bottom, right, top = transform_bounds(before.crs, after.crs,
                                                    *scene_footprint(before))
        a_left, a_bottom, a_right, a_top = scene_footprint(after)
        if min(right, a_right) <= max(left, a_left) or min(top, a_top) <= max(bottom, a_bottom):
            raise InputError(f"{both}: the scenes do not overlap (no common footprint)")
    names_a, names_b = after.band_names, before.band_names
    if all(names_a) and all(names_b) and [n.upper() for n in names_a] != \
            [n.upper() for n in names_b]:
        raise InputError(f"{both}: different polarizations ({', '.join(names_b)} and "
                         f"{', '.join(names_a)}); the model compares the same polarization "
                         f"on both dates (choose it with {parameter('bands')})")


def check_distinct(paths: Sequence[PathLike]) -> None:
    """InputError when a file is given twice (as the after scene or as a reference)."""
    seen: dict[Path, Path] = {}
    for p in map(Path, paths):
        key = p.resolve()
        if key in seen:
            raise InputError(f"{seen[key]} and {p}: the same file given twice; a change needs "
                             f"scenes of different dates")
        seen[key] = p


def check_scenes(after_path: PathLike, before_paths: Sequence[PathLike], open_options: dict,
                 warn: Callable[[str], None]) -> None:
    """Every check of the module doc that needs only the scenes (no model, no torch work)."""
    if not before_paths:
        raise InputError(f"{after_path}: a change needs at least one reference (before) scene")
    check_distinct([after_path, *before_paths])
    with sar_io.open_scene(after_path, **open_options) as after:
        when = scene_date(after_path, after.src.tags())
        orbit = after.src.tags().get("RELATIVE_ORBIT")
        for path in before_paths:
            with sar_io.open_scene(path, **open_options) as before:
                check_pair(after, before)
                ref_when = scene_date(path, before.src.tags())
                ref_orbit = before.src.tags().get("RELATIVE_ORBIT")
            if orbit and ref_orbit and orbit != ref_orbit:
                warn(f"{Path(path).name}: relative orbit {ref_orbit}, the after scene {Path(after_path).name} "
                     f"is from relative orbit {orbit}; their viewing geometry differs (incidence angle, "
                     f"layover and shadow), so some change may be geometry, not water")
            if when is not None and ref_when is not None and ref_when > when:
                warn(f"{Path(path).name}: the reference is dated {ref_when.isoformat()}, after "
                     f"the after scene {Path(after_path).name} ({when.isoformat()}); check "
                     f"the order of the scenes")
