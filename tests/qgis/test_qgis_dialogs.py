"""The algorithm dialogs as QGIS 3.22 builds them (processing.gui.AlgorithmDialog, shown
offscreen at their default size and laid out by Qt): the Parameters panel needs no horizontal
scrollbar, with the advanced parameters collapsed (QGIS's default) and expanded, every browse
button and label is visible, and the help panel renders one paragraph per paragraph of help.
Widths are in pixels of the offscreen platform's default font (DejaVu Sans 12 pt here)."""
from __future__ import annotations

import re

import pytest

pytest.importorskip("qgis.core")


pytestmark = pytest.mark.qgis

ALGORITHMS = ("segment", "flood_extent", "prepare", "descriptors", "finetune", "evaluate", "setup_engine")

def _panel_states() -> list:
    """(algorithm, advanced expanded) for every algorithm: every label fits the panel either way
    (the longest, "Earth-Adapter frequency cutoff" and "Calibrated (dB, power or amplitude)",
    at most about 344 px of a 376 px panel)."""
    return [pytest.param(name, advanced, id=f"{name}-advanced-{'expanded' if advanced else 'collapsed'}")
            for name in ALGORITHMS for advanced in (False, True)]


def _advanced_group(d):
    """The dialog's collapsible "Advanced Parameters" group (QGIS remembers its state)."""
    from qgis.gui import QgsCollapsibleGroupBox
    from qgis.PyQt import sip
    from qgis.PyQt.QtWidgets import QGroupBox

    group = d.mainWidget().findChild(QGroupBox, "grpAdvanced")
    assert group is not None, "no advanced parameters group"
    return sip.cast(group, QgsCollapsibleGroupBox)


def _lay_out(d, advanced: bool) -> None:
    """Collapse or expand the advanced parameters, then let Qt lay the dialog out."""
    from qgis.core import QgsApplication

    _advanced_group(d).setCollapsed(not advanced)
    for _ in range(3):
        QgsApplication.processEvents()


@pytest.fixture
def dialog(ces_provider):
    """Opens the dialog of an algorithm non-modally at its default size, the advanced
    parameters collapsed; collapses them again (QGIS's default) and closes it after."""
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.core import QgsApplication

    opened = []

    def open_dialog(name: str):
        alg = QgsApplication.processingRegistry().createAlgorithmById(f"crossearth_sar:{name}")
        d = AlgorithmDialog(alg, False, None)
        opened.append(d)
        d.show()
        _lay_out(d, advanced=False)
        return d

    yield open_dialog
    for d in opened:
        _advanced_group(d).setCollapsed(True)
        d.close()
        d.deleteLater()


def _parameters_area(d):
    """The scroll area of the Parameters panel (ParametersPanel's own, not the panel stack's)."""
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QScrollArea

    area = d.mainWidget().findChild(QScrollArea, "scrollArea", Qt.FindDirectChildrenOnly)
    assert area is not None and area.isVisible() and area.widget() is not None, "no visible parameters panel"
    return area


def test_every_algorithm_of_the_provider_is_checked(ces_provider):
    assert {a.name() for a in ces_provider.algorithms()} == set(ALGORITHMS)


@pytest.mark.parametrize("name,advanced", _panel_states())
def test_parameters_need_no_horizontal_scrollbar(dialog, name, advanced):
    from qgis.PyQt.QtWidgets import QLabel

    d = dialog(name)
    _lay_out(d, advanced)
    area = _parameters_area(d)
    needed, width = area.widget().minimumSizeHint().width(), area.viewport().width()
    widest = sorted(((label.sizeHint().width(), label.text()) for label in area.widget().findChildren(QLabel)
                     if label.isVisible()), reverse=True)[:2]
    assert not area.horizontalScrollBar().isVisible() and needed <= width, \
        f"{name}: the parameters need {needed} px in a {width} px panel; widest labels: {widest}"


@pytest.mark.parametrize("name", ALGORITHMS)
def test_buttons_and_labels_are_visible_at_the_default_size(dialog, name):
    from qgis.PyQt.QtCore import QPoint
    from qgis.PyQt.QtWidgets import QLabel, QToolButton

    d = dialog(name)
    area = _parameters_area(d)
    viewport = area.viewport()
    buttons = [b for b in area.widget().findChildren(QToolButton) if b.isVisible() and b.text()]
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
