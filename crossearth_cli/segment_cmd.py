"""``ces segment SCENE... -o OUT``: SAR scenes to land-cover polygons (DESIGN §5, §6)."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional

import click

from ..core.errors import InputError
from .reporting import Reporter, progress_option

DEFAULT_MODEL_NAME = "ces-ti-water.safetensors"
DEFAULT_EXTENSION = ".gpkg"


def default_model_path() -> Path:
    """The embedded default model: models/ces-ti-water.safetensors in the package folder."""
    import crossearth_sar

    return Path(crossearth_sar.__file__).resolve().parent / "models" / DEFAULT_MODEL_NAME


def _resolve_model(model: Optional[Path]) -> Path:
    if model is None:
        model = default_model_path()
        if not model.is_file():
            raise InputError(f"no default model is installed ({model} is missing); "
                             f"pass --model PATH.safetensors")
    elif not model.is_file():
        raise InputError(f"{model}: no such model file")
    return model


def _side_output(value: Optional[str], vector: Path, suffix: str, several: bool,
                 ext: str = ".tif") -> Optional[Path]:
    """--raster / --confidence / --preview: None (not asked), "" (flag: beside the vector),
    a path or folder."""
    if value is None:
        return None
    name = f"{vector.stem}_{suffix}{ext}"
    if value == "":
        return vector.with_name(name)
    path = Path(value)
    if several or path.is_dir():
        return path / name
    return path


def _plan(scenes: tuple[Path, ...], output: Path, raster: Optional[str],
          confidence: Optional[str], created: list[Path],
          preview: Optional[str] = None) -> list[dict]:
    """One {scene, vector, raster, confidence} per scene; several scenes → output is a folder
    (made when missing, and appended to ``created``)."""
    several = len(scenes) > 1
    if several or output.is_dir() or output.suffix == "":
        if output.exists() and not output.is_dir():
            raise InputError(f"{output}: with several scenes -o must be a folder")
        if not output.exists():
            if not output.parent.is_dir():
                raise InputError(f"{output}: output folder {output.parent} does not exist")
            output.mkdir()
            created.append(output)
        vectors = [output / (s.stem + DEFAULT_EXTENSION) for s in scenes]
    else:
        vectors = [output]
    if len(set(vectors)) != len(vectors):
        raise InputError(f"{output}: two scenes have the same file name; segment them separately")
    for side in (raster, confidence, preview):
        if side and several:
            folder = Path(side)
            if not folder.is_dir():
                raise InputError(f"{side}: with several scenes --raster / --confidence take a "
                                 f"folder (or no value: beside each vector)")
    return [{"scene": s, "vector": v,
             "raster": _side_output(raster, v, "classes", several),
             "confidence": _side_output(confidence, v, "confidence", several),
             "preview": _side_output(preview, v, "preview", several, ".png")}
            for s, v in zip(scenes, vectors)]


def _precheck(plan: list[dict], overwrite: bool, open_options: dict) -> None:
    """Refuse bad scenes and bad or existing outputs before any work (exit 2, nothing written)."""
    from ..core import preview, sar_io, vectorize
    from ..core.atomic import check_writable

    for job in plan:
        vectorize.vector_format(job["vector"])
        if job["preview"] is not None:
            preview.check_path(job["preview"])
        for key in ("vector", "raster", "confidence", "preview"):
            if job[key] is not None:
                check_writable(job[key], overwrite)
    for job in plan:  # opening computes the scene statistics: unreadable / all-nodata fail here
        with sar_io.open_scene(job["scene"], **open_options):
            pass


@contextlib.contextmanager
def _interrupt_on_sigterm():
    """Treat SIGTERM (e.g. QGIS cancelling the process) like Ctrl-C: outputs are cleaned up."""
    import signal
    import threading

    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _summary_lines(result: dict) -> list[str]:
    name = Path(result["scene"]).name
    lines = [f"{name}: {result['polygons']} polygons"]
    for cls, m2 in result["class_area_m2"].items():
        lines.append(f"  {cls:<20} {m2 / 1e6:12.4f} km²")
    return lines


@click.command("segment")
@click.argument("scenes", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Vector output (.gpkg, .geojson, .fgb, .shp, .parquet); a folder with "
                   "several scenes (one <scene>.gpkg each).")
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help=f"Model checkpoint (.safetensors). Default: the embedded "
                   f"models/{DEFAULT_MODEL_NAME}.")
@click.option("--tile", type=int, default=512, show_default=True, help="Window size in pixels.")
@click.option("--overlap", type=int, default=None,
              help="Overlap of neighbouring windows in pixels (blended). Default: 128, or a "
                   "quarter of --tile when that is smaller.")
@click.option("--batch", type=int, default=4, show_default=True, help="Windows per forward pass.")
@click.option("--device", default="auto", show_default=True,
              help="auto (CUDA when present), cpu, cuda or cuda:N.")
@click.option("--raster", is_flag=False, flag_value="", default=None, metavar="[CLASSES.tif]",
              help="Also write the class raster (uint8 class values, 255 nodata, COG, after "
                   "sieving). Without a value: <output>_classes.tif beside the vector.")
@click.option("--confidence", is_flag=False, flag_value="", default=None, metavar="[CONF.tif]",
              help="Also write the confidence raster (float32 0..1 max class probability, "
                   "NaN nodata, COG). Without a value: <output>_confidence.tif.")
@click.option("--preview", is_flag=False, flag_value="", default=None, metavar="[PICTURE.png]",
              help="Also write a PNG picture: the scene in grey, the classes in their colours "
                   "over it, a legend. Without a value: <output>_preview.png.")
@click.option("--min-area", type=float, default=None, metavar="M2",
              help="Merge regions smaller than this (m²) into their largest neighbour. "
                   "Default: 4 pixels. 0: keep every pixel.")
@click.option("--simplify", type=float, default=None, metavar="M",
              help="Coverage-preserving simplification tolerance in metres. Default: 3/4 "
                   "of a pixel. 0: exact pixel edges.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--summary", is_flag=True, help="Print the area of each class (km²).")
@click.option("--domain", type=click.Choice(["quicklook", "linear", "db", "complex"]),
              default=None, help="Override the detected value domain.")
@click.option("--bands", default=None, help="Bands by description or 1-based index, e.g. VV,VH.")
@click.option("--complex", "complex_part", type=click.Choice(["amplitude", "real", "imag"]),
              default="amplitude", show_default=True, help="Part of complex (SLC) data to use.")
@progress_option
def segment(scenes, output, model, tile, overlap, batch, device, raster, confidence, preview,
            min_area, simplify, overwrite, summary, domain, bands, complex_part,
            progress_mode) -> None:
    """Segment SAR scenes into land-cover polygons (GeoPackage layer "landcover").

    \b
    Examples:
      ces segment examples/Spain_7370579_S1Hand.tif -o spain.gpkg --summary
      ces segment a.tif b.tif -o results/ --raster --progress json
    """
    reporter = Reporter(progress_mode)
    with _interrupt_on_sigterm():
        results = _run(reporter, scenes, output, model, tile, overlap, batch, device, raster,
                       confidence, min_area, simplify, overwrite, domain, bands, complex_part,
                       preview)
    _report(reporter, results, output, summary)


def _run(reporter, scenes, output, model, tile, overlap, batch, device, raster, confidence,
         min_area, simplify, overwrite, domain, bands, complex_part,
         preview=None) -> list[dict]:
    """Check everything, then segment each scene; errors also go to the reporter."""
    created: list[Path] = []  # an output folder this run made: removed again if left empty
    try:
        from ..core import sar_io

        open_options = dict(domain=domain, bands=sar_io.parse_bands(bands),
                            complex_part=complex_part)
        plan = _plan(tuple(scenes), output, raster, confidence, created, preview)
        _precheck(plan, overwrite, open_options)
        model_path = _resolve_model(model)
        if min_area is not None and min_area < 0:
            raise InputError(f"--min-area {min_area}: must be >= 0")
        if simplify is not None and simplify < 0:
            raise InputError(f"--simplify {simplify}: must be >= 0")
        from ..core import checkpoints, pipeline, tiler

        if overlap is None:
            overlap = min(128, tile // 4)
        tiler.check_tiling(tile, overlap, batch)
        dev = tiler.resolve_device(device)
        net = checkpoints.load(model_path, map_location="cpu")
        results = []
        for job in plan:
            results.append(pipeline.segment_scene(
                job["scene"], net, job["vector"], raster=job["raster"],
                confidence=job["confidence"], preview=job["preview"], tile=tile,
                overlap=overlap, batch=batch,
                device=str(dev), min_area=min_area, simplify=simplify, overwrite=overwrite,
                progress=reporter, warn=reporter.warning, **open_options))
    except BaseException as e:
        for folder in created:
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if isinstance(e, KeyboardInterrupt):
            reporter.error("interrupted")
        elif not isinstance(e, (SystemExit, click.exceptions.Exit)):
            reporter.error(" ".join(str(e).split()) or type(e).__name__)
        raise
    return results


def _report(reporter: Reporter, results: list[dict], output: Path, summary: bool) -> None:
    """The done event (JSON) and the optional per-class area summary."""
    per_scene = [{"scene": r["scene"], "outputs": r["outputs"], "polygons": r["polygons"],
                  "class_area_m2": r["class_area_m2"], "timing": r["timing"]} for r in results]
    if len(results) == 1:
        outputs = results[0]["outputs"]
        extra = {"class_area_m2": results[0]["class_area_m2"],
                 "polygons": results[0]["polygons"]}
    else:
        outputs = {"folder": str(output), "vectors": [r["outputs"]["vector"] for r in results]}
        extra = {"scenes": per_scene}
    reporter.done(outputs, **extra)
    if summary and reporter.mode != "json":
        for r in results:
            for line in _summary_lines(r):
                click.echo(line)
