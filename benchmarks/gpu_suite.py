"""The measurements of benchmarks/gpu_suite.sh, one sub-command each; results as JSON.

Each sub-command prints one line of figures and writes ``OUT/<name>.json``. Without
``--smoke`` they need CUDA (without it they say so and exit 0); ``--smoke`` shrinks every
size so that the whole suite runs on a CPU in about a minute (it tests the suite, not the
GPU).

    python benchmarks/gpu_suite.py blend    --out OUT [--smoke]   # GPU vs CPU blending
    python benchmarks/gpu_suite.py bf16     --out OUT [--smoke]   # bf16 vs fp32 predictions
    python benchmarks/gpu_suite.py ddp      --out OUT [--smoke]   # 2-process DDP (else 1)
    python benchmarks/gpu_suite.py train    --out OUT [--smoke]   # step time, ti and s
    python benchmarks/gpu_suite.py segment  --out OUT [--smoke]   # ces segment, ti / s / l
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_segment import write_synthetic_scene  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO_SCENE = ROOT / "examples" / "Spain_7370579_S1Hand.tif"

#: full sizes (a lent GPU) and smoke sizes (a CPU test of the suite itself)
SIZES = {
    "full": {"blend_scene": 4096, "tile": 512, "overlap": 128, "batch": 16, "bf16_windows": 16,
             "train_batch": 32, "train_tile": 512, "train_steps": 5,
             "scene": (25000, 17000), "variants": ("ti", "s", "l"), "ddp_iters": 4},
    "smoke": {"blend_scene": 300, "tile": 64, "overlap": 16, "batch": 2, "bf16_windows": 2,
              "train_batch": 2, "train_tile": 56, "train_steps": 1,
              "scene": (260, 200), "variants": ("ti",), "ddp_iters": 1},
}


def device_or_none(smoke: bool):
    """The device to measure on: CUDA, or the CPU in smoke mode; None when there is no GPU."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu") if smoke else None


def write_result(out: Path, name: str, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in result.items()
                                  if not isinstance(v, (dict, list))), flush=True)


def _device_info(dev) -> dict:
    import torch

    info = {"device": str(dev), "torch": torch.__version__}
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


# -- blending ------------------------------------------------------------------------------
def fixed_predict(num_classes: int = 3):
    """A deterministic per-pixel classifier (fp32 even under autocast): the blending, not a
    network, is compared."""
    import torch

    def predict(x, phys, valid):
        with torch.autocast(device_type=x.device.type, enabled=False):
            x = x.float()
            g = torch.Generator().manual_seed(0)
            w = torch.randn(num_classes, 3, generator=g).to(x.device)
            yy = torch.linspace(0, 3.0, x.shape[-2], device=x.device)[:, None]
            xx = torch.linspace(0, 2.0, x.shape[-1], device=x.device)[None, :]
            logits = torch.einsum("kc,bchw->bkhw", w, x) * 4.0 + torch.stack(
                [torch.sin(yy + xx * k) for k in range(num_classes)])[None]
            return logits.softmax(1)

    return predict


def _tiled_maps(scene_path: Path, predict, tile: int, overlap: int, batch: int, device):
    """(classes, confidence, seconds) of the tiler's streamed run over the scene."""
    from crossearth_sar.core.inference import tiler
    from crossearth_sar.core.scene import sar_io

    with sar_io.open_scene(scene_path) as scene:
        cls = np.zeros((scene.height, scene.width), np.uint8)
        conf = np.zeros((scene.height, scene.width), np.float32)

        def sink(row0, c, f):
            cls[row0:row0 + c.shape[0]], conf[row0:row0 + c.shape[0]] = c, f

        t0 = time.perf_counter()
        tiler.run_tiled(scene, predict, 3, sink, tile=tile, overlap=overlap, batch=batch, device=device)
    return cls, conf, time.perf_counter() - t0


