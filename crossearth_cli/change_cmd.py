"""``ces change AFTER --before REF [--before REF ...] -o OUT``: flood extent from a
before/after pair (core/change/detect.py, docs/interfaces.md)."""
from __future__ import annotations

import contextlib
from pathlib import Path

import click

from ..core.interrupts import sigterm_as_interrupt
from .map_options import map_options
from .reporting import Reporter, progress_option
from .scene_options import calibrated_option, domain_option, resolution_option
from .segment_cmd import _resolve_model, _side_output


def _check_outputs(outputs: dict, overwrite: bool) -> None:
    """The outputs checked before any work (exit 2, nothing written)."""
    from ..core.atomic import check_writable
    from ..core.products import preview, vectorize

    vectorize.vector_format(outputs["vector"])
    check_writable(outputs["vector"], overwrite)
    if outputs["preview"] is not None:
        check_writable(preview.check_path(outputs["preview"]), overwrite)


def _check_space(scenes: tuple[Path, ...], outputs: dict, folder: Path, resolution) -> None:
    """Refuse at once (exit 2, core/disk_space.py) a disk clearly too small for the prepared
    products, each scene's temporary rasters and the outputs; a product's measurements are
    checked too. A scene that cannot be opened is left to the scene checks."""
    import rasterio

    from ..core.disk_space import check_space, need
    from ..core.products.outputs import output_needs
    from ..core.scene.sentinel1.prepared import VALID_AT_LEAST, check_product, space_needed
    from ..core.scene.sentinel1.product import is_product

    needs, grids, unknown = [], [], False
    for path in scenes:
        if is_product(path):   # its measurements and the disk space to prepare it
            plan = check_product(path, folder, resolution, outputs["vector"])
            needs.append(need(outputs["vector"], space_needed(plan), kept=False, where=folder))
            grids.append((plan.width, plan.height, VALID_AT_LEAST))
            continue
        try:
            with rasterio.open(path) as src:
                grids.append((src.width, src.height, VALID_AT_LEAST))
        except (rasterio.errors.RasterioError, OSError):
            unknown = True
    if unknown:
        return
    needs += output_needs(grids[0], outputs["vector"], outputs["raster"], outputs["confidence"],
                          outputs["preview"], temporary_grids=[*grids, grids[0]])
    check_space(needs)


def _check_scenes(after: Path, befores: tuple[Path, ...], model_path: Path, open_options: dict,
                  warn) -> None:
    """The scenes checked before torch is imported (exit 2, nothing written)."""
    from ..core.change import checks as change_checks
    from ..core.models import model_header
    from ..core.scene import raster_check

    for path in (after, *befores):
        raster_check.check_file(path)
    config = model_header.read_config(model_path)
    options = {**open_options, "prefer": model_header.trained_bands(config),
               "contract": model_header.input_contract(config)}
    change_checks.check_scenes(after, befores, options, warn)


def _summary_lines(result: dict) -> list[str]:
    refs = ", ".join(Path(p).name for p in result["references"])
    lines = [f"{Path(result['scene']).name} against {refs}: {result['polygons']} polygons "
             f"(geodesic areas)"]
    from ..core.products.area_summary import area_lines

    return lines + area_lines(result["class_area_m2"])


@click.command("change")
@click.argument("after", type=click.Path(path_type=Path))
@click.option("--before", "befores", multiple=True, required=True,
              type=click.Path(path_type=Path), metavar="REFERENCE",
              help="A reference scene from before the event (repeatable). With several, "
                   "reference water is water in at least half of those that cover a pixel.")
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Vector output (.gpkg, .geojson, .fgb, .shp, .parquet).")
@map_options
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--summary", is_flag=True, help="Print the geodesic area of each class (km²).")
@domain_option
@calibrated_option
@click.option("--bands", default=None, help="Bands by description or 1-based index, e.g. VV.")
@click.option("--complex", "complex_part", type=click.Choice(["amplitude", "real", "imag"]),
              default="amplitude", show_default=True, help="Part of complex (SLC) data to use.")
@resolution_option
@progress_option
def change(after, befores, output, model, tile, overlap, batch, device, raster, confidence,
           preview, min_area, simplify, overwrite, summary, domain, calibrated, bands,
           complex_part, resolution, progress_mode) -> None:
    """Map what a flood put under water: AFTER against reference scenes from before.

    Each scene is segmented on its own grid; the references' classes are then warped onto
    AFTER's grid (nearest). For a water model the classes are flood (water after, not
    before), permanent water (both), receded (before, not after) and no water; other models
    give from → to transitions. The output covers the common footprint only, in AFTER's CRS.
    Sentinel-1 GRD products (.zip, .SAFE, manifest.safe) are prepared first (ces prepare).

    \b
    Examples:
      ces change after.tif --before before.tif -o flood.gpkg --summary --preview
      ces change after.tif --before jan.tif --before feb.tif --before mar.tif -o flood.gpkg
      ces change S1A_..._AFTER.zip --before S1A_..._BEFORE.zip -o flood.gpkg
    """
    reporter = Reporter(progress_mode)
    try:
        from ..core.scene import contracts

        open_options = dict(domain=domain, bands=contracts.parse_bands(bands),
                            complex_part=complex_part, calibrated=calibrated)
        if overlap is None:
            overlap = min(128, tile // 4)
        from ..core.inference import window_grid as windows

        windows.check_tiling(tile, overlap, batch)
        model_path = _resolve_model(model)
        outputs = {"vector": output,
                   "raster": _side_output(raster, output, "classes", False),
                   "confidence": _side_output(confidence, output, "confidence", False),
                   "preview": _side_output(preview, output, "preview", False, ".png")}
        _check_outputs(outputs, overwrite)
        from ..core.change.checks import check_distinct
        from ..core.scene.sentinel1.prepared import prepared_scene

        check_distinct([after, *befores])
        folder = output.parent if str(output.parent) else Path(".")
        _check_space((after, *befores), outputs, folder, resolution)   # before any work
        with sigterm_as_interrupt(), contextlib.ExitStack() as stack:
            scenes = [stack.enter_context(prepared_scene(p, folder, resolution_m=resolution,
                                                         progress=reporter, output=output))
                      for p in (after, *befores)]
            _check_scenes(scenes[0], tuple(scenes[1:]), model_path, open_options,
                          warn=lambda message: None)   # the warnings are given once, below
            from ..core.change import detect as change_mod

            result = change_mod.change_scenes(
                scenes[0], scenes[1:], model_path, output, raster=outputs["raster"],
                confidence=outputs["confidence"], preview=outputs["preview"], tile=tile,
                overlap=overlap, batch=batch, device=device, min_area=min_area,
                simplify=simplify, overwrite=overwrite, progress=reporter,
                warn=reporter.warning, **open_options)
        result["scene"], result["references"] = str(after), [str(b) for b in befores]
    except KeyboardInterrupt:
        reporter.error("interrupted")
        raise
    except Exception as e:
        reporter.error(e)
        raise
    reporter.done(result["outputs"], class_area_m2=result["class_area_m2"],
                  polygons=result["polygons"])
    if summary and reporter.mode != "json":
        for line in _summary_lines(result):
            click.echo(line)
