"""What a first-time QGIS user meets, in real QGIS 3.22 in-process: a progress bar that is
determinate from the start on a single chip, the model chooser, help links, toolbox
tooltips and messages in the product's name."""
from __future__ import annotations

import pytest

pytest.importorskip("qgis.core")

from _helpers_qgis import DEMO_SCENE, recording_feedback  # noqa: E402

pytestmark = pytest.mark.qgis

SEGMENTING = "Segmenting the scene, window by window"


def test_a_single_chip_has_a_determinate_bar_that_moves_inside_its_one_window(
        with_venv_ces, tiny_model, tmp_path):
    """The demo chip is one window. The dialog's bar is busy (indeterminate) until a first
    progress change reaches it; QgsFeedback drops changes under 0.1 %. The bar must show a
    percentage at once and move while the one window runs, not jump at its end."""
    import processing

    feedback = recording_feedback()
    seen: list[tuple[str, float]] = []
    feedback.progressChanged.connect(
        lambda value: seen.append((feedback.texts[-1] if feedback.texts else "", value)))
    processing.run("crossearth_sar:segment", {
        "INPUT": str(DEMO_SCENE), "MODEL": str(tiny_model), "TILE": 512, "OVERLAP": 0,
        "DEVICE": 1, "OUTPUT": str(tmp_path / "one.gpkg")}, feedback=feedback)
    assert seen, "no progress reached the dialog"
    first_text, first_value = seen[0]
    assert first_text.startswith("Starting the CrossEarth-SAR engine") and first_value < 1
    inside = [value for text, value in seen if text == SEGMENTING]
    assert len(inside) >= 5, seen          # a step per transformer block of the one window
    assert inside == sorted(inside) and len(set(inside)) == len(inside)
    assert [v for _, v in seen] == sorted(v for _, v in seen) and seen[-1][1] == 100
