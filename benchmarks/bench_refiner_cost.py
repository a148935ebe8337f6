"""Cost per window of the full-resolution mask refiner (core/models/mask_refiner.py) in
`ces segment`'s CPU inference: one model with a refiner, run with it and without it.

Both runs use the same network and weights; "without" sets the refiner aside, which is
exactly the model the refiner was trained on when it was trained alone (--refiner-only),
and the Mask2Former output every model without a refiner gives. The default path of
bench_cpu_speed.py (512-pixel windows overlapping by 128, batch 4) on the demo chip and a
2,048² synthetic Sentinel-1 scene in dB; the two runs alternate per repeat so that drifts of
a shared machine's load cancel, and the best of ``--repeat`` is kept. Windows per second is
windows run / tiled-inference wall time (reading, descriptors, model, blending).
Prints, never asserts; the last line reads ``cost R changed C`` (R: seconds per window with
the refiner over without; C: share of valid pixels whose class the refiner changed).

    python benchmarks/bench_refiner_cost.py --model runs/refiner/ces-s1-water.safetensors
    python benchmarks/bench_refiner_cost.py --model M --repeat 3 --size 1024
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cpu_speed import DEMO_SCENE, timed_run  # noqa: E402

from bench_segment import write_synthetic_scene  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, required=True, help="a model with a refiner")
    ap.add_argument("--size", type=int, default=2048, help="side of the synthetic dB scene")
    ap.add_argument("--repeat", type=int, default=2, help="runs per setting and scene (best kept)")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--no-demo", action="store_true", help="only the synthetic scene")
    args = ap.parse_args(argv)

    import tempfile

    import torch

    from crossearth_sar.core.models import checkpoints

    net = checkpoints.load(args.model, map_location="cpu")
    if net.refiner is None:
        print(f"bench_refiner_cost: error: {args.model} has no refiner", file=sys.stderr)
        return 2
    refiner = net.refiner
    print(f"# bench_refiner_cost: model {args.model.name}, refiner width "
          f"{net.config['refine']['width']} dilations {net.config['refine']['dilations']}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, tile {args.tile} "
          f"overlap {args.overlap} batch {args.batch}", flush=True)
    totals = {"without": [0, 0.0], "with": [0, 0.0]}
    changed = valid = 0
    with tempfile.TemporaryDirectory(prefix="ces-bench-refiner-") as tmp:
        synthetic = Path(tmp) / f"synthetic_db_{args.size}.tif"
        write_synthetic_scene(synthetic, args.size, seed=3, db=True)
        for scene in ([] if args.no_demo else [DEMO_SCENE]) + [synthetic]:
            best, maps = {}, {}
            timed_run(net, "default", scene, args)   # warm-up: first-call allocations
            for run in range(args.repeat):
                for setting in (("without", "with") if run % 2 == 0 else ("with", "without")):
                    net.refiner = refiner if setting == "with" else None
                    maps[setting], figures = timed_run(net, "default", scene, args)
                    if setting not in best or figures[1] < best[setting][1]:
                        best[setting] = figures
            net.refiner = refiner
            ok = maps["with"] != 255
            diff = int((maps["with"][ok] != maps["without"][ok]).sum())
            changed, valid = changed + diff, valid + int(ok.sum())
            for setting, (n, seconds, forward, _cpu) in best.items():
                totals[setting][0] += n
                totals[setting][1] += seconds
                print(f"{scene.name} {setting:>7} refiner: {n} windows in {seconds:.2f} s = "
                      f"{n / seconds:.3f} windows/s (model forward {forward:.2f} s)", flush=True)
            print(f"{scene.name}: the refiner changed {diff / max(int(ok.sum()), 1):.2%} of "
                  f"{int(ok.sum())} valid pixels", flush=True)
    per_window = {k: seconds / n for k, (n, seconds) in totals.items()}
    print(f"seconds per window: without {per_window['without']:.3f}, with "
          f"{per_window['with']:.3f}", flush=True)
    print(f"cost {per_window['with'] / per_window['without']:.3f} changed "
          f"{changed / max(valid, 1):.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