def untiled_reference(scene_path: Path, predict, num_classes: int, tile: int, overlap: int):
    """(classes, confidence, seconds) of the blend computed without the tiler's machinery: every
    window read in turn, its probabilities (batch 1) times the blending weights and its validity
    summed into whole-scene float64 arrays, divided at the end (no sliding band, no batches, no
    read-ahead thread). Nodata (no valid window covers the pixel): NODATA_CLASS, NaN."""
    import torch

    from crossearth_sar.core.inference import tiler
    from crossearth_sar.core.products.class_raster import NODATA_CLASS
    from crossearth_sar.core.scene import sar_io

    t0 = time.perf_counter()
    weights = tiler.blend_weights(tile).astype(np.float64)
    with sar_io.open_scene(scene_path) as scene:
        height, width = scene.height, scene.width
        acc = np.zeros((num_classes, height, width), np.float64)
        for win in tiler.tile_windows(width, height, tile, overlap):
            data = scene.read_window(win)
            with torch.inference_mode():
                probs = predict(torch.from_numpy(data.x[None]), torch.from_numpy(data.phys[None]),
                                torch.from_numpy(data.valid[None]))[0].double().numpy()
            r, c = int(win.row_off), int(win.col_off)
            h, w = min(tile, height - r), min(tile, width - c)
            acc[:, r:r + h, c:c + w] += probs[:, :h, :w] * (weights[:h, :w] * data.valid[:h, :w])
    total = acc.sum(axis=0)
    ok = total > 0
    conf = np.where(ok, acc.max(axis=0) / np.where(ok, total, 1.0), np.nan).astype(np.float32)
    cls = np.where(ok, acc.argmax(axis=0), NODATA_CLASS).astype(np.uint8)
    return cls, conf, time.perf_counter() - t0


def _agreement(a, b) -> dict:
    """Agreement of two (classes, confidence) maps: nodata where both say so, the rest compared."""
    (c0, f0), (c1, f1) = a, b
    ok = np.isfinite(f0) & np.isfinite(f1)
    return {"max_confidence_difference": float(np.abs(f0[ok] - f1[ok]).max()),
            "class_agreement": float((c0 == c1).mean()),
            "nodata_agree": bool((np.isfinite(f0) == np.isfinite(f1)).all())}


def blend(args, sizes, dev) -> dict:
    """On a GPU: the GPU blend against the CPU blend of the same windows. On the CPU (smoke):
    the tiler's streamed blend, at the suite's batch and at a batch wider than a row of windows
    (batches then span two rows and the band holds tile + stride rows), against the untiled
    reference blend (:func:`untiled_reference`): two genuinely different computations."""
    import torch

    from crossearth_sar.core.inference import tiler

    scene_path = args.work / "blend.tif"
    write_synthetic_scene(scene_path, sizes["blend_scene"], seed=5, db=True)
    tile, overlap = sizes["tile"], sizes["overlap"]
    if dev.type != "cpu":
        maps = {}
        for d in (torch.device("cpu"), dev):
            maps[d.type] = _tiled_maps(scene_path, fixed_predict(), tile, overlap, sizes["batch"], d)
        (c0, f0, t_cpu), (c1, f1, t_dev) = maps["cpu"], maps[dev.type]
        return {**_device_info(dev), "scene": sizes["blend_scene"], **_agreement((c0, f0), (c1, f1)),
                "cpu_s": round(t_cpu, 2), "device_s": round(t_dev, 2)}
    c_ref, f_ref, t_ref = untiled_reference(scene_path, fixed_predict(), 3, tile, overlap)
    per_row = len(tiler.window_starts(sizes["blend_scene"], tile, overlap))
    runs = {}
    for batch in (sizes["batch"], per_row + 1):
        cls, conf, seconds = _tiled_maps(scene_path, fixed_predict(), tile, overlap, batch, dev)
        runs[f"batch_{batch}"] = {**_agreement((c_ref, f_ref), (cls, conf)), "seconds": round(seconds, 2)}
    return {**_device_info(dev), "scene": sizes["blend_scene"],
            "compared": "the tiler's streamed blend (CPU) against an untiled whole-scene reference",
            "windows_per_row": per_row, "valid_fraction": round(float(np.isfinite(f_ref).mean()), 6),
            "max_confidence_difference": max(r["max_confidence_difference"] for r in runs.values()),
            "class_agreement": min(r["class_agreement"] for r in runs.values()),
            "nodata_agree": all(r["nodata_agree"] for r in runs.values()),
            "runs": runs, "reference_s": round(t_ref, 2)}


