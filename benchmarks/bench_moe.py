"""Forward time of the top-1 MoE backbone over the dense DINOv2 backbone (docs/contracts.md §2).

Sparse dispatch should make top-1 cost about one dense FFN: target ratio <= 1.15.
Runs dense and MoE alternately (so that load changes hit both), prints the median of each and
their ratio per variant. A few minutes at most on 2 CPU cores with the defaults.

On a machine whose cores are busy with other work, use ``--threads 1``: with more threads
than free cores every parallel region waits for a descheduled thread, and the MoE, which
runs six small GEMMs where the dense FFN runs one, pays that wait six times (measured on a
shared 2-core machine at load ~10: ratio ~2.0 with 2 threads, 1.01-1.11 with 1 thread).

    python benchmarks/bench_moe.py [--variants ti s] [--runs 5] [--size 518] [--batch 2]
                                   [--experts 6] [--device cpu] [--threads N]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from crossearth_sar.core.models.vit import build_backbone


def timed_forward(model, x, d, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    model.forward_features(x, d)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bench(variant: str, experts: int, batch: int, size: int, runs: int, device) -> dict:
    torch.manual_seed(0)
    dense = build_backbone(variant, experts=0).to(device).eval()
    moe = build_backbone(variant, experts=experts, top_k=1).to(device).eval()
    moe.upcycle_from_dense(dense)
    with torch.no_grad():  # spread tokens over the experts as a trained router would
        for m in moe.moe_layers():
            m.router.weight.normal_(0, 1.0)
    x = torch.randn(batch, 3, size, size, device=device)
    d = torch.randn(batch, 3, device=device)
    times = {"dense": [], "moe": []}
    with torch.inference_mode():
        for model in (dense, moe):  # warm-up
            timed_forward(model, x, d, device)
        moe.reset_expert_counts()
        for _ in range(runs):
            times["dense"].append(timed_forward(dense, x, d, device))
            times["moe"].append(timed_forward(moe, x, d, device))
    counts = moe.expert_counts().sum(0)
    return {"dense": statistics.median(times["dense"]), "moe": statistics.median(times["moe"]),
            "share": (counts.float() / counts.sum()).tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", nargs="+", default=["ti", "s"])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", type=int, default=518)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--experts", type=int, default=6)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"device {device}, threads {torch.get_num_threads()}, input {args.batch}x3x{args.size}x"
          f"{args.size}, {args.experts} experts top-1, median of {args.runs} runs")
    for variant in args.variants:
        r = bench(variant, args.experts, args.batch, args.size, args.runs, device)
        share = " ".join(f"{s:.2f}" for s in r["share"])
        print(f"{variant:>3}: dense {r['dense'] * 1000:8.1f} ms  moe {r['moe'] * 1000:8.1f} ms  "
              f"ratio {r['moe'] / r['dense']:.3f}  (token share per expert: {share})")


if __name__ == "__main__":
    main()
