"""CPU throughput of `ces segment`'s inference: the plain eager path against the default path.

Both paths run in one process, on the same scenes, with the default model (the one `ces
segment` uses without --model), 512-pixel windows overlapping by 128, batch 4, on the CPU:

* plain: the Mask2Former head as in training (every intermediate mask prediction at 1/4
  resolution, deformable attention by grid_sample), only put in eval mode, the batch as one
  forward pass on all threads;
* default: what `ces segment` runs (core.models.mask2former.head's inference path, and the batch
  as parallel streams of core.models.cpu_streams).

Scenes: the demo chip (examples/Spain_7370579_S1Hand.tif, 1 window) and a 2,048² synthetic
Sentinel-1 scene in dB (25 windows). Windows per second is windows run / tiled-inference wall
time (reading, descriptors, model, blending; as in `ces segment`, without vectorizing).
Agreement: the fraction of valid pixels whose class is the same in both class maps.

The ceiling: the default path once more on one thread, at batch / threads (one stream of the
windows each stream gets), times the thread count. That is the windows per second that
perfect scaling over the cores would give with today's kernels (no memory, cache or clock
contention between streams); ``ceiling`` / plain bounds the speedup that any thread plan can
reach on this machine, measured in the same run as the two paths.
On a shared machine wall time drifts with the load; the process CPU time (all threads) is
printed beside it. Prints, never asserts; the last line reads ``speedup R agreement A``
(R from wall time, or CPU time with --clock cpu).

    python benchmarks/bench_cpu_speed.py                 # both scenes (a few minutes)
    python benchmarks/bench_cpu_speed.py --size 1024     # a smaller synthetic scene
    python benchmarks/bench_cpu_speed.py --repeat 3      # best of 3 per path (loaded machines)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_segment import write_synthetic_scene  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO_SCENE = ROOT / "examples" / "Spain_7370579_S1Hand.tif"
PATHS = ("plain", "default")
RUNS = PATHS + ("single",)  # single: the default path on one thread (the ceiling's run)


def load_default_model():
    """The model `ces segment` uses without --model (through its own lookup)."""
    from crossearth_sar.core.models import checkpoints
    from crossearth_sar.crossearth_cli.segment_cmd import _resolve_model

    path = _resolve_model(None)
    return path, checkpoints.load(path, map_location="cpu")


def class_map(net, scene_path: Path, tile: int, overlap: int, batch: int) -> tuple[np.ndarray, object]:
    """(classes uint8 [H, W] (255 nodata), tiler stats) of the tiled inference of one scene."""
    import torch

    from crossearth_sar.core.inference import pipeline, tiler
    from crossearth_sar.core.models.model import trained_bands
    from crossearth_sar.core.scene import sar_io

    with sar_io.open_scene(scene_path, prefer=trained_bands(net.config)) as scene:
        out = np.full((scene.height, scene.width), tiler.NODATA_CLASS, np.uint8)

        def sink(row0, classes, confidence):
            out[row0:row0 + classes.shape[0]] = classes

        stats = tiler.run_tiled(scene, pipeline.make_predict(net), len(net.classes), sink,
                                tile=tile, overlap=overlap, batch=batch,
                                device=torch.device("cpu"))
    return out, stats


def timed_run(net, path: str, scene: Path, args) -> tuple[np.ndarray, tuple]:
    """(class map, (windows run, wall s, forward s, CPU s)) of one run of ``path``."""
    import torch

    from crossearth_sar.core.models.mask2former.head import set_fast_inference

    set_fast_inference(net, path != "plain")
    threads = torch.get_num_threads()
    batch = args.batch
    if path == "single":
        batch = max(1, args.batch // threads)
        torch.set_num_threads(1)
    try:
        t0, c0 = time.perf_counter(), time.process_time()
        classes, stats = class_map(net, scene, args.tile, args.overlap, batch)
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        torch.set_num_threads(threads)
    return classes, (stats.windows_run, seconds, stats.forward_s, cpu)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048, help="side of the synthetic dB scene")
    ap.add_argument("--repeat", type=int, default=1, help="runs per path and scene (best kept)")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--no-demo", action="store_true", help="only the synthetic scene")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="time of the speedup line: wall clock or process CPU time")
    args = ap.parse_args(argv)

    import torch

    from crossearth_sar.core.models.mask2former.head import set_fast_inference

    model_path, net = load_default_model()
    threads = torch.get_num_threads()
    print(f"# bench_cpu_speed: model {model_path.name} ({net.config.get('variant')}), "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cpus, tile {args.tile} overlap {args.overlap} batch {args.batch}",
          flush=True)
    with torch.inference_mode():  # warm-up of both paths (first-call allocations, kernels)
        x = torch.rand(args.batch, 3, args.tile, args.tile)
        for path in PATHS:
            set_fast_inference(net, path == "default")
            net.predict_proba(x, torch.zeros(args.batch, 3))
    with tempfile.TemporaryDirectory(prefix="ces-bench-cpu-") as tmp:
        scenes = [] if args.no_demo else [DEMO_SCENE]
        synthetic = Path(tmp) / f"synthetic_db_{args.size}.tif"
        write_synthetic_scene(synthetic, args.size, seed=3, db=True)
        scenes.append(synthetic)
        totals = {p: [0, 0.0, 0.0] for p in RUNS}  # windows, wall s, CPU s
        same = valid = 0
        for scene in scenes:
            best, maps = {}, {}
            for run in range(args.repeat):
                order = RUNS if run % 2 == 0 else RUNS[::-1]  # alternate: load drifts cancel
                for path in order:
                    maps[path], figures = timed_run(net, path, scene, args)
                    if path not in best or figures[1] < best[path][1]:
                        best[path] = figures
            ok = (maps["plain"] != 255) | (maps["default"] != 255)
            agree = int((maps["plain"][ok] == maps["default"][ok]).sum())
            same, valid = same + agree, valid + int(ok.sum())
            for path in RUNS:
                n, seconds, forward, cpu = best[path]
                totals[path][0] += n
                totals[path][1] += seconds
                totals[path][2] += cpu
                print(f"{scene.name} {path:>7}: {n} windows in {seconds:.2f} s = "
                      f"{n / seconds:.3f} windows/s (model forward {forward:.2f} s; "
                      f"CPU {cpu:.2f} s = {n / cpu:.3f} windows per CPU-s)", flush=True)
            print(f"{scene.name} agreement {agree / max(int(ok.sum()), 1):.5f} "
                  f"({int(ok.sum())} valid pixels)", flush=True)
        set_fast_inference(net, True)
    rate = {p: totals[p][0] / totals[p][1] for p in RUNS}
    cpu_rate = {p: totals[p][0] / totals[p][2] for p in RUNS}
    for path in RUNS:
        print(f"all scenes {path:>7}: {rate[path]:.3f} windows/s, "
              f"{cpu_rate[path]:.3f} windows per CPU-s", flush=True)
    ceiling = rate["single"] * threads
    print(f"ceiling (one-thread default path x {threads} threads): {ceiling:.3f} windows/s = "
          f"{ceiling / rate['plain']:.2f}x the plain path; the default path reaches "
          f"{rate['default'] / ceiling:.0%} of it", flush=True)
    print(f"speedup by wall time {rate['default'] / rate['plain']:.2f}, by CPU time "
          f"{cpu_rate['default'] / cpu_rate['plain']:.2f}", flush=True)
    chosen = rate if args.clock == "wall" else cpu_rate
    print(f"speedup {chosen['default'] / chosen['plain']:.2f} agreement {same / max(valid, 1):.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
