"""The QGIS Fine-tune algorithm's Earth-Adapter options in real QGIS 3.22: the
advanced parameters, and a real ``ces finetune`` run from a polygon layer that gets
``--peft earth-adapter --adapter-rank R --adapter-cutoff C`` and writes a model with them."""
from __future__ import annotations

import pytest

pytest.importorskip("qgis.core")

from _helpers_qgis import (  # noqa: E402
    digitized_polygons,
    recording_feedback,
    write_synthetic_scene,
)

pytestmark = pytest.mark.qgis


def _polygons():
    """Two digitized rectangles (classes by name) over the synthetic scene (EPSG:32630)."""
    return digitized_polygons("EPSG:32630", {"water": (500100, 4499300, 500500, 4499700),
                                             "land": (500700, 4499100, 500950, 4499900)})


def test_finetune_offers_earth_adapter_as_advanced_options(ces_provider):
    from qgis.core import QgsApplication, QgsProcessingParameterDefinition

    alg = QgsApplication.processingRegistry().algorithmById("crossearth_sar:finetune")
    peft, rank, cutoff = (alg.parameterDefinition(n) for n in ("PEFT", "ADAPTER_RANK", "ADAPTER_CUTOFF"))
    for p in (peft, rank, cutoff):
        assert p is not None and p.flags() & QgsProcessingParameterDefinition.FlagAdvanced
    assert peft.defaultValue() == 0 and "Decoder only" in peft.options()[0]
    assert "Earth-Adapter" in peft.options()[1]
    assert rank.defaultValue() == 64 and rank.minimum() == 1
    assert cutoff.defaultValue() == pytest.approx(0.3) and cutoff.maximum() == 1.0
    assert "Earth-Adapter" in alg.shortHelpString()


def test_finetune_adapter_arguments(ces_provider):
    """The ces arguments of the method choice: none for decoder-only (ces's default)."""
    from qgis.core import QgsApplication, QgsProcessingContext

    alg = QgsApplication.processingRegistry().algorithmById("crossearth_sar:finetune")
    context = QgsProcessingContext()
    assert alg.peft_args({"PEFT": 0, "ADAPTER_RANK": 8}, context) == []
    assert alg.peft_args({"PEFT": 1}, context) == [
        "--peft", "earth-adapter", "--adapter-rank", 64, "--adapter-cutoff", "0.3"]
    assert alg.peft_args({"PEFT": 1, "ADAPTER_RANK": 16, "ADAPTER_CUTOFF": 0.25}, context) == [
        "--peft", "earth-adapter", "--adapter-rank", 16, "--adapter-cutoff", "0.25"]


@pytest.mark.slow
def test_finetune_with_earth_adapter_passes_its_options_to_ces(with_venv_ces, tiny_model, tmp_path):
    """A real 1-iteration fine-tune with Earth-Adapter rank 8, cutoff 0.5: the ces command
    line carries them and the model file holds the adapter with them. About 40 s on 2 busy
    cores (a ces process, torch, a training step): slow, as the other QGIS fine-tune run."""
    import processing

    from crossearth_sar.core.models import checkpoints
    from crossearth_sar.crossearth_cli import model_description

    scene = write_synthetic_scene(tmp_path / "scene.tif", size=128)
    polygons = _polygons()
    out = tmp_path / "adapted.safetensors"
    feedback = recording_feedback()
    result = processing.run("crossearth_sar:finetune", {
        "INPUT": [str(scene)], "LABELS": polygons, "CLASS_FIELD": "cover", "BASE": str(tiny_model),
        "ITERATIONS": 1, "BATCH": 2, "TILE": 64, "DEVICE": 1, "PEFT": 1, "ADAPTER_RANK": 8,
        "ADAPTER_CUTOFF": 0.5, "OUTPUT": str(out)}, feedback=feedback)
    assert result["OUTPUT"] == str(out) and out.is_file()
    command = " ".join(feedback.commands)
    assert "--peft earth-adapter --adapter-rank 8 --adapter-cutoff 0.5" in command, command
    config = checkpoints.read_config(out)
    assert config["backbone"]["adapter"] == {"kind": "earth-adapter", "rank": 8, "cutoff": 0.5}
    assert model_description.describe(out)["adapter_params"] > 0
    del polygons
