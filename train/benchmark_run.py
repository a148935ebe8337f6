"""Running a benchmark suite (train/benchmark_suite.py): each fine-tuning cell through
train.finetune.run_training with a TrainConfig (in this process, resumable from its checkpoint
folder), each evaluation through train.evaluate, the records and reports cached under OUT by the
cell ids, and the tables at the end (train/benchmark_tables.py). A fine-tune's record also holds
the equivalent ``ces finetune`` command line, for a reader to rerun the cell by hand.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Optional

from ..core.atomic import atomic_output
from ..core.errors import flag
from ..core.progress import ProgressCallback, ensure
from .benchmark_suite import Finetune, Log, Row, Suite, digest, slug
from .benchmark_tables import csv_table, markdown_table, table_document
from .sources import source_document


# -- running the cells ---------------------------------------------------------------------------
def _write_json(path: Path, obj: Any) -> None:
    with atomic_output(path, overwrite=True) as tmp:
        Path(tmp).write_text(json.dumps(obj, indent=2, default=str) + "\n")


def _read_json(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def finetune_command(ft: Finetune, data_file: Path, model: Path, device: str) -> list[str]:
    """The ``ces finetune`` command line equivalent to the cell (for the record): each of the
    cell's settings as the option of its name (core.errors.flag: ``save_every`` ->
    ``--save-every``), then the method, the device and the output."""
    args = ["ces", "finetune", "--model", str(ft.base.path), "--data", str(data_file)]
    for key, value in ft.settings.items():
        args += [flag(key), repr(value) if isinstance(value, float) else str(value)]
    if ft.method == "earth-adapter":
        args += ["--peft", "earth-adapter"]
    return args + ["--device", device, "-o", str(model)]


def _run_finetune(suite: Suite, ft: Finetune, out: Path, device: str, progress, log: Log) -> dict:
    """The fine-tune's record (computed, or read back when finished before)."""
    from .finetune import run_training
    from .hyperparameters import TrainConfig

    folder = out / "finetune"
    record_path, model = folder / f"{ft.id}.json", folder / f"{ft.id}.safetensors"
    record = _read_json(record_path)
    if record is not None and model.is_file():
        return {**record, "computed": False}
    data_file, work = folder / f"{ft.id}.data.yaml", folder / f"{ft.id}.ckpt"
    wall_file = folder / f"{ft.id}.wall.json"
    import yaml

    src = suite.datasets[ft.source].source
    with atomic_output(data_file, overwrite=True) as tmp:
        Path(tmp).write_text(yaml.safe_dump({"classes": suite.classes.to_config(),
                                             "sources": [source_document(src)]}, sort_keys=False))
    s = ft.settings
    resume = (work / "last.safetensors").is_file()
    resumed_from = None
    if resume:
        from .training_loop import checkpoint_iteration

        resumed_from = checkpoint_iteration(work / "last.safetensors")
    before = float((_read_json(wall_file) or {}).get("elapsed_s", 0.0))
    adapter = ({"kind": "earth-adapter", "rank": s["adapter_rank"], "cutoff": s["adapter_cutoff"]}
               if ft.method == "earth-adapter" else None)
    cfg = TrainConfig(iters=s["iters"], batch=s["batch"], lr=s["lr"], warmup=s["warmup"],
                      seed=s["seed"], save_every=s["save_every"], device=device)
    log(f"fine-tune {ft.id}: {ft.base.name}, {ft.method}, source {ft.source}, {s['iters']} "
        f"iterations" + (f" (resuming at iteration {resumed_from})" if resume else ""))
    t0, finished = time.perf_counter(), False
    try:
        summary = run_training(mode="finetune", base=ft.base.path, images=(), labels=(),
                               data_file=data_file, adapter=adapter, out=model, cfg=cfg,
                               tile=s["tile"], work_dir=work, resume=resume, overwrite=True,
                               progress=progress, log=log)
        finished = True
    finally:
        elapsed = before + time.perf_counter() - t0
        if not finished:        # an interrupted attempt's time counts when it is resumed
            _write_json(wall_file, {"elapsed_s": round(elapsed, 2)})
    record = {"id": ft.id, "base": ft.base.name, "base_path": str(ft.base.path),
              "source": ft.source, "method": ft.method, "settings": s,
              "model": str(model.relative_to(out)), "iterations": summary["iterations"],
              "trainable_params": summary["trainable_params"], "wall_s": round(elapsed, 2),
              "train_loop_s": summary["wall_s"], "first_loss": summary["first_loss"],
              "final_loss": summary["final_loss"], "resumed_from": resumed_from,
              "param_digest": summary["param_digests"][0],
              "command": finetune_command(ft, data_file, model, device)}
    _write_json(record_path, record)
    wall_file.unlink(missing_ok=True)
    return {**record, "computed": True}


