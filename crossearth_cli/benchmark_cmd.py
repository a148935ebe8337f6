"""``ces benchmark SUITE.yaml -o results/``: a domain-generalization benchmark suite (train on
one domain, evaluate on the others) as one resumable run; the logic is train/benchmark.py."""
from __future__ import annotations

from pathlib import Path

import click

from .reporting import Reporter, progress_option


@click.command("benchmark")
@click.argument("suite", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Results folder: fine-tuned models, evaluations and table.md/.csv/.json. "
                   "Running the same command again reuses every finished cell.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@progress_option
def benchmark(suite: Path, output: Path, device: str, progress_mode: str) -> None:
    """Fine-tune once per (base model, source, method), evaluate every model on every target
    and write the table in the paper's form: a row per model and method, per-class IoU and
    mIoU per target, the change against the baseline row in parentheses.

    The suite file (YAML/JSON) names datasets (data-file sources: images, labels, classes,
    stretch, bands...), experiments (base, source, targets, methods: none, decoder-only,
    earth-adapter; iters, tile, batch, lr, seed) and the baseline row; see the README.
    The whole suite is checked before anything is written or trained.

    \b
    Examples:
      ces benchmark examples/dg_suite.yaml -o results/
      ces benchmark suite.yaml -o results/ --progress json
    """
    from ..core.errors import InputError
    from ..train.benchmark import load_suite, run_suite
    from .segment_cmd import default_model_path

    if output.exists() and not output.is_dir():
        raise InputError(f"{output}: -o names a folder, and this is a file")
    parent = output.resolve().parent
    if not parent.is_dir():
        raise InputError(f"{output}: the folder it goes in ({parent}) does not exist")
    reporter = Reporter(progress_mode)

    def log(msg: str) -> None:
        reporter.close_bars()
        click.echo(f"ces benchmark: {msg}", err=True)

    spec = load_suite(suite, default_model=default_model_path(), progress=reporter)
    try:
        result = run_suite(spec, output, device=device, progress=reporter, log=log)
    except KeyboardInterrupt:
        log("interrupted; run the same command again to continue (finished cells are kept, "
            "an interrupted fine-tune resumes from its checkpoint)")
        raise
    except Exception as e:
        reporter.error(e)
        raise
    if reporter.mode == "json":
        reporter.done(result["outputs"], computed=result["computed"], reused=result["reused"])
    else:
        click.echo(Path(result["outputs"]["markdown"]).read_text())
        c, r = result["computed"], result["reused"]
        click.echo(f"wrote {output}/table.md, table.csv, table.json ({c['finetune']} fine-tune(s) "
                   f"and {c['evaluate']} evaluation(s) computed, {r['finetune']} and "
                   f"{r['evaluate']} reused)", err=True)
