"""Markdown tables of the reports (``ces evaluate``, ``ces agreement``, ``ces benchmark``): one
home for the pipes, the alignment row and how a fraction is shown.

* :func:`table` ``(header, rows, left=1) -> [line, ...]``: a header row, the alignment row (the
  first ``left`` columns left-aligned, the others right-aligned: numbers), one line per row;
  cells are written with ``str``; an empty header cell stays empty (``| |``).
* :func:`pct` ``(fraction or None) -> str``: a fraction 0..1 as a percentage with two decimals,
  "n/a" for None.
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence


def _row(cells: Sequence[object]) -> str:
    return "|" + "|".join(f" {c} " if str(c) else " " for c in cells) + "|"


def table(header: Sequence[object], rows: Iterable[Sequence[object]], left: int = 1) -> list[str]:
    """The lines of one Markdown table (module doc)."""
    align = "|" + "---|" * left + "---:|" * (len(header) - left)
    return [_row(header), align, *(_row(r) for r in rows)]


def pct(v: Optional[float]) -> str:
    """A fraction as a percentage with two decimals; "n/a" for None."""
    return "n/a" if v is None else f"{100 * v:.2f}"
