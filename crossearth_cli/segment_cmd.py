"""``ces segment SCENE... -o OUT``: SAR scenes to land-cover polygons (docs/contracts.md §5, §6)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import click

from ..core.errors import InputError
from ..core.interrupts import sigterm_as_interrupt
from .map_options import DEFAULT_MODEL_NAME, map_options
from .reporting import Reporter, error_text, progress_option
from .scene_options import calibrated_option, domain_option, resolution_option

DEFAULT_EXTENSION = ".gpkg"


def default_model_path() -> Path:
    """The embedded default model: models/ces-s1-water.safetensors in the package folder."""
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
    from ..core.models import model_header

    kind = model_header.read_config(model).get("kind")   # header only, no torch; names the file
    if kind != "model":
        raise InputError(f"{model}: is a {kind} checkpoint without a segmentation head; "
                         f"fine-tune it first (ces finetune --model {model} ...)")
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


def _stem(scene: Path) -> str:
    """The name a scene's outputs take: the file's stem, or a Sentinel-1 product's name."""
    from ..core.scene.sentinel1.product import is_product, product_stem

    return product_stem(scene) if is_product(scene) else scene.stem


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
            try:
                output.mkdir()
                created.append(output)
            except FileExistsError:  # another rank made it first
                pass
        vectors = [output / (_stem(s) + DEFAULT_EXTENSION) for s in scenes]
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


def _precheck(plan: list[dict], overwrite: bool, open_options: dict,
              min_area: Optional[float] = None, resolution="auto",
              keep_prepared: Optional[Path] = None) -> None:
    """Refuse bad scenes, bad or existing outputs, and a disk clearly too small for the
    outputs and temporary rasters, before any work (exit 2, nothing written).

    Scenes and output names are checked before torch is imported (a bad input is reported
    in well under a second)."""
    from ..core.atomic import check_writable
    from ..core.disk_space import check_space
    from ..core.products import outputs, preview, vectorize

    for job in plan:
        ow = job.get("overwrite", overwrite)
        vectorize.vector_format(job["vector"])
        check_writable(job["vector"], ow)
        if job["preview"] is not None:
            check_writable(preview.check_path(job["preview"]), ow)
        for key in ("raster", "confidence"):
            outputs.check_raster_path(job[key], ow)   # .tif / .tiff
    needs = []   # the disk space of every scene's outputs and temporaries (core/disk_space.py)
    for k, job in enumerate(plan):  # opening computes the statistics: unreadable / all-nodata fail here
        needs += _job_needs(k, job, open_options, min_area, resolution, keep_prepared)
    check_space(needs)


