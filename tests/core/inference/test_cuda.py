"""The CUDA paths (bf16 autocast, blending on the GPU, a training step, a whole segment run)
against the CPU. Marked ``cuda``: they skip without CUDA; benchmarks/gpu_suite.sh runs them
first on a lent GPU (``pytest -m cuda``)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "examples" / "Spain_7370579_S1Hand.tif"
sys.path.insert(0, str(ROOT / "benchmarks"))


def _class_maps(scene_path, predict, device, classes=3, tile=128, overlap=32, batch=4):
    from crossearth_sar.core.inference import tiler
    from crossearth_sar.core.scene import sar_io

    with sar_io.open_scene(scene_path) as scene:
        cls = np.zeros((scene.height, scene.width), np.uint8)
        conf = np.zeros((scene.height, scene.width), np.float32)

        def sink(row0, c, f):
            cls[row0:row0 + c.shape[0]], conf[row0:row0 + c.shape[0]] = c, f

        tiler.run_tiled(scene, predict, classes, sink, tile=tile, overlap=overlap, batch=batch,
                        device=torch.device(device))
    return cls, conf


def test_gpu_blending_equals_cpu_blending(tmp_path):
    from gpu_suite import fixed_predict

    from bench_segment import write_synthetic_scene

    scene = write_synthetic_scene(tmp_path / "s.tif", 700, seed=1, db=True)
    c0, f0 = _class_maps(scene, fixed_predict(), "cpu")
    c1, f1 = _class_maps(scene, fixed_predict(), "cuda")
    assert np.array_equal(np.isfinite(f0), np.isfinite(f1))
    ok = np.isfinite(f0)
    assert np.abs(f0[ok] - f1[ok]).max() < 1e-4
    assert (c0 == c1).mean() > 0.9999


def test_bf16_predictions_agree_with_fp32_on_the_demo_chip():
    from rasterio.windows import Window

    from crossearth_sar.core.models import checkpoints
    from crossearth_sar.core.models.model import trained_bands
    from crossearth_sar.core.scene import sar_io
    from crossearth_sar.crossearth_cli.segment_cmd import default_model_path

    net = checkpoints.load(default_model_path()).cuda().eval()
    with sar_io.open_scene(DEMO, prefer=trained_bands(net.config)) as scene:
        d = scene.read_window(Window(0, 0, scene.width, scene.height))
    x = torch.from_numpy(d.x)[None].cuda()
    valid = torch.from_numpy(d.valid)[None].cuda()
    with torch.inference_mode():
        desc = net.compute_descriptors(torch.from_numpy(d.phys)[None].cuda(), valid)
        fp32 = net.predict_proba(x, desc)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = net.predict_proba(x, desc).float()
        cpu = net.cpu().predict_proba(x.cpu(), desc.cpu())
    assert (fp32.argmax(1) == bf16.argmax(1))[valid].float().mean() > 0.99
    assert (fp32.argmax(1).cpu() == cpu.argmax(1))[valid.cpu()].float().mean() > 0.999


def test_training_step_under_bf16_autocast():
    from crossearth_sar.core.models import model as model_mod

    torch.manual_seed(0)
    net = model_mod.build("ti", num_classes=2).cuda().train()
    x, desc = torch.rand(2, 3, 112, 112, device="cuda"), torch.rand(2, 3, device="cuda")
    target = (torch.rand(2, 112, 112, device="cuda") > 0.5).long()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = net(x, desc)
    loss, info = net.loss(out, target)
    loss.backward()
    assert np.isfinite(info["total"])
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in net.parameters())
    assert net.head.transformer_decoder.query_feat.weight.grad.abs().sum() > 0


def test_segment_scene_on_cuda_matches_cpu(tmp_path):
    import rasterio

    from crossearth_sar.core.inference import pipeline
    from crossearth_sar.crossearth_cli.segment_cmd import default_model_path

    runs = {}
    for dev in ("cpu", "cuda"):
        pipeline.segment_scene(DEMO, default_model_path(), tmp_path / f"{dev}.gpkg",
                               raster=tmp_path / f"{dev}.tif", device=dev)
        with rasterio.open(tmp_path / f"{dev}.tif") as src:
            runs[dev] = src.read(1)
    assert (runs["cpu"] == runs["cuda"]).mean() > 0.99


def test_finetune_on_cuda_in_one_process(tmp_path):
    """`ces finetune --device cuda` without torchrun (the GPU suite found it failing: the
    device had no index for torch.cuda.set_device)."""
    from click.testing import CliRunner

    from crossearth_sar.core.inference.devices import resolve_device
    from crossearth_sar.core.models import checkpoints
    from crossearth_sar.crossearth_cli.main import cli

    from _helpers_train import tiny_model, write_label, write_scene

    assert resolve_device("cuda").index is not None and resolve_device("auto").index is not None
    truth = write_scene(tmp_path / "img.tif", size=64, seed=0, water_box=(4, 20, 6, 30))
    write_label(tmp_path / "lab.tif", truth)
    checkpoints.save(tiny_model(), tmp_path / "base.safetensors")
    result = CliRunner().invoke(cli, [
        "finetune", "--model", str(tmp_path / "base.safetensors"), "--images",
        str(tmp_path / "img.tif"), "--labels", str(tmp_path / "lab.tif"), "--tile", "32",
        "--batch", "2", "--iters", "3", "--warmup", "0", "--device", "cuda",
        "-o", str(tmp_path / "out.safetensors")])
    assert result.exit_code == 0, result.output
    assert checkpoints.load(tmp_path / "out.safetensors").num_classes == 2
