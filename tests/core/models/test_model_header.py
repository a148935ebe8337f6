"""A model file's header read without torch (core/models/model_header.py): a corrupt or truncated
model is refused with one line before torch is imported (within 1.5 s instead of
3 s), and a good one gives the same config as core.models.checkpoints."""
from __future__ import annotations

import subprocess
import sys

import pytest

from crossearth_sar.core.errors import InputError
from crossearth_sar.core.models import model_header

MODEL = "models/ces-s1-water.safetensors"


def test_header_of_the_shipped_model(repo_root):
    from crossearth_sar.core.models import checkpoints

    cfg = model_header.read_config(repo_root / MODEL)
    assert cfg["kind"] == "model" and cfg == checkpoints.read_config(repo_root / MODEL)


@pytest.mark.parametrize("cut, message", [(5, "5 bytes"), (3000, "header length"),
                                          (None, "ends at byte")])
def test_truncated_or_garbage_files_are_refused(tmp_path, repo_root, cut, message):
    data = (repo_root / MODEL).read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(data[:cut] if cut else data[: len(data) // 2])
    with pytest.raises(InputError, match=message) as err:
        model_header.read_config(bad)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    text = tmp_path / "text.safetensors"
    text.write_bytes(b"\xff" * 8 + b"not a model at all")
    with pytest.raises(InputError, match="not a readable .safetensors"):
        model_header.read_config(text)


CHECK = """
import sys
from crossearth_sar.crossearth_cli.main import main
rc = main(sys.argv[2:])
assert rc == 2, rc
assert "torch" not in sys.modules, "torch was imported before the model was refused"
print("refused without torch", sys.argv[1])
"""


@pytest.mark.parametrize("command", ["segment", "evaluate"])
def test_cli_refuses_a_corrupt_model_before_importing_torch(tmp_path, repo_root, command):
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes((repo_root / MODEL).read_bytes()[:3000])
    scene = str(repo_root / "examples" / "Spain_7370579_S1Hand.tif")
    labels = str(repo_root / "examples" / "Spain_7370579_LabelHand.tif")
    args = ({"segment": [scene, "-o", str(tmp_path / "o.gpkg")],
             "evaluate": ["--images", scene, "--labels", labels]}[command]
            + ["--model", str(bad)])
    r = subprocess.run([sys.executable, "-c", CHECK, command, command, *args],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "not a readable .safetensors model" in r.stderr
    assert not (tmp_path / "o.gpkg").exists()
