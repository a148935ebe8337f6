"""A classes file that merges label values (``values: [1, 2]``) in the QGIS algorithms: the
Evaluate dialog's check before running accepts it for ETCI-style labels (0 land, 1 flood,
2 permanent water, 255 nodata) and, without the merge, names the value that does not fit."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("qgis.core")

from _helpers_qgis import DEMO_SCENE  # noqa: E402

pytestmark = pytest.mark.qgis


def _etci_labels(path):
    import rasterio
    from rasterio.transform import from_origin

    v = np.zeros((32, 32), np.uint8)
    v[:, :10], v[:4], v[-2:] = 1, 2, 255
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=1, dtype="uint8",
                       nodata=255, crs="EPSG:32630", transform=from_origin(500000, 4500000, 10, 10)) as dst:
        dst.write(v, 1)
    return path


def test_evaluate_accepts_merged_values_and_names_an_unmerged_one(ces_provider, tmp_path):
    from qgis.core import QgsApplication, QgsProcessingContext

    labels = _etci_labels(tmp_path / "x-0_y-0.tif")
    merged = tmp_path / "etci.yaml"
    merged.write_text("classes:\n  - {name: background, value: 0}\n"
                      "  - {name: water, values: [1, 2]}\nignore: [255]\n")
    single = tmp_path / "flood_only.yaml"
    single.write_text("classes:\n  - {name: background, value: 0}\n  - {name: water, value: 1}\n"
                      "ignore: [255]\n")
    alg = QgsApplication.processingRegistry().createAlgorithmById("crossearth_sar:evaluate")
    params = {"INPUT": [str(DEMO_SCENE)], "LABELS": [str(labels)], "OUTPUT": str(tmp_path / "m.json")}
    ok, message = alg.checkParameterValues({**params, "CLASSES": str(merged)}, QgsProcessingContext())
    assert ok, message
    ok, message = alg.checkParameterValues({**params, "CLASSES": str(single)}, QgsProcessingContext())
    assert not ok and "[2]" in message and "flood_only.yaml" in message