# -- bf16 against fp32 ---------------------------------------------------------------------
def default_model():
    from crossearth_sar.core.models import checkpoints
    from crossearth_sar.crossearth_cli.segment_cmd import _resolve_model

    return checkpoints.load(_resolve_model(None), map_location="cpu")


def bf16(args, sizes, dev) -> dict:
    import torch

    from crossearth_sar.core.inference import tiler
    from crossearth_sar.core.models.model import trained_bands
    from crossearth_sar.core.scene import sar_io

    net = default_model().to(dev).eval()
    scene_path = args.work / "bf16.tif"
    write_synthetic_scene(scene_path, 2 * sizes["tile"], seed=6, db=True)
    windows = []
    for path in (DEMO_SCENE, scene_path):
        with sar_io.open_scene(path, prefer=trained_bands(net.config)) as scene:
            for w in tiler.tile_windows(scene.width, scene.height, sizes["tile"], sizes["overlap"]):
                windows.append(scene.read_window(w))
    windows = windows[:sizes["bf16_windows"]]
    x = torch.from_numpy(np.stack([d.x for d in windows])).to(dev)
    phys = torch.from_numpy(np.stack([d.phys for d in windows])).to(dev)
    valid = torch.from_numpy(np.stack([d.valid for d in windows])).to(dev)
    out = {}
    with torch.inference_mode():
        desc = net.compute_descriptors(phys, valid)
        for name, enabled in (("fp32", False), ("bf16", True)):
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=enabled):
                t0 = time.perf_counter()
                out[name] = net.predict_proba(x, desc).float()
                if dev.type == "cuda":
                    torch.cuda.synchronize()
                out[name + "_s"] = time.perf_counter() - t0
    agree = (out["fp32"].argmax(1) == out["bf16"].argmax(1))[valid].float().mean().item()
    return {**_device_info(dev), "windows": len(windows), "tile": sizes["tile"],
            "class_agreement": round(agree, 6),
            "max_probability_difference": float((out["fp32"] - out["bf16"]).abs().max()),
            "fp32_s": round(out["fp32_s"], 3), "bf16_s": round(out["bf16_s"], 3)}


# -- DDP ---------------------------------------------------------------------------------
def ddp(args, sizes, dev) -> dict:
    """finetune under torchrun: 2 processes (nccl on one GPU where it allows two ranks on the
    same device), else 1 process."""
    sys.path.insert(0, str(ROOT / "tests"))
    from crossearth_sar.core.inference import scene_ranks
    from crossearth_sar.core.models import checkpoints

    from _helpers_train import tiny_model, write_label, write_scene

    work = args.work / "ddp"
    work.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        truth = write_scene(work / f"s{i}_img.tif", size=64, seed=i, water_box=(4, 20 + i, 6, 30))
        write_label(work / f"s{i}_lab.tif", truth)
    base = work / "base.safetensors"
    checkpoints.save(tiny_model(), base)
    attempts = []
    for nproc in (2, 1):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        if dev.type == "cuda" and nproc == 2:
            env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]
        cmd = scene_ranks.torchrun_command() + [
            "--standalone", "--nnodes", "1", "--nproc-per-node", str(nproc),
            "-m", "crossearth_sar.crossearth_cli.main", "finetune",
            "--model", str(base), "--images", str(work / "s*_img.tif"),
            "--labels", str(work / "s*_lab.tif"), "--tile", "32", "--batch", "2",
            "--iters", str(sizes["ddp_iters"]), "--warmup", "0", "--device",
            "cuda" if dev.type == "cuda" else "cpu", "--progress", "json", "--overwrite",
            "-o", str(work / f"ddp{nproc}.safetensors")]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=work)  # the step limit bounds it
        seconds = time.perf_counter() - t0
        events = _events(proc.stdout)
        done = [e for e in events if e.get("event") == "done"]
        attempt = {"processes": nproc, "rc": proc.returncode, "seconds": round(seconds, 1)}
        if done:
            attempt["world_size"] = done[-1].get("world_size")
            digests = done[-1].get("param_digests") or []
            attempt["ranks_identical"] = len(set(digests)) == 1 and len(digests) == nproc
        if proc.returncode != 0:  # what the ranks said, before torchrun's own traceback
            attempt["errors"] = [e.get("message") for e in events if e.get("event") == "error"]
            attempt["stderr_head"] = proc.stderr[:2000]
        attempts.append(attempt)
        if proc.returncode == 0:
            break
    last = attempts[-1]
    return {**_device_info(dev), "processes": last["processes"], "ok": last["rc"] == 0,
            "ranks_identical": last.get("ranks_identical"), "attempts": attempts}


