"""Whole-model checkpoints: save/load reproduces predict_proba (bit-exact in fp32, 1e-2 with
fp16 storage), the config round trip, and bad files refused by ``ces info`` with exit 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from crossearth_sar.core.errors import InputError
from crossearth_sar.core.models import checkpoints, model as model_mod
from crossearth_sar.crossearth_cli.main import main as ces_main

CES = Path(sys.executable).with_name("ces")
CLASSES = [{"name": "land", "value": 0, "color": "#8c6d31"},
           {"name": "water", "value": 1, "color": "#1f78b4"}]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(model, input, descriptors, checkpoint fp32 path); every weight moved off its init."""
    torch.manual_seed(0)
    model = model_mod.build("ti", classes=CLASSES, experts=2, num_queries=8, enc_layers=1,
                            enc_ffn_dim=64, dec_ffn_dim=64, num_points=1000)
    with torch.no_grad():  # zero-initialized weights too, so that every tensor matters
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    x, d = torch.rand(2, 3, 42, 42), torch.randn(2, 3)
    model.eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    checkpoints.save(model, path, dataset="unit test")
    return model, x, d, path


def test_fp32_save_load_reproduces_predict_proba_bit_exactly(saved):
    model, x, d, path = saved
    loaded = checkpoints.load(path)
    assert isinstance(loaded, model_mod.CrossEarthSAR)
    assert loaded.classes == CLASSES
    config = checkpoints.read_config(path)
    assert config["kind"] == "model" and config["provenance"]["dataset"] == "unit test"
    for key in ("variant", "backbone", "experts", "top_k", "feature_layers", "head", "classes",
                "input", "descriptors"):
        assert config[key] == model.config[key], key
    assert torch.equal(loaded.predict_proba(x, d), model.predict_proba(x, d))


def test_fp16_storage_is_within_1e_2(saved, tmp_path):
    model, x, d, _ = saved
    path = checkpoints.save(model, tmp_path / "half.safetensors", dtype="fp16")
    with safe_open(str(path), framework="pt") as f:
        assert f.get_tensor("head.transformer_decoder.class_embed.weight").dtype == torch.float16
    loaded = checkpoints.load(path)
    diff = (loaded.predict_proba(x, d) - model.predict_proba(x, d)).abs().max().item()
    assert diff <= 1e-2


def _rewrite(src: Path, dst: Path, edit_tensors=None, metadata="keep") -> Path:
    with safe_open(str(src), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    if edit_tensors:
        edit_tensors(tensors)
    save_file(tensors, str(dst), metadata=meta if metadata == "keep" else metadata)
    return dst


def _bad_files(path: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (bad file, text its error message must contain)."""
    dropped = "head.transformer_decoder.class_embed.bias"
    reshaped = "head.transformer_decoder.query_feat.weight"
    return {
        "missing tensor": (_rewrite(path, folder / "missing.safetensors",
                                    lambda t: t.pop(dropped)), dropped),
        "wrong shape": (_rewrite(path, folder / "shape.safetensors",
                                 lambda t: t.__setitem__(reshaped, t[reshaped][:5].clone())), reshaped),
        "no config": (_rewrite(path, folder / "noconfig.safetensors", metadata={"other": "x"}),
                      "config"),
    }


def test_load_refuses_bad_files_naming_the_problem(saved, tmp_path):
    for name, (bad, needle) in _bad_files(saved[3], tmp_path).items():
        with pytest.raises(InputError, match=needle.replace(".", r"\.")) as err:
            checkpoints.load(bad)
        assert str(bad) in str(err.value), name


def test_ces_info_describes_a_model(saved, capsys):
    assert ces_main(["info", "--json", str(saved[3])]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["kind"] == "model" and described["variant"] == "ti"
    assert described["classes"] == ["land", "water"]
    counts = saved[0].parameter_counts()
    assert described["params_total"] == counts["total"]
    assert described["params_active"] == counts["active"]


def test_ces_info_exits_2_on_bad_files(saved, tmp_path, capsys):
    for name, (bad, needle) in _bad_files(saved[3], tmp_path).items():
        code = ces_main(["info", str(bad)])
        err = capsys.readouterr().err
        assert code == 2, f"{name}: exit {code}, stderr {err!r}"
        assert needle in err and bad.name in err, f"{name}: {err!r}"


def test_ces_info_subprocess_exit_status(saved, tmp_path):
    bad, needle = _bad_files(saved[3], tmp_path)["wrong shape"]
    proc = subprocess.run([str(CES), "info", str(bad)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr


def test_ces_models_convert_to_fp16_halves_the_file(tmp_path):
    import subprocess
    import sys

    from crossearth_sar.core.models import checkpoints, model as model_mod

    m = model_mod.build("ti", num_classes=2, num_queries=4, ffn_hidden_dim=64, experts=2)
    src = checkpoints.save(m, tmp_path / "fp32.safetensors")
    out = tmp_path / "fp16.safetensors"
    r = subprocess.run([sys.executable, "-m", "crossearth_sar.crossearth_cli.main", "models",
                        "convert", str(src), "--dtype", "fp16", "-o", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size < 0.55 * src.stat().st_size
    assert checkpoints.read_config(out)["stored_dtype"] == "fp16"
    assert checkpoints.read_config(out)["classes"] == m.config["classes"]
