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


def test_the_model_list_has_the_built_in_model_then_the_users_newest_first(
        with_venv_ces, tiny_model, tmp_path, monkeypatch):
    """The Model list, read when a dialog opens: the built-in default first, then the models
    of the user's models folder (where Fine-tune keeps them) newest first, then the other
    built-in models. A listed model runs; a file given beside it wins; a listed model that
    was deleted since is refused (by Processing's own check of the list) with nothing written."""
    import os
    import shutil

    import processing
    from qgis.core import QgsApplication, QgsProcessingException

    from crossearth_sar.qgis_plugin.model_choice import models_folder

    monkeypatch.setenv("CES_ENGINE_HOME", str(tmp_path / "engines"))
    folder = models_folder()
    os.makedirs(folder)
    older, newer = os.path.join(folder, "rice_2026-11-02_0930.safetensors"), \
        os.path.join(folder, "floods_2026-12-01_1415.safetensors")
    for path, when in ((older, 1_700_000_000), (newer, 1_760_000_000)):
        shutil.copy(tiny_model, path)
        os.utime(path, (when, when))
    for alg_id, name in (("segment", "MODEL"), ("flood_extent", "MODEL"), ("evaluate", "MODEL"),
                         ("finetune", "BASE")):
        alg = QgsApplication.processingRegistry().createAlgorithmById(f"crossearth_sar:{alg_id}")
        listed = alg.parameterDefinition(name + "_LIST")
        options = listed.options()
        assert options[0] == "ces-s1-water (built-in default)", alg_id
        assert options[1].startswith("floods_2026-12-01_1415 (") and options[2].startswith("rice_")
        assert listed.defaultValue() == options[0]
        assert alg.parameterDefinition(name).description() == "Or a model file"

    feedback = recording_feedback()
    run = {"INPUT": str(DEMO_SCENE), "TILE": 512, "OVERLAP": 0, "DEVICE": 1}
    processing.run("crossearth_sar:segment", {**run, "MODEL_LIST": options[1],
                                               "OUTPUT": str(tmp_path / "a.gpkg")}, feedback=feedback)
    assert f"--model {newer}" in feedback.commands[-1]
    feedback = recording_feedback()
    processing.run("crossearth_sar:segment", {**run, "MODEL_LIST": options[1], "MODEL": older,
                                               "OUTPUT": str(tmp_path / "b.gpkg")}, feedback=feedback)
    assert f"--model {older}" in feedback.commands[-1] and newer not in feedback.commands[-1]
    os.remove(newer)
    with pytest.raises(QgsProcessingException, match="MODEL_LIST"):
        processing.run("crossearth_sar:segment", {**run, "MODEL_LIST": options[1],
                                                   "OUTPUT": str(tmp_path / "c.gpkg")})
    assert not (tmp_path / "c.gpkg").exists()


ALGORITHM_IDS = ("segment", "flood_extent", "prepare", "descriptors", "finetune", "evaluate",
                 "setup_engine")


def _readme_anchors() -> set[str]:
    """The anchors of the README's headings, as GitHub makes them (written out here, not
    taken from the plugin: lower case, punctuation dropped, spaces to hyphens)."""
    import re

    from _helpers_qgis import REPO

    anchors = set()
    for line in (REPO / "README.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            anchors.add(re.sub(r"[^a-z0-9 _-]", "", text).replace(" ", "-"))
    return anchors


def _toolbox_index(model, alg_id: str):
    """The toolbox model's index of an algorithm (a walk over its tree)."""
    from qgis.PyQt.QtCore import QModelIndex

    pending = [QModelIndex()]
    while pending:
        parent = pending.pop()
        for row in range(model.rowCount(parent)):
            index = model.index(row, 0, parent)
            alg = model.algorithmForIndex(index)
            if alg is not None and alg.id() == alg_id:
                return index
            pending.append(index)
    raise AssertionError(f"{alg_id} is not in the toolbox")


def test_help_opens_the_algorithms_readme_section_and_the_toolbox_has_a_tooltip(ces_provider):
    """Help: each algorithm's help link is a README section of its own (not the home page).
    Toolbox: hovering an algorithm shows its one-sentence description (QGIS's own toolbox
    model, the tooltip it draws)."""
    from qgis.core import QgsApplication
    from qgis.gui import QgsProcessingToolboxModel
    from qgis.PyQt.QtCore import Qt

    anchors = _readme_anchors()
    urls = set()
    model = QgsProcessingToolboxModel(None, QgsApplication.processingRegistry())
    for alg_id in ALGORITHM_IDS:
        alg = QgsApplication.processingRegistry().algorithmById(f"crossearth_sar:{alg_id}")
        home, _, anchor = alg.helpUrl().partition("#")
        assert home.startswith("https://github.com/") and anchor in anchors, (alg_id, anchor)
        urls.add(anchor)
        short = alg.shortDescription()
        assert short.endswith(".") and short.count(". ") == 0 and 20 < len(short) < 140, short
        tooltip = model.data(_toolbox_index(model, alg.id()), Qt.ToolTipRole)
        assert short in tooltip and alg.displayName() in tooltip
    assert len(urls) == len(ALGORITHM_IDS)


def test_metadata_and_engine_help_are_current():
    """The plugin manager's "about" and changelog name what the plugin does today, and the
    engine setup's help says how to make a wheel folder for an offline setup."""
    import configparser

    from qgis.core import QgsApplication

    from _helpers_qgis import REPO

    meta = configparser.ConfigParser(interpolation=None)
    meta.read(REPO / "metadata.txt", encoding="utf-8")
    general = meta["general"]
    for text in (general["about"], general["changelog"]):
        assert "Flood extent" in text and "Sentinel-1" in text
    for key in ("homepage", "tracker", "repository"):
        assert general[key].startswith("https://github.com/crossearth-sar/")
    setup = QgsApplication.processingRegistry().algorithmById("crossearth_sar:setup_engine")
    assert "engine_wheels.py" in setup.shortHelpString() and "lock" in setup.shortHelpString()


def test_errors_name_the_product_not_its_command(with_venv_ces, tmp_path):
    """A run the engine refuses says "CrossEarth-SAR", never "ces", a word a QGIS user never
    chose."""
    import re

    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException) as caught:
        processing.run("crossearth_sar:segment", {"INPUT": str(DEMO_SCENE), "MIN_AREA": 1e12,
                                                   "OUTPUT": str(tmp_path / "o.gpkg")})
    message = str(caught.value)
    assert message.startswith("CrossEarth-SAR rejected the input: ") and "Minimum area" in message
    assert not re.search(r"\bces\b", message), message
