"""The tables of a benchmark run: one JSON document (:func:`table_document`), and the same as
Markdown (one table per source, the change against the baseline row in parentheses) and CSV.
IoU in the JSON as fractions, in Markdown and CSV in percent.
"""
from __future__ import annotations

import csv
import io
from typing import Optional, Sequence

from .benchmark_suite import Suite
from .markdown import pct, table


# -- the table -------------------------------------------------------------------------------------
def _delta(value: Optional[float], base: Optional[float]) -> Optional[float]:
    return None if value is None or base is None else round(value - base, 6)


def table_document(suite: Suite, records: dict, reports: dict) -> dict:
    """The JSON form of the tables: per source, its targets and rows; each row's per-class IoU
    and mIoU per target (fractions) with the change against the baseline row."""
    names = list(suite.classes.names)
    tables = []
    for t in suite.tables:
        rows = []
        for r in t.rows:
            rec = records.get(r.finetune.id) if r.finetune else None
            cells = {}
            for target in t.targets:
                rep = reports.get((r.model_id, target))
                if rep is not None:
                    cells[target] = {"per_class_iou": {n: rep["per_class_iou"].get(n) for n in names},
                                     "miou": rep["miou"], "overall_accuracy": rep["overall_accuracy"],
                                     "images": rep["images"], "pixels": rep["pixels"],
                                     "wall_s": rep.get("wall_s")}
            rows.append({
                "model": r.base.name, "method": r.method, "model_id": r.model_id,
                "baseline": (r.base.name, r.method) == suite.baseline,
                "trainable_params": rec["trainable_params"] if rec else 0,
                "finetune_wall_s": rec["wall_s"] if rec else None,
                "iterations": rec["iterations"] if rec else 0,
                "finetune": ({k: rec[k] for k in ("id", "settings", "final_loss", "resumed_from",
                                                   "param_digest", "command")} if rec else None),
                "targets": cells})
        base_row = next((x for x in rows if x["baseline"]), None)
        for row in rows:
            for target, cell in row["targets"].items():
                ref = base_row["targets"].get(target) if base_row else None
                if ref is None:
                    continue
                cell["delta"] = {"per_class_iou": {n: _delta(cell["per_class_iou"][n],
                                                             ref["per_class_iou"][n]) for n in names},
                                 "miou": _delta(cell["miou"], ref["miou"])}
        tables.append({"source": t.source, "targets": list(t.targets), "rows": rows})
    return {"suite": str(suite.path), "name": suite.name, "classes": names,
            "baseline": {"base": suite.baseline[0], "method": suite.baseline[1]},
            "evaluate": suite.evaluate,
            "datasets": {n: {"images": len(d.source.images), "stretch": d.source.stretch}
                         for n, d in suite.datasets.items()},
            "tables": tables}


def _columns(names: Sequence[str]) -> list[tuple[str, Optional[str]]]:
    return [("per_class_iou", n) for n in names] + [("miou", None)]


def _value(cell: dict, col: tuple[str, Optional[str]], delta: bool = False) -> Optional[float]:
    src = cell.get("delta") if delta else cell
    if src is None:
        return None
    return src[col[0]][col[1]] if col[1] is not None else src[col[0]]


def markdown_table(doc: dict) -> str:
    """One Markdown table per source: a row per model and method, per-class IoU and mIoU (%)
    per target, the change against the baseline row in parentheses."""
    names = doc["classes"]
    bl = doc["baseline"]
    lines = [f"# {doc['name']}", "",
             f"IoU in %; in parentheses the change against the baseline row "
             f"({bl['base']}, {bl['method']}) in IoU points.", ""]
    for t in doc["tables"]:
        lines += [f"## source: {t['source']}", ""]
        head = ["model", "method", "trainable params", "fine-tune s"]
        for target in t["targets"]:
            head += [f"{target} {n}" for n in names] + [f"{target} mIoU"]
        rows = []
        for row in t["rows"]:
            method = row["method"] + (" (baseline)" if row["baseline"] else "")
            wall = row["finetune_wall_s"]
            cells = [row["model"], method,
                     f"{row['trainable_params']:,}" if row["trainable_params"] else "0",
                     "–" if wall is None else f"{wall:.0f}"]
            for target in t["targets"]:
                cell = row["targets"].get(target)
                for col in _columns(names):
                    if cell is None:
                        cells.append("–")
                        continue
                    text = pct(_value(cell, col))
                    d = _value(cell, col, delta=True)
                    if d is not None and not row["baseline"]:
                        text += f" ({100 * d:+.2f})"
                    cells.append(text)
            rows.append(cells)
        lines += table(head, rows, left=2)
        lines.append("")
    return "\n".join(lines)


def csv_table(doc: dict) -> str:
    """The tables as one CSV: a line per (source, model, method); IoU and changes in %."""
    names = doc["classes"]
    targets = list(dict.fromkeys(t for table in doc["tables"] for t in table["targets"]))
    head = ["source", "model", "method", "baseline", "trainable_params", "finetune_wall_s"]
    for target in targets:
        for col in _columns(names):
            label = f"{target} {col[1] or 'mIoU'}"
            head += [f"{label} IoU %", f"{label} change %"]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(head)
    for t in doc["tables"]:
        for row in t["rows"]:
            line = [t["source"], row["model"], row["method"], int(row["baseline"]),
                    row["trainable_params"],
                    "" if row["finetune_wall_s"] is None else row["finetune_wall_s"]]
            for target in targets:
                cell = row["targets"].get(target)
                for col in _columns(names):
                    v = None if cell is None else _value(cell, col)
                    d = None if cell is None else _value(cell, col, delta=True)
                    line += ["" if v is None else f"{100 * v:.2f}",
                             "" if d is None else f"{100 * d:.2f}"]
            w.writerow(line)
    return buf.getvalue()

