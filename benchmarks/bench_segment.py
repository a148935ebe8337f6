"""Scene-engine benchmark: peak memory vs scene size, and pipeline efficiency. Prints, never asserts.

1. Peak RSS of ``segment_scene`` on synthetic Sentinel-1-like scenes (uint16 amplitude DN,
   multi-look speckle, dark water bodies, nodata 0 wedges like GRD borders) of 2k², 8k² and
   16k² pixels with a tiny model (a blur and a threshold: the engine, not the network, is
   measured). Each size runs in its own process so each peak is that size's alone.
   Target: flat within 1.3× from the smallest to the largest, under 3 GB. The same runs give
   the wall time per megapixel (end to end: read, model, blend, sieve, vectorize); target:
   flat within 15 % from the smallest to the largest.
2. Pipeline efficiency on a 4k² scene with the ``ti`` model (random weights): model-forward
   time alone on the same tiles (pre-read into memory) ÷ end-to-end ``segment_scene`` time.
   Target ≥ 0.85.

    python benchmarks/bench_segment.py              # full sizes (minutes to an hour on a CPU)
    python benchmarks/bench_segment.py --quick      # 1k², 2k², 4k² and a 1k² efficiency scene
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


# -- synthetic scenes ----------------------------------------------------------------------
def write_synthetic_scene(path: Path, size, seed: int = 0, rows: int = 512,
                          db: bool = False, compress: str = "deflate") -> Path:
    """A synthetic Sentinel-1-like scene written in bands of rows (never whole in memory).

    ``size``: a side (square) or (width, height). uint16 amplitude DN with nodata 0, or with
    ``db`` float32 sigma0 in dB (10·log10 of the intensity) with nodata NaN; dark water
    bodies, multi-look speckle and a slanted nodata border as on GRD scenes. ``compress``:
    a GDAL compression ("none" writes fastest).
    """
    import rasterio
    from rasterio.transform import from_origin

    width, height = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    rng = np.random.default_rng(seed)
    profile = dict(driver="GTiff", width=width, height=height, count=1,
                   dtype="float32" if db else "uint16", nodata=float("nan") if db else 0,
                   crs="EPSG:32630", transform=from_origin(400000.0, 4600000.0, 10.0, 10.0),
                   tiled=True, blockxsize=512, blockysize=512, bigtiff="if_safer")
    if compress != "none":
        profile.update(compress=compress, num_threads="ALL_CPUS")
    xx = np.arange(width, dtype=np.float32)[None, :]
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, height, rows):
            h = min(rows, height - r0)
            yy = np.arange(r0, r0 + h, dtype=np.float32)[:, None]
            field = (np.sin(xx / 310.0) + np.cos(yy / 270.0) + 0.7 * np.sin((xx + 2 * yy) / 530.0))
            water = field > 1.1
            base = np.where(water, 25.0, 260.0) * (1 + 0.3 * np.sin(xx / 57.0) * np.cos(yy / 43.0))
            speckle = np.sqrt(rng.gamma(4.0, 1 / 4.0, size=(h, width)))  # 4-look amplitude
            border = xx.repeat(h, 0) < (yy * 0.05 + 40)  # a slanted nodata border
            if db:  # amplitude 260 ~ -8 dB land, 25 ~ -28 dB water
                amp = base * speckle / 650.0
                out = (20.0 * np.log10(np.maximum(amp, 1e-4))).astype(np.float32)
                out[border] = np.nan
            else:
                out = np.clip(base * speckle, 1, 65535).astype(np.uint16)
                out[border] = 0
            dst.write(out, 1, window=rasterio.windows.Window(0, r0, width, h))
    return path


# -- a tiny model with the pipeline's model interface ------------------------------------
def tiny_segmenter():
    import torch
    import torch.nn.functional as F

    from crossearth_sar.core.scene import descriptors

    class TinySegmenter(torch.nn.Module):
        """Water where the 7×7-blurred input is dark: the engine's cost, not a network's."""

        config = {"kind": "model", "descriptors": {**descriptors.DEFAULT_CONFIG,
                                                   "train_stats": None},
                  "classes": [{"name": "land", "value": 0, "color": "#a0a060"},
                              {"name": "water", "value": 1, "color": "#1f4fff"}]}

        @property
        def classes(self):
            return self.config["classes"]

        def compute_descriptors(self, phys, valid=None):
            return descriptors.compute_descriptors(phys, valid, self.config["descriptors"])

        def predict_proba(self, x, desc):
            m = F.avg_pool2d(x.mean(1, keepdim=True), 7, stride=1, padding=3,
                             count_include_pad=False)
            logit = (0.45 - m) * 20.0
            return torch.cat([torch.sigmoid(-logit), torch.sigmoid(logit)], dim=1)

    return TinySegmenter()


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss it does not inherit the parent's
    peak across fork + exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class StagePeaks:
    """A progress callback that records the peak RSS of each pipeline stage."""

    def __init__(self):
        self.stage = "start"
        self.peaks: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage = stage

    def close(self) -> None:
        self.peaks[self.stage] = max(self.peaks.get(self.stage, 0.0), round(peak_rss_mb(), 1))
        reset_peak_rss()


def child_rss(scene: Path, workdir: Path) -> dict:
    """Run in a fresh process: segment one scene with the tiny model, report the peak RSS."""
    import torch

    from crossearth_sar.core.inference import pipeline

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    import geopandas  # noqa: F401  (imported by the vector stage anyway: count it up front)

    base = peak_rss_mb()
    stages = StagePeaks()
    t0 = time.perf_counter()
    result = pipeline.segment_scene(scene, tiny_segmenter(), workdir / f"{scene.stem}.gpkg",
                                    device="cpu", overwrite=True, progress=stages)
    stages.close()
    return {"scene": scene.name, "peak_rss_mb": max(stages.peaks.values()),
            "stage_peaks_mb": stages.peaks,
            "rss_after_imports_mb": round(base, 1), "seconds": round(time.perf_counter() - t0, 1),
            "polygons": result["polygons"], "windows": result["timing"]["windows"]}


# -- efficiency --------------------------------------------------------------------------
def efficiency(scene: Path, workdir: Path, tile: int, overlap: int, batch: int) -> dict:
    """forward-alone time / end-to-end time on the same tiles with a random ``ti`` model."""
    import torch

    from crossearth_sar.core.inference import pipeline, tiler
    from crossearth_sar.core.models import model as model_mod
    from crossearth_sar.core.scene import sar_io

    torch.manual_seed(0)
    net = model_mod.build("ti", num_classes=2).eval()
    t0 = time.perf_counter()
    result = pipeline.segment_scene(scene, net, workdir / "efficiency.gpkg", tile=tile,
                                    overlap=overlap, batch=batch, device="cpu", overwrite=True)
    end_to_end = time.perf_counter() - t0
    # the same windows, pre-read (not timed), then descriptors + forward alone
    with sar_io.open_scene(scene) as sc:
        data = [sc.read_window(w) for w in tiler.tile_windows(sc.width, sc.height, tile, overlap)]
    data = [d for d in data if d.valid.any()]
    predict = pipeline.make_predict(net)
    forward = 0.0
    for i in range(0, len(data), batch):
        chunk = data[i:i + batch]
        x = torch.from_numpy(np.stack([d.x for d in chunk]))
        phys = torch.from_numpy(np.stack([d.phys for d in chunk]))
        valid = torch.from_numpy(np.stack([d.valid for d in chunk]))
        t = time.perf_counter()
        with torch.inference_mode():
            predict(x, phys, valid)
        forward += time.perf_counter() - t
    return {"scene": scene.name, "tiles": len(data), "tile": tile, "overlap": overlap,
            "batch": batch, "end_to_end_s": round(end_to_end, 2), "forward_alone_s": round(forward, 2),
            "forward_in_pipeline_s": result["timing"]["forward_s"],
            "efficiency": round(forward / end_to_end, 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="scaled-down sizes (1k², 2k², 4k²; 1k²)")
    ap.add_argument("--sizes", default=None, help="comma-separated scene sides for the RSS part")
    ap.add_argument("--efficiency-size", type=int, default=None)
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--overlap", type=int, default=128)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--skip-rss", action="store_true")
    ap.add_argument("--skip-efficiency", action="store_true")
    ap.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    ap.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child is not None:
        print(json.dumps(child_rss(args.child, args.workdir)))
        return 0

    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else \
        ([1024, 2048, 4096] if args.quick else [2048, 8192, 16384])
    eff_size = args.efficiency_size or (1024 if args.quick else 4096)
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="ces-bench-")
        args.workdir = Path(tmp.name)
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    print(f"# bench_segment: workdir {work}, cpus {os.cpu_count()}", flush=True)

    if not args.skip_rss:
        rows = []
        for size in sizes:
            scene = work / f"synthetic_{size}.tif"
            if not scene.exists():
                write_synthetic_scene(scene, size)
            proc = subprocess.run([sys.executable, __file__, "--child", str(scene),
                                   "--workdir", str(work)], capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"size {size}: failed\n{proc.stderr[-2000:]}", flush=True)
                continue
            row = json.loads(proc.stdout.strip().splitlines()[-1])
            row["size"] = size
            rows.append(row)
            stages = ", ".join(f"{k} {v:.0f}" for k, v in row["stage_peaks_mb"].items())
            print(f"peak RSS {size}x{size}: {row['peak_rss_mb']:.0f} MB "
                  f"(after imports {row['rss_after_imports_mb']:.0f} MB; per stage: {stages}; "
                  f"{row['seconds']} s, {row['windows']} windows, {row['polygons']} polygons)",
                  flush=True)
            scene.unlink()
        for row in rows:
            row["s_per_mpx"] = row["seconds"] / (row["size"] ** 2 / 1e6)
            print(f"wall time {row['size']}x{row['size']}: {row['seconds']} s = "
                  f"{row['s_per_mpx']:.3f} s per megapixel", flush=True)
        if len(rows) >= 2:
            ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
            print(f"peak RSS ratio {rows[-1]['size']}² / {rows[0]['size']}²: {ratio:.2f} "
                  f"(target <= 1.3, and < 3072 MB)", flush=True)
            per = [r["s_per_mpx"] for r in rows]
            print(f"time per megapixel {rows[-1]['size']}² / {rows[0]['size']}²: "
                  f"{per[-1] / per[0]:.2f} (max / min over sizes {max(per) / min(per):.2f}; "
                  f"target within 1.15)", flush=True)

    if not args.skip_efficiency:
        scene = work / f"efficiency_{eff_size}.tif"
        write_synthetic_scene(scene, eff_size, seed=1)
        import torch

        torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
        eff = efficiency(scene, work, args.tile, args.overlap, args.batch)
        print(f"efficiency {eff_size}x{eff_size} ti ({eff['tiles']} tiles of {args.tile}, "
              f"batch {args.batch}): forward alone {eff['forward_alone_s']} s / end to end "
              f"{eff['end_to_end_s']} s = {eff['efficiency']:.3f} (target >= 0.85)", flush=True)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
