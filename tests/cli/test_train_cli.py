"""``ces finetune`` / ``ces pretrain`` / ``ces evaluate`` end to end, and their input errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from crossearth_sar.core.models import checkpoints
from crossearth_sar.crossearth_cli.main import main

from _helpers_train import ombria_balanced, tiny_model, write_png


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    """A small ``ti`` model file to fine-tune from."""
    path = tmp_path_factory.mktemp("base") / "tiny.safetensors"
    checkpoints.save(tiny_model(), path)
    return path


def _pngs(folder, n=2, water_value=255):
    img, lab = folder / "img", folder / "lab"
    img.mkdir(exist_ok=True), lab.mkdir(exist_ok=True)
    for i in range(n):
        v = np.full((32, 32), 180, np.uint8)
        v[:, : 8 + 4 * i] = 30
        write_png(img / f"S1_after_{i:04d}.png", v)
        write_png(lab / f"S1_mask_{i:04d}.png", np.where(v < 100, water_value, 0))
    return img, lab


def test_class_value_missing_from_classes_file_exits_2(tmp_path, tiny_base, capsys):
    img, lab = _pngs(tmp_path)
    cls = tmp_path / "classes.yaml"
    cls.write_text('classes: [{name: background, value: 0, color: "#000000"}]\n')
    code = main(["finetune", "--model", str(tiny_base), "--images", str(img), "--labels", str(lab),
                 "--classes", str(cls), "--iters", "1", "-o", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "label value 255" in err and "S1_mask_0000.png" in err
    assert not (tmp_path / "o.safetensors").exists()


def test_empty_label_set_exits_2(tmp_path, tiny_base, capsys):
    img, lab = _pngs(tmp_path)
    cls = tmp_path / "classes.yaml"
    cls.write_text("classes: [{name: water, value: 255}]\nignore: [0]\n")
    for f in lab.iterdir():   # every label pixel ignored
        write_png(f, np.zeros((32, 32)))
    code = main(["finetune", "--model", str(tiny_base), "--images", str(img), "--labels", str(lab),
                 "--classes", str(cls), "--iters", "1", "-o", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "empty" in err


def test_unpaired_files_exit_2(tmp_path, tiny_base, capsys):
    img, lab = _pngs(tmp_path, n=2)
    (lab / "S1_mask_0001.png").rename(lab / "S1_mask_0007.png")
    code = main(["finetune", "--model", str(tiny_base), "--images", str(img), "--labels", str(lab),
                 "--iters", "1", "-o", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "S1_after_0001.png" in err and "S1_mask_0007.png" in err


def test_pretrain_from_a_backbone_trains_everything(tmp_path, capsys):
    img, lab = _pngs(tmp_path, n=2)
    model = tiny_model()
    backbone = tmp_path / "init.safetensors"
    checkpoints.save(model.backbone, backbone)       # kind "backbone", like an imported DINOv2
    out = tmp_path / "cpt.safetensors"
    code = main(["pretrain", "--model", str(backbone), "--images", str(img), "--labels", str(lab),
                 "--tile", "32", "--iters", "1", "--batch", "2", "--progress", "json", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    done = json.loads(captured.out.strip().splitlines()[-1])
    assert all(json.loads(line)["event"] for line in captured.out.strip().splitlines())
    # the training log stays readable with --progress json: on stderr, where QGIS shows it
    assert "ces pretrain: iter 1/1 loss" in captured.err
    trained = checkpoints.load(out)
    assert done["trainable_params"] == sum(p.numel() for p in trained.parameters())
    assert trained.config["kind"] == "model" and trained.config["provenance"]["trained"] == "pretrain"
    assert trained.config["provenance"]["train_config"]["lr"] == 3e-5   # the paper's default


def test_finetune_ombria_learns_and_evaluates(tmp_path, tiny_base, shared_data, capsys):
    """A small real fine-tune: the loss falls and held-out OMBRIA tiles gain at least 0.1 mIoU
    over the random init (30 iterations; input contract 3 keeps each tile's estimated
    calibration instead of stretching it, so a random tiny model needs more steps to reach
    Otsu's 0.72 on these 4 test tiles)."""
    train_img, train_lab = ombria_balanced(shared_data, "train", 12)
    test_img, test_lab = ombria_balanced(shared_data, "test", 4)
    out = tmp_path / "water.safetensors"
    args = ["finetune", "--model", str(tiny_base), "--unfreeze", "--tile", "64", "--batch", "4",
            "--iters", "30", "--lr", "1e-3", "--warmup", "3", "--progress", "json", "-o", str(out)]
    for f in train_img:
        args += ["--images", str(f)]
    for f in train_lab:
        args += ["--labels", str(f)]
    assert main(args) == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert done["event"] == "done" and done["outputs"]["model"] == str(out)
    assert done["final_loss"] < done["first_loss"]        # means of the first / last 3 steps
    config = checkpoints.read_config(out)
    stats = config["descriptors"]["train_stats"]
    assert stats["tiles"] == 12 * 16 and set(stats) >= {"H_DE", "ENL", "R_LR"}  # 64-px tiles
    assert set(stats["ENL"]) == {"mean", "std", "p01", "p99"}
    assert [c["value"] for c in config["classes"]] == [0, 255]

    report = tmp_path / "eval.json"
    args = ["evaluate", "--model", str(out), "--tile", "64", "--json", str(report),  # sliding windows
            "--source", "ombria-train", "--target", "ombria-test"]
    for f in test_img:
        args += ["--images", str(f)]
    for f in test_lab:
        args += ["--labels", str(f)]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "| **mIoU** |" in table
    r = json.loads(report.read_text())
    assert set(r) >= {"miou", "per_class_iou", "overall_accuracy", "confusion_matrix",
                      "expert_activation", "source", "target"}
    assert r["target"] == "ombria-test" and r["pixels"] == 4 * 256 * 256
    layers = r["expert_activation"]["layers"]
    assert len(layers) == 12 and all(abs(sum(l["fractions"]) - 1) < 1e-3 for l in layers)
    assert (tmp_path / "eval.experts.png").stat().st_size > 1000
    base_report = tmp_path / "base.json"
    (tmp_path / "water.classes.yaml").write_text(
        "classes:\n  - {name: background, value: 0}\n  - {name: water, value: 255}\n")
    args = ["evaluate", "--model", str(tiny_base), "--tile", "64", "--json", str(base_report),
            "--classes", str(tmp_path / "water.classes.yaml")]
    for f in test_img:
        args += ["--images", str(f)]
    for f in test_lab:
        args += ["--labels", str(f)]
    assert main(args) == 0, capsys.readouterr().err
    base = json.loads(base_report.read_text())["miou"]
    assert r["miou"] > base + 0.1 and r["miou"] > 0.45, (base, r)


def test_pretrain_adds_a_refiner_and_records_the_jittered_pixel_sizes(tmp_path, tiny_base, capsys):
    img, lab = _pngs(tmp_path, n=2)
    out = tmp_path / "refined.safetensors"
    code = main(["pretrain", "--model", str(tiny_base), "--images", str(img), "--labels", str(lab),
                 "--tile", "32", "--iters", "2", "--batch", "2", "--refine", "--scale-jitter", "1,2",
                 "--pixel-size", "10", "--progress", "none", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "re-initialized: refiner (new)" in err
    trained = checkpoints.load(out)
    assert trained.refiner is not None and trained.config["refine"]["width"] == 16
    assert trained.config["input"]["multilook"] == [1, 2]
    assert trained.config["input"]["pixel_sizes_m"] == [10.0, 20.0]
    assert trained.config["provenance"]["train_config"]["scale_jitter"] == [1, 2]
    assert abs(trained.refiner.out.weight).sum() > 0          # the new refiner trained


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_refiner_only_trains_the_refiner_and_nothing_else(tmp_path, tiny_base, capsys, command):
    img, lab = _pngs(tmp_path, n=2)
    out = tmp_path / "sharper.safetensors"
    code = main([command, "--model", str(tiny_base), "--images", str(img), "--labels", str(lab),
                 "--tile", "32", "--iters", "2", "--batch", "2", "--refiner-only", "--lr", "1e-2",
                 "--progress", "none", "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "5,410 trainable parameters, re-initialized: refiner (new)" in err
    base, trained = checkpoints.load(tiny_base), checkpoints.load(out)
    before, after = base.state_dict(), trained.state_dict()
    changed = sorted(k for k in after if k not in before or not (after[k] == before[k]).all())
    assert changed and all(k.startswith("refiner.") for k in changed), changed[:5]
    assert abs(trained.refiner.out.weight).sum() > 0          # the new refiner trained


@pytest.mark.parametrize("extra, why", [
    (["--unfreeze"], "cannot be combined with --unfreeze"),
    (["--peft", "earth-adapter"], "cannot be combined with --peft earth-adapter"),
    (["--classes", "CLASSES"], "3 classes (land, water, ice), but the base model's frozen head has 2"),
])
def test_refiner_only_refuses_what_would_train_more(tmp_path, tiny_base, capsys, extra, why):
    img, lab = _pngs(tmp_path, n=1)
    classes = tmp_path / "three.yaml"
    classes.write_text("classes:\n  - {name: land, value: 0}\n  - {name: water, value: 255}\n"
                       "  - {name: ice, value: 9}\n")
    extra = [str(classes) if a == "CLASSES" else a for a in extra]
    out = tmp_path / "o.safetensors"
    code = main(["finetune", "--model", str(tiny_base), "--images", str(img), "--labels", str(lab),
                 "--tile", "32", "--iters", "1", "--refiner-only", *extra, "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and why in err and "Traceback" not in err, err
    assert err.count("\n") == 1 and not out.exists()


def test_refiner_only_refuses_a_random_start(tmp_path, capsys):
    img, lab = _pngs(tmp_path, n=1)
    code = main(["pretrain", "--images", str(img), "--labels", str(lab), "--tile", "32",
                 "--iters", "1", "--refiner-only", "-o", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "--refiner-only needs a whole trained model as its base" in err, err


def test_scale_jitter_flag_refuses_non_factors(tmp_path, tiny_base, capsys):
    img, lab = _pngs(tmp_path, n=1)
    code = main(["pretrain", "--model", str(tiny_base), "--images", str(img), "--labels", str(lab),
                 "--scale-jitter", "1,x", "-o", str(tmp_path / "o.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and "--scale-jitter" in err and "Traceback" not in err
