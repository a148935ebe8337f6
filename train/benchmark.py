"""``ces benchmark``: fine-tune once per (base model, source, method), evaluate on every
target, one table per source. Three modules, one concept each: the suite file and its checks
(train/benchmark_suite.py, whose docstring gives the format), running the cells
(train/benchmark_run.py) and the tables (train/benchmark_tables.py).
"""
from __future__ import annotations

from .benchmark_run import finetune_command, run_suite
from .benchmark_suite import METHODS, Suite, load_suite
from .benchmark_tables import csv_table, markdown_table, table_document

__all__ = ["METHODS", "Suite", "load_suite", "run_suite", "table_document", "markdown_table",
           "csv_table", "finetune_command"]
