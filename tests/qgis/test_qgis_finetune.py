"""Fine-tuning from the QGIS Processing Toolbox in real QGIS 3.22: on digitized polygons then
evaluated, and a cancelled fine-tune that keeps its checkpoint and continues."""
from __future__ import annotations

import pytest

pytest.importorskip("qgis.core")

from _helpers_qgis import (  # noqa: E402
    DEMO_LABELS,
    DEMO_SCENE,
    digitized_polygons,
    recording_feedback,
)

pytestmark = pytest.mark.qgis



def _run(alg: str, params: dict, feedback=None):
    import processing

    return processing.run(f"crossearth_sar:{alg}", params, feedback=feedback)


def _digitized_polygons():
    """Two rectangles over the demo scene (EPSG:4326), classes by name in the field 'cover'."""
    return digitized_polygons("EPSG:4326", {"water": (-0.7480, 38.1000, -0.7420, 38.1060),
                                            "land": (-0.7800, 38.1200, -0.7740, 38.1260)})


@pytest.mark.slow
def test_finetune_on_digitized_polygons_then_evaluate(with_venv_ces, tiny_model, tmp_path):
    """Fine-tune (1 iteration) from a memory polygon layer, then evaluate a model against the
    demo label raster (-1 ignored by a classes file): a model file, a metrics JSON and an
    HTML report. About 40 s on 2 busy cores: slow."""
    import json

    from crossearth_sar.core.models import checkpoints

    polygons = _digitized_polygons()
    model_out = tmp_path / "local.safetensors"
    feedback = recording_feedback()
    result = _run("finetune", {"INPUT": [str(DEMO_SCENE)], "LABELS": polygons,
                               "CLASS_FIELD": "cover", "BASE": str(tiny_model),
                               "ITERATIONS": 1, "BATCH": 1, "TILE": 64, "DEVICE": 1,
                               "OUTPUT": str(model_out)}, feedback)
    assert result["OUTPUT"] == str(model_out) and model_out.is_file()
    names = {c["name"] for c in checkpoints.read_config(model_out)["classes"]}
    assert {"water", "land"} <= names
    assert not list(tmp_path.glob("*.ckpt"))     # training checkpoints stay in the temp folder

    metrics_json, report = tmp_path / "metrics.json", tmp_path / "report.html"
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"classes": [
        {"name": "land", "value": 0, "color": "#33a02c"},
        {"name": "water", "value": 1, "color": "#1f78b4"}], "ignore": [-1]}))
    result = _run("evaluate", {"INPUT": [str(DEMO_SCENE)], "LABELS": [str(DEMO_LABELS)],
                               "MODEL": str(tiny_model), "TILE": 512, "DEVICE": 1,
                               "CLASSES": str(classes),
                               "OUTPUT": str(metrics_json), "OUTPUT_HTML": str(report)})
    metrics = json.loads(metrics_json.read_text())
    assert 0.0 <= result["MIOU"] <= 1.0 and result["MIOU"] == metrics["miou"]
    assert result["OVERALL_ACCURACY"] == metrics["overall_accuracy"]
    text = report.read_text()
    assert "mIoU" in text and all(str(n) in text for n in metrics["classes"])
    del polygons


def test_cancelled_finetune_keeps_its_checkpoint_and_continues(with_venv_ces, tiny_model,
                                                               tmp_path):
    """Cancel keeps the checkpoint beside the output (NAME.ckpt), the message says
    how to go on, and 'Continue a cancelled run' finishes it; a finished run leaves none."""
    from qgis.core import QgsProcessingException

    polygons = _digitized_polygons()
    out = tmp_path / "local.safetensors"
    params = {"INPUT": [str(DEMO_SCENE)], "LABELS": polygons, "CLASS_FIELD": "cover",
              "BASE": str(tiny_model), "ITERATIONS": 60, "BATCH": 1, "TILE": 64, "DEVICE": 1,
              "OUTPUT": str(out)}
    feedback = recording_feedback(cancel_when_progress_above=30.0)
    with pytest.raises(QgsProcessingException) as err:
        _run("finetune", params, feedback)
    ckpt = tmp_path / "local.ckpt"
    assert (ckpt / "last.safetensors").is_file()
    assert str(ckpt) in str(err.value) and "Continue a cancelled run" in str(err.value)
    assert not out.exists()
    result = _run("finetune", {**params, "RESUME": True})
    assert result["OUTPUT"] == str(out) and out.is_file() and not ckpt.exists()
    with pytest.raises(QgsProcessingException, match="no checkpoint"):
        _run("finetune", {**params, "RESUME": True, "OUTPUT": str(tmp_path / "other.safetensors")})
    del polygons


def test_class_field_default_is_a_class_like_text_field_never_fid():
    from qgis.core import QgsField, QgsFields
    from qgis.PyQt.QtCore import QVariant

    from crossearth_sar.qgis_plugin.finetune_algorithm import default_class_field

    def fields(*spec):
        out = QgsFields()
        for name, kind in spec:
            out.append(QgsField(name, kind))
        return out

    assert default_class_field(fields(("fid", QVariant.LongLong), ("name", QVariant.String),
                                      ("landcover", QVariant.String))) == "landcover"
    assert default_class_field(fields(("fid", QVariant.LongLong), ("class_id", QVariant.Int),
                                      ("note", QVariant.String))) == "class_id"
    assert default_class_field(fields(("fid", QVariant.LongLong), ("area", QVariant.Double),
                                      ("cover", QVariant.String))) == "cover"
    assert default_class_field(fields(("fid", QVariant.LongLong))) is None


def test_finetune_with_fid_as_class_field_uses_the_class_field_of_the_layer(with_venv_ces, tiny_model,
                                                                           tmp_path):
    from qgis.core import QgsProcessingContext

    from crossearth_sar.qgis_plugin.finetune_algorithm import FinetuneAlgorithm

    alg = FinetuneAlgorithm()
    alg.initAlgorithm()
    feedback = recording_feedback()
    polygons = _digitized_polygons()
    picked = alg.class_field({"LABELS": polygons, "CLASS_FIELD": "fid"}, QgsProcessingContext(), feedback)
    assert picked == "cover" and "Class field: cover" in feedback.infos
