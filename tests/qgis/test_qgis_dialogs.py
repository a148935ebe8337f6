"""The algorithm dialogs as QGIS 3.22 builds them (processing.gui.AlgorithmDialog, shown
offscreen): at their default size every parameter and its browse button are visible without
a horizontal scrollbar, and the help panel renders one paragraph per paragraph of help."""
from __future__ import annotations

import re

import pytest

pytest.importorskip("qgis.core")


pytestmark = pytest.mark.qgis

ALGORITHMS = ("segment", "descriptors", "finetune", "evaluate", "setup_engine")


@pytest.fixture
def dialog(ces_provider):
    """Opens the dialog of an algorithm non-modally at its default size; closes it after."""
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.core import QgsApplication

    opened = []

    def open_dialog(name: str):
        alg = QgsApplication.processingRegistry().createAlgorithmById(f"crossearth_sar:{name}")
        d = AlgorithmDialog(alg, False, None)
        d.show()
        QgsApplication.processEvents()
        opened.append(d)
        return d

    yield open_dialog
    for d in opened:
        d.close()
        d.deleteLater()


def _parameters_area(d):
    """The scroll area of the Parameters tab (the one holding parameter widgets)."""
    from qgis.PyQt.QtWidgets import QScrollArea

    areas = [a for a in d.findChildren(QScrollArea) if a.widget() is not None and a.isVisible()]
    assert areas, "no visible parameters panel"
    return areas[0]


@pytest.mark.parametrize("name", ALGORITHMS)
def test_dialog_fits_at_its_default_size(dialog, name):
    from qgis.PyQt.QtCore import QPoint
    from qgis.PyQt.QtWidgets import QLabel, QToolButton

    d = dialog(name)
    area = _parameters_area(d)
    assert area.horizontalScrollBar().maximum() == 0, \
        f"{name}: parameters are {area.widget().width()} px wide in a {area.viewport().width()} px panel"
    viewport = area.viewport()
    buttons = [b for b in area.widget().findChildren(QToolButton) if b.isVisible()]
    assert buttons, "no browse buttons found"
    for button in buttons:
        right = button.mapTo(viewport, QPoint(button.width(), 0)).x()
        assert right <= viewport.width(), f"{name}: a '{button.text()}' button is cut off"
    for label in area.widget().findChildren(QLabel):
        if label.isVisible() and label.text():
            right = label.mapTo(viewport, QPoint(label.sizeHint().width(), 0)).x()
            assert right <= viewport.width(), f"{name}: label '{label.text()}' is cut off"


@pytest.mark.parametrize("name", ALGORITHMS)
def test_help_renders_whole_paragraphs(dialog, name):
    """QGIS's help panel makes a paragraph of every newline of the help string: the rendered
    help must have as many paragraphs as the HTML has <p> and <li>, each ending a sentence."""
    from qgis.core import QgsApplication
    from qgis.PyQt.QtWidgets import QTextBrowser

    alg = QgsApplication.processingRegistry().algorithmById(f"crossearth_sar:{name}")
    assert "\n" not in alg.shortHelpString()
    d = dialog(name)
    texts = [t.toPlainText() for t in d.findChildren(QTextBrowser) if t.toPlainText().strip()]
    help_text = [t for t in texts if "CrossEarth" in t or "SAR" in t]
    assert help_text, "the help panel is empty"
    blocks = [b.strip() for b in help_text[0].split("\n") if b.strip()]
    if blocks and blocks[0] == alg.displayName():   # the panel's title
        blocks = blocks[1:]
    expected = len(re.findall(r"<(p|li)>", alg.shortHelpString()))
    assert len(blocks) >= expected
    for block in blocks[:expected]:
        assert block[-1] in ".:)", f"{name}: a paragraph breaks mid-sentence: {block!r}"


def test_options_page_setting_is_short(ces_provider):
    """The 'ces executable' row of Settings > Options > Processing must not push the value
    column off the page."""
    from processing.core.ProcessingConfig import ProcessingConfig

    from crossearth_sar.qgis_plugin.ces_process import SETTING_CES_EXECUTABLE

    assert len(ProcessingConfig.settings[SETTING_CES_EXECUTABLE].description) <= 40
