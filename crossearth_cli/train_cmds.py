"""``ces finetune``, ``ces pretrain`` and ``ces evaluate``: adapt a model to local labels,
continue pre-training (also under ``torchrun``), and measure a model with the paper's metrics."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import click

from . import validate
from .reporting import Reporter, progress_option
from .scene_options import DOMAIN_CHOICE, calibrated_option


def data_options(f):
    """--images/--labels/--classes/--class-field/--pair-pattern/--tile/--domain/--calibrated/
    --bands."""
    opts = [
        click.option("--images", multiple=True,
                     help="SAR rasters: files, folders or glob patterns (repeatable)."),
        click.option("--labels", multiple=True,
                     help="Label rasters paired with the images by file name (on another grid or "
                          "CRS: resampled onto the image's, nearest), or one vector file "
                          "(GPKG/SHP/GeoJSON) of labelled polygons (repeatable)."),
        click.option("--classes", "classes_file", type=click.Path(dir_okay=False), default=None,
                     help="Classes file (YAML/JSON): classes [{name, value or values, color}], "
                          "ignore [...]. Default: inferred from the labels (or the base model's)."),
        click.option("--class-field", default=None,
                     help="Field of the vector labels holding the class value or name."),
        click.option("--pair-pattern", default=None,
                     help="Regular expression whose first group is the key pairing image and "
                          "label names (default: the name without role tokens such as "
                          "S1/after/mask/label/LabelHand)."),
        click.option("--tile", type=validate.TILE, default=512, show_default=True,
                     help="Crop / window size in pixels."),
        click.option("--domain", type=DOMAIN_CHOICE, default=None,
                     help="Override the detected value domain of the images."),
        calibrated_option,
        click.option("--bands", default=None, help="Bands by description or index, e.g. VV,VH."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def window_options(f):
    """--overlap/--batch/--device of the sliding-window prediction (evaluate, agreement)."""
    opts = [
        click.option("--overlap", type=validate.NON_NEGATIVE_INT, default=None,
                     help="Overlap of sliding windows on images larger than --tile (default: 128, "
                          "or a quarter of --tile when that is smaller)."),
        click.option("--batch", type=validate.POSITIVE_INT, default=4, show_default=True),
        click.option("--device", default="auto", show_default=True),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def training_options(mode: str):
    """The options of a training command, their defaults from the recipe of ``mode``
    (train/hyperparameters.py: "finetune" or "pretrain")."""
    from ..core.models.adapter_options import DEFAULTS as ADAPTER
    from ..train.hyperparameters import recipe

    r = recipe(mode)

    def deco(f):
        opts = [
            click.option("--data", "data_file", type=click.Path(dir_okay=False), default=None,
                         help="Data file (YAML/JSON) listing several labelled sources with their "
                              "images, labels, classes and sampling weight (instead of "
                              "--images/--labels/--classes); see the README."),
            click.option("--iters", type=validate.POSITIVE_INT, default=r.iters, show_default=True,
                         help="Optimizer steps."),
            click.option("--batch", type=validate.POSITIVE_INT, default=r.batch, show_default=True,
                         help="Crops per step (per process under torchrun)."),
            click.option("--lr", type=validate.POSITIVE_FLOAT, default=r.lr, show_default=True, help="AdamW learning rate."),
            click.option("--weight-decay", type=validate.NON_NEGATIVE_FLOAT, default=r.weight_decay, show_default=True),
            click.option("--schedule", type=click.Choice(["poly", "cosine"]), default=r.schedule,
                         show_default=True, help="Decay after the warm-up."),
            click.option("--warmup", type=validate.WARMUP, default=r.warmup,
                         help="Warm-up iterations (default: min(1500, iters/10))."),
            click.option("--accum", type=validate.POSITIVE_INT, default=r.accum, show_default=True,
                         help="Gradient accumulation steps per optimizer step."),
            click.option("--grad-clip", type=validate.NON_NEGATIVE_FLOAT, default=r.grad_clip, help="Max gradient norm (0: off)."),
            click.option("--peft", type=click.Choice(["none", "earth-adapter"]), default="none",
                         show_default=True,
                         help="earth-adapter: add Earth-Adapters after every backbone block and "
                              "train them with the decoder, the backbone frozen."),
            click.option("--adapter-rank", type=validate.POSITIVE_INT, default=ADAPTER["rank"], show_default=True,
                         help="Earth-Adapter bottleneck width r."),
            click.option("--adapter-cutoff", type=validate.POSITIVE_FLOAT, default=ADAPTER["cutoff"], show_default=True,
                         help="Earth-Adapter low-pass side as a fraction of the token grid."),
            click.option("--grad-checkpointing", is_flag=True,
                         help="Recompute ViT blocks in the backward pass (less memory)."),
            click.option("--val-images", multiple=True, help="Validation images (repeatable)."),
            click.option("--val-labels", multiple=True, help="Validation labels (repeatable)."),
            click.option("--val-every", type=validate.NON_NEGATIVE_INT, default=r.val_every,
                         help="Validate every N iterations (0: at the end); the best model is kept."),
            click.option("--save-every", type=validate.NON_NEGATIVE_INT, default=r.save_every, show_default=True,
                         help="Checkpoint every N iterations."),
            click.option("--work-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                         help="Checkpoint folder (default: OUT.ckpt beside the output)."),
            click.option("--resume", is_flag=True,
                         help="Continue exactly from the last checkpoint in the work folder."),
            click.option("--no-augment", is_flag=True, help="No flips, speckle or dB jitter."),
            click.option("--refine", is_flag=True,
                         help="Add a full-resolution mask refiner when the base model has none "
                              "(sharper edges; about 8 % more time per window)."),
            click.option("--refiner-only", is_flag=True,
                         help="Train only the full-resolution mask refiner (added when the base "
                              "model has none), everything else frozen: sharper edges, the "
                              "same recognition."),
            click.option("--scale-jitter", type=validate.MULTILOOK_FACTORS, default="1", show_default=True,
                         help="Multilook factors a batch is drawn at, e.g. 1,2,4: 10 m crops shown "
                              "as 10, 20 and 40 m scenes (calibrated-input models)."),
            click.option("--pixel-size", type=validate.POSITIVE_FLOAT, default=None,
                         help="Metres: the training images' pixel size when they carry no "
                              "georeferencing (recorded in the model with --scale-jitter)."),
            click.option("--seed", type=int, default=r.seed, show_default=True),
            click.option("--workers", type=validate.NON_NEGATIVE_INT, default=r.workers, show_default=True,
                         help="Data-loading worker processes."),
            click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda."),
            click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
                         required=True, help="Output model (.safetensors)."),
            click.option("--overwrite", is_flag=True, help="Replace an existing output."),
        ]
        for o in reversed(opts):
            f = o(f)
        return f
    return deco


def _run(mode: str, model: Optional[Path], kw: dict, unfreeze: bool, progress_mode: str,
         variant: Optional[str] = None) -> None:
    from ..core.errors import InputError
    from ..core.scene.contracts import parse_bands
    from ..train.finetune import run_training
    from ..train.hyperparameters import TrainConfig

    reporter = Reporter(progress_mode)
    peft, rank, cutoff = kw.pop("peft"), kw.pop("adapter_rank"), kw.pop("adapter_cutoff")
    adapter = None
    if peft == "earth-adapter":
        if rank < 1:
            raise InputError(f"--adapter-rank {rank}: must be at least 1")
        if not 0.0 < cutoff <= 1.0:
            raise InputError(f"--adapter-cutoff {cutoff}: must lie in (0, 1]")
        adapter = {"kind": "earth-adapter", "rank": rank, "cutoff": cutoff}
        if mode == "pretrain":
            unfreeze = False   # adapters train on a frozen backbone, in pretrain too
    refiner_only = kw.pop("refiner_only")
    if refiner_only and mode == "pretrain":
        unfreeze = False   # the refiner alone, in pretrain too
    cfg = TrainConfig(iters=kw.pop("iters"), batch=kw.pop("batch"), lr=kw.pop("lr"),
                      weight_decay=kw.pop("weight_decay"), schedule=kw.pop("schedule"),
                      warmup=kw.pop("warmup"), accum=kw.pop("accum"), grad_clip=kw.pop("grad_clip"),
                      grad_checkpointing=kw.pop("grad_checkpointing"), val_every=kw.pop("val_every"),
                      save_every=kw.pop("save_every"), seed=kw.pop("seed"),
                      workers=kw.pop("workers"), device=kw.pop("device"),
                      scale_jitter=kw.pop("scale_jitter"), pixel_size=kw.pop("pixel_size"))

    def log(msg: str) -> None:
        # stderr in every mode: with --progress json, stdout holds only the JSON events and
        # the QGIS provider shows these lines (losses, validation mIoU) in its log
        reporter.close_bars()
        click.echo(f"ces {mode}: {msg}", err=True)

    validate.check_rasters(kw["images"], kw["labels"], kw["val_images"], kw["val_labels"])
    try:
        summary = run_training(
            mode=mode, base=model, variant=variant, images=kw["images"], labels=kw["labels"],
            data_file=kw["data_file"], adapter=adapter, refine=kw.pop("refine"),
            refiner_only=refiner_only,
            out=kw["output"], cfg=cfg, classes_file=kw["classes_file"], class_field=kw["class_field"],
            pair_pattern=kw["pair_pattern"], val_images=kw["val_images"], val_labels=kw["val_labels"],
            tile=kw["tile"], unfreeze=unfreeze, augment=not kw["no_augment"],
            work_dir=kw["work_dir"], resume=kw["resume"], overwrite=kw["overwrite"],
            domain=kw["domain"], bands=parse_bands(kw["bands"]), calibrated=kw["calibrated"],
            progress=reporter, log=log)
    except KeyboardInterrupt:
        reporter.close_bars()
        from ..train.finetune import default_work_dir

        work = Path(kw["work_dir"]) if kw["work_dir"] else default_work_dir(Path(kw["output"]))
        if (work / "last.safetensors").is_file():
            click.echo(f"ces {mode}: interrupted; continue with the same command and --resume",
                       err=True)
        else:
            click.echo(f"ces {mode}: interrupted before the first training step; nothing to "
                       f"resume (run the same command again)", err=True)
        raise
    except Exception as e:
        reporter.error(e)
        raise
    finally:
        _shutdown_distributed()
    if summary["rank"] != 0:  # under torchrun only rank 0 reports
        return
    brief = {k: summary[k] for k in ("iterations", "first_loss", "final_loss", "best_miou",
                                     "selected", "wall_s", "classes", "world_size",
                                     "param_digests", "trainable_params")}
    if reporter.mode == "json":
        reporter.done({"model": summary["model"], "work_dir": summary["work_dir"]}, **brief)
    else:
        click.echo(f"wrote {summary['model']} ({summary['iterations']} iterations, loss "
                   f"{summary['first_loss']:.4f} -> {summary['final_loss']:.4f}, "
                   f"{summary['wall_s']:.0f} s; {summary['selected']}; parameters "
                   f"{summary['param_digests'][0]})", err=True)


def _shutdown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@click.command("finetune")
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Base model (.safetensors): a whole model, or an imported DINOv2 backbone.")
@data_options
@training_options("finetune")
@click.option("--unfreeze", is_flag=True, help="Train the backbone too (default: decoder only).")
@progress_option
def finetune(model, unfreeze, progress_mode, **kw) -> None:
    """Fine-tune a model on local labels: the backbone frozen, the decoder trained (paper).

    A class count different from the base re-initializes the head's class layer only.
    Under torchrun (e.g. torchrun --nproc-per-node 2 $(which ces) finetune ...) each process
    takes its share of every batch. Interrupted runs continue with --resume.

    \b
    Examples:
      ces finetune --model base.safetensors --images scenes/ --labels masks/ \\
          --classes classes.yaml --iters 2000 -o water.safetensors
      ces finetune --model base.safetensors --images scene.tif --labels polygons.gpkg \\
          --class-field class -o local.safetensors
    """
    _run("finetune", model, kw, unfreeze, progress_mode)


@click.command("pretrain")
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Initialization: an imported DINOv2 backbone (ces models import-dinov2) or a "
                   "whole model. Without it, a randomly initialized --variant.")
@click.option("--variant", type=click.Choice(["ti", "s", "b", "l", "g"]), default="ti",
              show_default=True, help="Architecture when starting without --model.")
@data_options
@training_options("pretrain")
@progress_option
def pretrain(model, variant, progress_mode, **kw) -> None:
    """Continued pre-training: everything trainable, L = L_seg + L_BC (paper §5.1).

    \b
    Examples:
      ces pretrain --model dinov2-init.safetensors --images data/ --labels masks/ -o cpt.safetensors
      torchrun --nproc-per-node 8 $(which ces) pretrain --model init.safetensors ... -o cpt.safetensors
    """
    _run("pretrain", model, kw, True, progress_mode, variant=variant)


@click.command("evaluate")
@click.option("--model", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Model (.safetensors); default: the embedded default model.")
@data_options
@window_options
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the metrics and expert statistics to this JSON file.")
@click.option("--experts-plot", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG plot of the expert activation (default: beside --json as NAME.experts.png).")
@click.option("--source", default=None, help="Tag: the training (source) domain.")
@click.option("--target", default=None, help="Tag: the evaluated (target) domain.")
@click.option("--before", "befores", multiple=True,
              help="Reference (before) images paired with --images by name: score the change "
                   "product of ces change (flood, permanent water) against flood labels.")
@click.option("--label-meaning", type=click.Choice(["new-water", "water-after"]), default=None,
              help="With --before: what the labels' water class means (new water only, or all "
                   "water after the event). Default: the classes file's 'meaning'.")
@click.option("--boundary-tolerance", type=validate.NON_NEGATIVE_FLOAT, default=2.0, show_default=True,
              help="Pixels: how far a predicted edge may lie from a labelled one for the boundary F-score.")
@click.option("--multilook", type=validate.POSITIVE_INT, default=1, show_default=True,
              help="Score on the images multilooked NxN in power (2: 10 m chips read as 20 m); "
                   "predictions are brought back to the labels' grid. Calibrated images only.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@progress_option
def evaluate(model, images, labels, classes_file, class_field, pair_pattern, tile, domain,
             calibrated, bands, overlap, batch, device, json_path, experts_plot, source, target,
             befores, label_meaning, boundary_tolerance, multilook, overwrite, progress_mode) -> None:
    """Per-class IoU, mIoU, overall accuracy, the boundary F-score and the confusion matrix
    (Markdown on stdout, JSON with --json, which also holds every image's figures), and the
    fraction of tokens per expert in each MoE layer (JSON + PNG).
    With --before: a change product scored as new water, as all water after, and the after
    image alone, on the same pixels.

    \b
    Examples:
      ces evaluate --model water.safetensors --images test/AFTER --labels test/MASK \\
          --json results.json --source ombria --target sen1floods11
      ces evaluate --images chips/ --labels labels/ --multilook 2 --boundary-tolerance 2
      ces evaluate --images test/AFTER --before test/BEFORE --labels test/MASK \\
          --classes ombria_classes.yaml --label-meaning water-after
    """
    from ..core.atomic import atomic_output, check_writable
    from ..core.errors import InputError, parameter
    from ..core.models import model_header
    from ..core.scene.contracts import parse_bands
    from ..core.write_failures import WriteFailure

    if model is not None:
        model_header.read_config(model)   # a corrupt model is refused before torch loads
    from ..core.inference.window_grid import check_tiling
    from ..train.classes import classes_file_beside, load_classes
    from ..train.evaluate import evaluate as run_evaluate, load_model
    from ..train.expert_stats import plot_expert_report
    from ..train.metrics import markdown

    if overlap is None:
        overlap = min(128, tile // 4)
    check_tiling(tile, overlap, batch)
    reporter = Reporter(progress_mode)
    if befores and multilook > 1:
        raise InputError("--multilook: not with --before (score the change product at the scenes' own resolution)")
    if label_meaning and not befores:
        raise InputError("--label-meaning: only with --before (scoring a change product)")
    if not images or not labels:
        raise InputError(f"--{'images' if not images else 'labels'}: required (the data to evaluate)")
    if model is None:
        from .segment_cmd import default_model_path

        model = default_model_path()
        if not model.is_file():
            raise InputError(f"no default model is installed ({model} is missing); pass --model")
    if json_path is not None:
        if json_path.suffix.lower() != ".json":
            raise InputError(f"{json_path}: --json writes a .json file")
        check_writable(json_path, overwrite)
        if experts_plot is None:
            experts_plot = json_path.with_name(json_path.stem + ".experts.png")
    if experts_plot is not None:
        if experts_plot.suffix.lower() != ".png":
            raise InputError(f"{experts_plot}: --experts-plot writes a .png image")
        check_writable(experts_plot, overwrite)
    validate.check_rasters(images, labels)
    try:
        net = load_model(model)
        if not classes_file:   # the shared lookup of the QGIS dialog: a classes file beside
            classes_file = classes_file_beside(labels)   # the labels (e.g. the demo's)
            if classes_file:
                click.echo(f"ces evaluate: classes from {classes_file} (found beside the "
                           f"labels; --classes chooses another)", err=True)
        classes = load_classes(classes_file) if classes_file else None
        common = dict(classes=classes, class_field=class_field, pair_pattern=pair_pattern,
                      tile=tile, overlap=overlap, batch=batch, device=device, domain=domain,
                      bands=parse_bands(bands), calibrated=calibrated, progress=reporter)
        if befores:
            from ..train.evaluate_change import evaluate_change

            report = evaluate_change(net, images, befores, labels, label_meaning=label_meaning,
                                     **common)
        else:
            report = run_evaluate(net, images, labels, multilook=multilook,
                                  boundary_tolerance=boundary_tolerance, **common)
    except WriteFailure as e:   # named already (core/write_failures.py)
        reporter.error(e)
        raise
    except InputError as e:
        hint = ("" if classes_file or "classes" not in str(e) else
                f"; give a classes file with {parameter('classes')} (e.g. "
                "examples/sen1floods11_classes.yaml for Sen1Floods11 labels) or put one named "
                "classes.yaml beside the labels")
        error = InputError(e.template + hint)
        reporter.error(error)
        raise error from None
    except Exception as e:
        reporter.error(e)
        raise
    report = {"model": str(model), "source": source, "target": target,
              "classes_file": str(classes_file) if classes_file else None, **report}
    outputs = {}
    if experts_plot is not None and report.get("expert_activation", {}).get("layers"):
        title = f"experts: {Path(model).name}" + (f" on {target}" if target else "")
        plot_expert_report(report["expert_activation"], experts_plot, title, overwrite=True)
        outputs["experts_plot"] = str(experts_plot)
    if json_path is not None:
        text = json.dumps(report, indent=2)
        with atomic_output(json_path, overwrite=overwrite, needed=len(text.encode())) as tmp:
            Path(tmp).write_text(text)
        outputs["json"] = str(json_path)
    if befores:
        _report_change(reporter, outputs, report, model)
    elif reporter.mode == "json":
        reporter.done(outputs, miou=report["miou"], overall_accuracy=report["overall_accuracy"],
                      per_class_iou=report["per_class_iou"], boundary_f=report["boundary"]["f_score"])
    else:
        tags = " ".join(f"{k}={report[k]}" for k in ("source", "target") if report[k])
        click.echo(f"## {Path(model).name}" + (f" ({tags})" if tags else "")
                   + f": {report['images']} image(s), {report['pixels']} pixels\n")
        click.echo(markdown(report))


def _report_change(reporter: Reporter, outputs: dict, report: dict, model) -> None:
    """The done event (JSON) or the Markdown table of a change evaluation."""
    if reporter.mode == "json":
        reporter.done(outputs, declared=report["declared"],
                      miou={d: report[d]["miou"] for d in ("single_date", "new-water",
                                                           "water-after")})
        return
    from ..train.evaluate_change import markdown_table

    click.echo(f"## {Path(model).name}: change on {report['images']} image pair(s), "
               f"{report['pixels']} pixels; the labels mean {report['declared']}\n")
    click.echo(markdown_table(report))