def _job_needs(k: int, job: dict, open_options: dict, min_area: Optional[float], resolution,
               keep_prepared: Optional[Path]) -> list:
    """The checks of one scene (readable, its --resolution, --min-area; a product's
    measurements and the space to prepare it) and the disk space its outputs and temporary
    rasters need at least (core.disk_space.Need, job ``k``)."""
    from ..core.disk_space import need
    from ..core.products import outputs
    from ..core.scene import raster_check, sar_io
    from ..core.scene.multilook import multilook_factor
    from ..core.scene.sentinel1.prepared import VALID_AT_LEAST, check_product, space_needed
    from ..core.scene.sentinel1.product import is_product

    folder = job["vector"].parent if str(job["vector"].parent) else Path(".")
    needs = []
    if is_product(job["scene"]):   # its measurements, and the disk space to prepare it
        named = job["vector"] if keep_prepared is None else keep_prepared
        where = folder if keep_prepared is None else keep_prepared   # (its folder, if a file)
        prep = check_product(job["scene"], where, resolution, named)
        needs.append(need(named, space_needed(prep), kept=keep_prepared is not None, where=where,
                          job=k))
        grid = (prep.width, prep.height, VALID_AT_LEAST)
    else:
        raster_check.check_file(job["scene"])   # full-resolution pixels, not only overviews
        factor = multilook_factor(job["scene"], resolution)   # --resolution METRES: georeferenced, calibrated
        with sar_io.open_scene(job["scene"], **open_options) as scene:
            outputs.sieve_pixels(scene, min_area)
            grid = (scene.width // factor, scene.height // factor, 1.0 - scene.nodata_fraction)
        if factor > 1:   # the multilooked scene (float32, compressed: 2 bytes a pixel at least)
            needs.append(need(job["vector"], 2.0 * grid[0] * grid[1], kept=False, where=folder,
                              job=k))
    return needs + outputs.output_needs(grid, job["vector"], job["raster"], job["confidence"],
                                        job["preview"], job=k)


def _summary_lines(result: dict) -> list[str]:
    name = Path(result["scene"]).name
    from ..core.products.area_summary import area_lines

    return [f"{name}: {result['polygons']} polygons", *area_lines(result["class_area_m2"])]


@click.command("segment")
@click.argument("scenes", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Vector output (.gpkg, .geojson, .fgb, .shp, .parquet); a folder with "
                   "several scenes (one <scene>.gpkg each).")
@map_options
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--summary", is_flag=True, help="Print the area of each class (km²).")
@domain_option
@calibrated_option
@click.option("--bands", default=None, help="Bands by description or 1-based index, e.g. VV,VH.")
@click.option("--complex", "complex_part", type=click.Choice(["amplitude", "real", "imag"]),
              default="amplitude", show_default=True, help="Part of complex (SLC) data to use.")
@resolution_option
@click.option("--keep-prepared", type=click.Path(path_type=Path), default=None,
              help="Keep the GeoTIFF a Sentinel-1 product is prepared to (ces prepare) at this path "
                   "(a folder with several products); default: a temporary file, removed.")
@progress_option
def segment(scenes, output, model, tile, overlap, batch, device, raster, confidence, preview,
            min_area, simplify, overwrite, summary, domain, calibrated, bands, complex_part,
            resolution, keep_prepared, progress_mode) -> None:
    """Segment SAR scenes into land-cover polygons (GeoPackage layer "landcover").

    SCENES: rasters, Sentinel-1 GRD products (.zip, .SAFE folder or manifest.safe: prepared
    as by ces prepare, at --resolution), folders of these, or .txt files listing them.
    With several scenes, those whose outputs all exist are skipped (unless --overwrite), so
    a killed run resumes by running again. Under torchrun or srun each process (rank r of
    N) segments every N-th scene on its own device and logs to
    <folder>/ces-segment.rank<r>.log; rank 0 prints a table of all scenes at the end.

    \b
    Examples:
      ces segment examples/Spain_7370579_S1Hand.tif -o spain.gpkg --summary
      ces segment S1A_IW_GRDH_1SDV_20210119T031653_..._8255.zip -o flood.gpkg
      ces segment a.tif b.tif -o results/ --raster --progress json
      torchrun --nproc-per-node 4 $(which ces) segment scenes/ -o results/
      srun --ntasks 16 --gpus-per-task 1 ces segment scenes.txt -o results/
    """
    reporter = Reporter(progress_mode)
    with sigterm_as_interrupt():
        results = _run(reporter, scenes, output, model, tile, overlap, batch, device, raster,
                       confidence, min_area, simplify, overwrite, domain, bands, complex_part,
                       preview, calibrated, resolution, keep_prepared)
    _report(reporter, results, output, summary)


def _run(reporter, scenes, output, model, tile, overlap, batch, device, raster, confidence,
         min_area, simplify, overwrite, domain, bands, complex_part,
         preview=None, calibrated=None, resolution="auto", keep_prepared=None) -> list[dict]:
    """Check everything, then segment each scene of this rank; errors also go to the reporter."""
    created: list[Path] = []  # an output folder this run made: removed again if left empty
    ranks = None
    try:
        from ..core.inference import scene_ranks, window_grid as windows
        from ..core.scene import contracts

        open_options = dict(domain=domain, bands=contracts.parse_bands(bands),
                            complex_part=complex_part, calibrated=calibrated)
        if overlap is None:
            overlap = min(128, tile // 4)
        windows.check_tiling(tile, overlap, batch)   # the numbers first, before torch
        model_path = _resolve_model(model)           # the model's header, before torch
        scenes = tuple(scene_ranks.expand_inputs(scenes))  # files, folders, .txt lists
        plan = _plan(scenes, output, raster, confidence, created, preview)
        ranks = _RankedRun(plan, scenes, output, overwrite, reporter)
        _precheck(ranks.todo, overwrite, open_options, min_area, resolution, keep_prepared)   # before torch
        from ..core.inference import pipeline, tiler
        from ..core.models import checkpoints
        from ..core.scene.sentinel1.prepared import prepared_scene

        dev = tiler.resolve_device(scene_ranks.rank_device(device, ranks.rank))
        net = checkpoints.load(model_path, map_location="cpu")
        results = []
        for job in ranks.todo:
            ranks.begin(job)
            folder = job["vector"].parent if str(job["vector"].parent) else Path(".")
            keep = _keep_path(keep_prepared, job["scene"], len(plan) > 1)
            with prepared_scene(job["scene"], folder, resolution_m=resolution, keep=keep,
                                overwrite=job.get("overwrite", overwrite), progress=reporter,
                                output=job["vector"]) as scene:
                results.append(pipeline.segment_scene(
                    scene, net, job["vector"], raster=job["raster"],
                    confidence=job["confidence"], preview=job["preview"], tile=tile,
                    overlap=overlap, batch=batch, device=str(dev), min_area=min_area,
                    simplify=simplify, overwrite=job.get("overwrite", overwrite), progress=reporter,
                    warn=reporter.warning, **open_options))
            results[-1]["scene"] = str(job["scene"])
            ranks.end(job, results[-1])
    except BaseException as e:
        if ranks is not None:
            ranks.finish(ok=False, error=e)
        if ranks is None or ranks.rank.world == 1:  # other ranks may still write there
            for folder in created:
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
        if isinstance(e, KeyboardInterrupt):
            reporter.error("interrupted")
        elif not isinstance(e, (SystemExit, click.exceptions.Exit)):
            reporter.error(e)
        raise
    ranks.finish(ok=True)
    return results


def _keep_path(keep_prepared: Optional[Path], scene: Path, several: bool) -> Optional[Path]:
    """Where a product's prepared GeoTIFF is kept: --keep-prepared itself, or NAME.tif in it
    when it is a folder or there are several scenes; None: not kept."""
    if keep_prepared is None:
        return None
    if several or keep_prepared.is_dir():
        return keep_prepared / f"{_stem(scene)}.tif"
    return keep_prepared


class _RankedRun:
    """This process's share of the scenes (core.inference.scene_ranks), the finished ones skipped;
    with several processes: the rank's log and status, and rank 0's summary table."""

    def __init__(self, plan, scenes, output, overwrite, reporter):
        from ..core.inference import scene_ranks

        self.sr, self.reporter = scene_ranks, reporter
        self.rank = scene_ranks.current_rank()
        several = len(plan) > 1 or output.is_dir()
        folder = output if output.is_dir() else (output.parent if str(output.parent) else Path("."))
        mine = scene_ranks.share(plan, self.rank.rank, self.rank.world)
        self.skipped = [] if overwrite or not several else [
            job for job in mine
            if scene_ranks.finished([job["vector"], job["raster"], job["confidence"],
                                     job["preview"]])]
        self.todo = [job for job in mine if job not in self.skipped]
        if several:  # a scene left half-written (some outputs only) is redone whole
            for job in self.todo:
                job["overwrite"] = overwrite or any(
                    job[k] is not None and Path(job[k]).exists()
                    for k in ("vector", "raster", "confidence", "preview"))
        self.records = [{"scene": str(job["scene"]), "status": "skipped"} for job in self.skipped]
        self.folder, self.log, self.t0 = folder, None, 0.0
        if self.rank.world > 1:
            self.run = scene_ranks.run_id(scenes, self.rank.world)
            self.log = scene_ranks.RankLog(folder, self.rank)
            self.log.write(f"{len(mine)} of {len(plan)} scenes, {len(self.skipped)} already "
                           f"finished (skipped)")
            for job in self.skipped:
                self.log.write(f"skipped {job['scene']} (outputs exist; --overwrite redoes it)")
            for job in self.todo:
                if job.get("overwrite") and not overwrite:
                    self.log.write(f"redoing {job['scene']}: some of its outputs are missing")
        elif self.skipped:
            names = ", ".join(Path(j["scene"]).name for j in self.skipped)
            reporter.warning(f"skipped {len(self.skipped)} scene(s) whose outputs exist "
                             f"(--overwrite redoes them): {names}")

    def begin(self, job) -> None:
        import time

        self.t0 = time.perf_counter()
        if self.log:
            self.log.write(f"segmenting {job['scene']}")

    def end(self, job, result: dict) -> None:
        import time

        seconds = time.perf_counter() - self.t0
        timing = result.get("timing", {})
        self.records.append({"scene": str(job["scene"]), "status": "done",
                             "polygons": result["polygons"], "windows": timing.get("windows"),
                             "seconds": round(seconds, 2)})
        if self.log:
            self.log.write(f"done {job['scene']}: {result['polygons']} polygons, "
                           f"{timing.get('windows')} windows, {seconds:.1f} s")

    def finish(self, ok: bool, error: Optional[BaseException] = None) -> None:
        """Status written (also on failure); rank 0 waits for all and prints the table."""
        if self.log is None:
            return
        if error is not None:
            message = error_text(error)
            done = {r["scene"] for r in self.records}
            left = [str(j["scene"]) for j in self.todo if str(j["scene"]) not in done]
            self.records += [{"scene": scene, "status": "failed" if i == 0 else "not run",
                              "error": message} for i, scene in enumerate(left)]
            self.log.write(f"failed: {message}")
        self.log.write("finished" if ok else "stopped")
        self.log.close()
        self.sr.write_status(self.folder, self.run, self.rank, self.records, ok)
        if ok and self.rank.rank == 0:
            statuses = self.sr.wait_for_ranks(self.folder, self.run, self.rank.world)
            if self.reporter.mode != "json":
                for line in self.sr.summary_table(statuses):
                    click.echo(line)


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