def _run_evaluation(suite: Suite, row: Row, target: str, model_path: Path, out: Path,
                    device: str, progress, loaded: dict) -> dict:
    from .evaluate import evaluate, load_model

    ds = suite.datasets[target]
    key = {"model": row.model_id, "target": ds.key, "evaluate": suite.evaluate}
    path = out / "evaluate" / f"{row.model_id}__{slug(target)}.{digest(key)[:10]}.json"
    report = _read_json(path)
    if report is not None:
        return {**report, "computed": False}
    if loaded.get("id") != row.model_id:
        loaded.clear()
        loaded.update(id=row.model_id, model=load_model(model_path))
    src = ds.source
    report = evaluate(loaded["model"], src.images, src.labels, classes=src.classes,
                      class_field=src.class_field, pair_pattern=src.pair_pattern,
                      tile=suite.evaluate["tile"], overlap=suite.evaluate["overlap"],
                      batch=suite.evaluate["batch"], device=device, domain=src.domain,
                      bands=src.bands, stretch=src.stretch, progress=progress)
    report = {"model": row.model_id, "target": target, **report}
    _write_json(path, report)
    return {**report, "computed": True}


def run_suite(suite: Suite, out: os.PathLike | str, *, device: str = "auto",
              progress: Optional[ProgressCallback] = None, log: Optional[Log] = None) -> dict:
    """Compute the suite's missing cells into ``out`` and write table.md/.csv/.json there;
    returns {"outputs": {...}, "computed": {...}, "reused": {...}, "table": the JSON}."""
    out = Path(out)
    progress, log = ensure(progress), (log or (lambda msg: None))
    for sub in ("finetune", "evaluate"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    finetunes, evaluations = suite.finetunes, suite.evaluations()
    total, done = len(finetunes) + len(evaluations), 0
    computed, reused = {"finetune": 0, "evaluate": 0}, {"finetune": 0, "evaluate": 0}
    records: dict[str, dict] = {}
    reports: dict[tuple[str, str], dict] = {}
    progress("benchmark", 0, total)

    def tally(kind: str, rec: dict) -> None:
        nonlocal done
        (computed if rec.pop("computed") else reused)[kind] += 1
        done += 1
        progress("benchmark", done, total)

    loaded: dict = {}
    order = sorted(evaluations, key=lambda e: e[0].finetune is not None)   # baselines first
    for row, target in order:
        ft = row.finetune
        if ft is not None and ft.id not in records:
            records[ft.id] = _run_finetune(suite, ft, out, device, progress, log)
            tally("finetune", records[ft.id])
        model_path = out / records[ft.id]["model"] if ft is not None else row.base.path
        reports[row.model_id, target] = _run_evaluation(suite, row, target, model_path, out,
                                                        device, progress, loaded)
        tally("evaluate", reports[row.model_id, target])
    for ft in finetunes:      # fine-tunes of rows without targets (cannot happen: targets required)
        if ft.id not in records:
            records[ft.id] = _run_finetune(suite, ft, out, device, progress, log)
            tally("finetune", records[ft.id])
    loaded.clear()
    doc = table_document(suite, records, reports)
    outputs = {"markdown": out / "table.md", "csv": out / "table.csv", "json": out / "table.json"}
    texts = {"markdown": markdown_table(doc), "csv": csv_table(doc),
             "json": json.dumps(doc, indent=2) + "\n"}
    for kind, p in outputs.items():
        with atomic_output(p, overwrite=True) as tmp:
            Path(tmp).write_text(texts[kind])
    return {"outputs": {k: str(v) for k, v in outputs.items()}, "computed": computed,
            "reused": reused, "table": doc}