def _events(stdout: str) -> list[dict]:
    """The JSON events of ``--progress json`` output (other lines skipped)."""
    events = []
    for line in stdout.splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


# -- training step time ------------------------------------------------------------------
def train(args, sizes, dev) -> dict:
    import torch

    from crossearth_sar.core.models import model as model_mod

    result = {**_device_info(dev), "batch": sizes["train_batch"], "tile": sizes["train_tile"]}
    for variant in ("ti", "s"):
        torch.manual_seed(0)
        net = model_mod.build(variant, num_classes=2).to(dev).train()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        b, t = sizes["train_batch"], sizes["train_tile"]
        x = torch.rand(b, 3, t, t, device=dev)
        desc = torch.rand(b, 3, device=dev)
        target = (torch.rand(b, t, t, device=dev) > 0.5).long()

        def step(net=net, opt=opt, x=x, desc=desc, target=target):
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16,
                                enabled=dev.type == "cuda"):
                out = net(x, desc)
            loss, _ = net.loss(out, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()  # warm-up
        if dev.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        for _ in range(sizes["train_steps"]):
            step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
            result[f"{variant}_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        result[f"{variant}_step_s"] = round((time.perf_counter() - t0) / sizes["train_steps"], 3)
        del net, opt
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return result


# -- ces segment on a whole scene ----------------------------------------------------------
def _timed_segment(cmd: list[str], limit_s: float) -> dict:
    """Run ``ces segment --progress json``; from its events: the time at which the windows
    were done (tiles_s, also when vectorizing runs past ``limit_s`` and is stopped), windows;
    for a run stopped before its windows were done, how many were (windows_done) at which
    second (windows_done_s), so that windows_per_s is still measured (from the first window
    event on: the model's loading is not counted)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = {"windows": None, "tiles_s": None, "stopped": False}
    done = None
    try:
        for line in proc.stdout:
            if time.perf_counter() - t0 > limit_s:
                run["stopped"] = True
                break
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            if event.get("event") == "progress" and event.get("stage") == "segment":
                run["windows"] = event.get("total")
                now = round(time.perf_counter() - t0, 1)
                if "first_window_s" not in run:   # model loaded, scene opened: windows start
                    run["first_window_s"], run["first_done"] = now, event.get("done") or 0
                run["windows_done"], run["windows_done_s"] = event.get("done"), now
            elif event.get("event") == "progress" and run["tiles_s"] is None \
                    and run["windows"] is not None:
                run["tiles_s"] = round(time.perf_counter() - t0, 1)  # first post-tiling stage
            elif event.get("event") == "done":
                done = event
    finally:
        if proc.poll() is None:
            proc.terminate()
        err = proc.communicate(timeout=60)[1]
    run["wall_s"] = round(time.perf_counter() - t0, 1)
    run["rc"] = proc.returncode
    if done is not None:
        run["polygons"] = done.get("polygons")
        timing = done.get("timing") or {}  # (a one-scene done event carries no timing)
        for key, name in (("tiles_s", "tiles_s"), ("forward_s", "forward_s"),
                          ("vectorize_s", "vectorize_s"), ("windows", "windows"),
                          ("windows_skipped", "skipped")):
            if timing.get(key) is not None:
                run[name] = timing[key]
    elif not run["stopped"]:
        run["stderr_tail"] = err[-1500:]
    if run["windows"] and run["tiles_s"]:
        run["windows_per_s"] = round((run["windows"] - (run.get("skipped") or 0)) / run["tiles_s"], 2)
    elif run.get("windows_done_s", 0) > run.get("first_window_s", 0):  # stopped within them
        run["windows_per_s"] = round((run["windows_done"] - run["first_done"])
                                     / (run["windows_done_s"] - run["first_window_s"]), 2)
    return run


def segment(args, sizes, dev) -> dict:
    """ces segment on one synthetic scene per variant (random weights), the largest first;
    each run gets an equal part of the time left (vectorizing past it is stopped, the
    windows' time is kept)."""
    import torch

    from crossearth_sar.core.models import checkpoints, model as model_mod

    start = time.perf_counter()
    w, h = sizes["scene"]
    scene = args.work / f"scene_{w}x{h}.tif"
    write_synthetic_scene(scene, (w, h), seed=7, db=True, rows=1024,
                          compress="deflate" if args.smoke else "none")
    result = {**_device_info(dev), "scene": f"{w}x{h}",
              "write_scene_s": round(time.perf_counter() - start, 1)}
    ces = [sys.executable, "-m", "crossearth_sar.crossearth_cli.main"]
    variants = list(args.variants or sizes["variants"])[::-1]  # l, s, ti: the goal first
    for i, variant in enumerate(variants):
        torch.manual_seed(0)
        ckpt = args.work / f"random_{variant}.safetensors"
        checkpoints.save(model_mod.build(variant, num_classes=2), ckpt)
        cmd = ces + ["segment", str(scene), "-o", str(args.work / f"{variant}.gpkg"),
                     "--model", str(ckpt), "--device", "cuda" if dev.type == "cuda" else "cpu",
                     "--tile", str(sizes["tile"]), "--overlap", str(sizes["overlap"]),
                     "--batch", str(sizes["batch"]), "--overwrite", "--progress", "json"]
        left = args.budget - (time.perf_counter() - start)
        result[variant] = _timed_segment(cmd, max(10.0, left / (len(variants) - i)))
        result[f"{variant}_wall_s"] = result[variant]["wall_s"]
        result[f"{variant}_windows_per_s"] = result[variant].get("windows_per_s")
        ckpt.unlink()
    return result


COMMANDS = {"blend": blend, "bf16": bf16, "ddp": ddp, "train": train, "segment": segment}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=sorted(COMMANDS))
    ap.add_argument("--out", type=Path, required=True, help="results folder ($OUT)")
    ap.add_argument("--work", type=Path, default=None,
                    help="scratch folder for scenes and checkpoints (default: a temporary one)")
    ap.add_argument("--smoke", action="store_true", help="shrink every size (runs on a CPU)")
    ap.add_argument("--variants", nargs="*", default=None, help="segment: variants to run")
    ap.add_argument("--budget", type=float, default=260.0,
                    help="segment: seconds for the whole step (the runs share what is left)")
    args = ap.parse_args(argv)
    sizes = SIZES["smoke" if args.smoke else "full"]
    dev = device_or_none(args.smoke)
    if dev is None:
        write_result(args.out, args.command, {"skipped": "no CUDA device (use --smoke on a CPU)"})
        return 0
    with tempfile.TemporaryDirectory(prefix="ces-gpu-suite-", dir=args.work) as tmp:
        args.work = Path(tmp)
        result = COMMANDS[args.command](args, sizes, dev)
    result["smoke"] = bool(args.smoke)
    write_result(args.out, args.command, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
