"""Peak memory of one training step (forward + loss + backward) of the whole model on the CPU.

Target: variant ``s`` at 1 x 3 x 518 x 518 under 8 GB peak resident memory.
The peak is the process's maximum resident set size (``resource.getrusage``), so it includes
the interpreter, torch and the model's weights and gradients; the figure after building the
model is printed too.

    python benchmarks/bench_memory.py [--variant s] [--size 518] [--batch 1] [--experts 6]
                                      [--classes 2] [--threads N]
"""
from __future__ import annotations

import argparse
import resource
import sys
import time

import torch

from crossearth_sar.core.models import model as model_mod

TARGET_GB = 8.0


def peak_rss_gb() -> float:
    """Maximum resident set size of this process so far, in GB (Linux reports KiB)."""
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib * 1024 / 1e9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variant", default="s")
    p.add_argument("--size", type=int, default=518)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--experts", type=int, default=6)
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    start_gb = peak_rss_gb()
    model = model_mod.build(args.variant, num_classes=args.classes, experts=args.experts)
    model.train()
    counts = model.parameter_counts()
    built_gb = peak_rss_gb()
    x = torch.rand(args.batch, 3, args.size, args.size)
    d = torch.randn(args.batch, 3)
    target = torch.randint(0, args.classes, (args.batch, args.size, args.size))
    t0 = time.perf_counter()
    total, info = model.loss(model(x, d), target)
    t1 = time.perf_counter()
    total.backward()
    t2 = time.perf_counter()
    peak = peak_rss_gb()
    print(f"variant {args.variant}, experts {args.experts}, input {args.batch}x3x{args.size}x{args.size}, "
          f"threads {torch.get_num_threads()}")
    print(f"parameters: {counts['total'] / 1e6:.1f}M total, {counts['active'] / 1e6:.1f}M active")
    print(f"peak RSS at start {start_gb:.2f} GB, after build {built_gb:.2f} GB, "
          f"after forward+loss+backward {peak:.2f} GB (target < {TARGET_GB:.0f} GB)")
    print(f"forward+loss {t1 - t0:.1f} s, backward {t2 - t1:.1f} s, loss {info['total']:.3f}")
    return 0 if peak < TARGET_GB else 1


if __name__ == "__main__":
    sys.exit(main())
