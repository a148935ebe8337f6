"""The expert-activation plot is drawn with Pillow, so an engine without matplotlib (the QGIS
plugin's own) writes it too."""
from __future__ import annotations

import subprocess
import sys

from PIL import Image

CODE = """
import sys
sys.modules["matplotlib"] = None          # as if matplotlib were not installed
from crossearth_sar.train.expert_stats import expert_report, plot_expert_report
import numpy as np
report = expert_report(np.array([[10, 30, 0, 60], [25, 25, 25, 25], [0, 0, 100, 0]]))
plot_expert_report(report, sys.argv[1], "experts: test")
"""


def test_expert_plot_without_matplotlib(tmp_path):
    out = tmp_path / "experts.png"
    subprocess.run([sys.executable, "-c", CODE, str(out)], check=True)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width >= 4 * 44 and im.height >= 3 * 20
        colours = im.convert("RGB").getcolors(100000)
    # six distinct shares (0, 10, 25, 30, 60, 100 %) give six cell colours, on a white page
    assert (255, 255, 255) in {c for _, c in colours} and len(colours) >= 7, colours
