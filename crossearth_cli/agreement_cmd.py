"""``ces agreement --models A B C ... --images DIR [--labels DIR]``: how often models agree,
pixel by pixel (the mean agreement of the CrossEarth-SAR appendix), per class, and against
reference labels; JSON (``-o``), Markdown (``--markdown``) and a table on stdout.

The measure lives in train/agreement.py; this module parses and checks the command line
(numbers, model files, images, outputs) before torch is imported."""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Optional

import click

from ..core.errors import InputError
from . import validate
from .reporting import Reporter, progress_option
from .train_cmds import data_options, window_options

MULTI_VALUE_OPTIONS = ("--models", "--images", "--labels")


class MultiValueCommand(click.Command):
    """Lets ``--models A B C`` stand for ``--models A --models B --models C`` (also --images
    and --labels): the words after such a flag, up to the next option, are its values."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        out: list[str] = []
        flag, given = None, False
        for a in args:
            if a.startswith("-"):
                if flag is not None and not given:
                    out.append(flag)   # no value: click reports the missing argument
                flag, given = (a, False) if a in MULTI_VALUE_OPTIONS else (None, False)
                if flag is None:
                    out.append(a)
            elif flag is not None:
                out += [flag, a]
                given = True
            else:
                out.append(a)
        if flag is not None and not given:
            out.append(flag)
        return super().parse_args(ctx, out)


def _check_outputs(json_path: Optional[Path], md_path: Optional[Path], overwrite: bool) -> None:
    from ..core.atomic import check_writable

    for path, flag, ext in ((json_path, "-o", ".json"), (md_path, "--markdown", ".md")):
        if path is not None:
            if path.suffix.lower() != ext:
                raise InputError(f"{path}: {flag} writes a {ext} file")
            check_writable(path, overwrite)
    if json_path is not None and md_path is not None and json_path.resolve() == md_path.resolve():
        raise InputError(f"{json_path}: -o and --markdown must differ")


def _check_models(models: tuple[Path, ...]) -> None:
    if len(models) < 2:
        raise InputError(f"--models: agreement needs at least 2 models (got {len(models)})")
    seen = set()
    for m in models:
        if not m.is_file():
            raise InputError(f"{m}: no such model file (--models)")
        if m.resolve() in seen:
            raise InputError(f"{m}: given twice in --models")
        seen.add(m.resolve())


def _load_models(models: tuple[Path, ...]):
    """The models, after checking from their metadata that each is a whole model and that
    they share class names (before any weights are read)."""
    from ..core.models import checkpoints
    from ..train.agreement import check_class_names

    configs = [checkpoints.read_config(m) for m in models]
    for m, cfg in zip(models, configs):
        if cfg.get("kind") != "model":
            raise InputError(f"{m}: is a {cfg.get('kind')} checkpoint without a segmentation "
                             f"head; fine-tune it first")
    check_class_names([str(m) for m in models], configs)
    return [checkpoints.load(m) for m in models]


@click.command("agreement", cls=MultiValueCommand)
@click.option("--models", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Two or more models (.safetensors): --models A B C.")
@data_options
@window_options
@click.option("-o", "--output", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write the report as JSON (.json).")
@click.option("--markdown", "md_path", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Write the tables as Markdown (.md).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@progress_option
def agreement(models, images, labels, classes_file, class_field, pair_pattern, tile, domain,
              calibrated, bands, overlap, batch, device, json_path, md_path, overwrite, progress_mode) -> None:
    """Pixel agreement of every pair of models (a symmetric matrix), the mean agreement over
    the pairs, agreement per class, and each model against reference labels (--labels).

    Each model predicts each image as ces evaluate does (its own bands and input contract;
    nodata excluded); the models must have the same class names. Reference labels pair with
    the images and map to classes as in ces evaluate (the first model's classes by label
    value, or --classes with as many classes in its order).

    \b
    Examples:
      ces agreement --models a.safetensors b.safetensors c.safetensors --images scenes/
      ces agreement --models a.safetensors b.safetensors --images test/ --labels masks/ \\
          -o agreement.json --markdown agreement.md
    """
    reporter = Reporter(progress_mode)
    try:
        report = _run(models, images, labels, classes_file, class_field, pair_pattern, tile,
                      domain, bands, overlap, batch, device, json_path, md_path, overwrite,
                      reporter, calibrated)
    except BaseException as e:
        if not isinstance(e, (SystemExit, click.exceptions.Exit)):
            reporter.error("interrupted" if isinstance(e, KeyboardInterrupt) else e)
        raise
    from ..train.agreement import markdown

    table = markdown(report)
    outputs = _write(report, table, json_path, md_path, overwrite)
    if reporter.mode == "json":
        reporter.done(outputs, mean_agreement=report["mean_agreement"],
                      pairwise=report["pairwise"], models=report["models"])
    else:
        click.echo(f"## agreement of {len(models)} models: {len(report['images'])} image(s), "
                   f"{report['pixels']} pixels\n")
        click.echo(table)


def _run(models, images, labels, classes_file, class_field, pair_pattern, tile, domain, bands,
         overlap, batch, device, json_path, md_path, overwrite, reporter,
         calibrated=None) -> dict:
    from ..core.inference.window_grid import check_tiling
    from ..core.scene.contracts import parse_bands

    if overlap is None:
        overlap = min(128, tile // 4)
    check_tiling(tile, overlap, batch)
    _check_models(models)
    if not images:
        raise InputError("--images: required (the images the models predict)")
    if classes_file and not labels:
        raise InputError(f"--classes {classes_file}: maps reference labels; give --labels too")
    _check_outputs(json_path, md_path, overwrite)
    validate.check_rasters(images, labels)   # before torch: missing files, unreadable pixels
    bands = parse_bands(bands)

    from ..train.agreement import agreement as run_agreement
    from ..train.classes import load_classes

    classes = load_classes(classes_file) if classes_file else None
    nets = _load_models(models)
    return run_agreement(nets, [str(m) for m in models], images, labels or None, classes=classes,
                         class_field=class_field, pair_pattern=pair_pattern, tile=tile,
                         overlap=overlap, batch=batch, device=device, domain=domain, bands=bands,
                         calibrated=calibrated, progress=reporter)


def _write(report: dict, table: str, json_path: Optional[Path], md_path: Optional[Path],
           overwrite: bool) -> dict:
    """Both outputs or neither (atomic renames at the end)."""
    from ..core.atomic import atomic_output

    outputs = {}
    with contextlib.ExitStack() as stack:
        if json_path is not None:
            tmp = stack.enter_context(atomic_output(json_path, overwrite=overwrite))
            Path(tmp).write_text(json.dumps(report, indent=2) + "\n")
            outputs["json"] = str(json_path)
        if md_path is not None:
            tmp = stack.enter_context(atomic_output(md_path, overwrite=overwrite))
            Path(tmp).write_text(table + "\n")
            outputs["markdown"] = str(md_path)
    return outputs
