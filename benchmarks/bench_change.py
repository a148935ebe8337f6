"""Cost of a change run against segmenting its scenes. Prints, never asserts.

Targets: a change run costs no more than segmenting its scenes plus a warp; its peak memory
stays within 10 % of one ``ces segment`` run on the larger scene.

Writes an after scene (float32 dB, EPSG:32630, 10 m, ``--size`` px a side) and a before scene
of the same ground in another CRS and pixel size (EPSG:4326, pixels 1.2 x larger, 90 % of its width, its east half dry),
then runs, each in a fresh process (peak RSS = VmHWM): ``segment_scene`` on the after scene,
``segment_scene`` on the before scene, and ``change_scenes`` on the pair; prints wall time
and peak RSS of each and the two ratios, measured in this one run.

    python benchmarks/bench_change.py [--size 2048] [--model PATH] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench_segment import peak_rss_mb  # this folder: the same VmHWM reading


def write_scenes(folder: Path, size: int, rows: int = 512) -> tuple[Path, Path]:
    """(after, before): synthetic dB scenes of the same ground; the before's water smaller."""
    import rasterio
    from rasterio.transform import Affine, from_origin
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    rng = np.random.default_rng(0)
    common = dict(driver="GTiff", count=1, dtype="float32", nodata=float("nan"), tiled=True,
                  blockxsize=512, blockysize=512, compress="deflate", bigtiff="if_safer")
    after = folder / "S1_20200310_after.tif"
    utm = from_origin(400000.0, 4600000.0, 10.0, 10.0)
    with rasterio.open(after, "w", width=size, height=size, crs="EPSG:32630", transform=utm,
                       **common) as dst:
        xx = np.arange(size)[None, :]
        for r0 in range(0, size, rows):
            h = min(rows, size - r0)
            yy = np.arange(r0, r0 + h)[:, None]
            water = (np.sin(xx / 90.0) + np.cos(yy / 70.0)) > 0.6
            db = np.where(water, -21.0, -9.0) + rng.normal(0, 2.0, (h, size))
            dst.write(db.astype(np.float32), 1, window=rasterio.windows.Window(0, r0, size, h))
    before = folder / "S1_20200201_before.tif"
    with rasterio.open(after) as src:
        transform, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width,
                                                      src.height, *src.bounds)
        transform = transform @ Affine.scale(1.2)             # pixels 1.2 x larger (~12 m)
        w, h = int(w / 1.2 * 0.9), int(h / 1.2)               # 90 % of the after's width
        with rasterio.open(before, "w", width=w, height=h, crs="EPSG:4326", transform=transform,
                           **common) as dst:
            out = np.full((h, w), np.nan, np.float32)
            reproject(rasterio.band(src, 1), out, dst_transform=transform, dst_crs="EPSG:4326",
                      dst_nodata=np.nan, resampling=Resampling.bilinear)
            dry = np.isfinite(out) & (out < -15)
            dry[:, : w // 2] = False                           # the east half was dry before
            out[dry] += 12.0
            dst.write(out, 1)
    return after, before


def child(kind: str, after: str, before: str, model: str, out: str) -> dict:
    import time

    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    t0 = time.perf_counter()
    if kind == "change":
        from crossearth_sar.core.change.detect import change_scenes

        r = change_scenes(after, [before], model, out, device="cpu", overwrite=True)
    else:
        from crossearth_sar.core.inference.pipeline import segment_scene

        r = segment_scene(after if kind == "segment after" else before, model, out,
                          device="cpu", overwrite=True)
    return {"kind": kind, "seconds": round(time.perf_counter() - t0, 2),
            "peak_rss_mb": round(peak_rss_mb(), 1), "polygons": r["polygons"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--model", default=None, help="default: the embedded default model")
    p.add_argument("--workdir", default=None)
    p.add_argument("--child", nargs=5, metavar=("KIND", "AFTER", "BEFORE", "MODEL", "OUT"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(*args.child)))
        return 0
    if args.model is None:
        from crossearth_sar.crossearth_cli.segment_cmd import default_model_path

        args.model = str(default_model_path())
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        folder = Path(tmp)
        after, before = write_scenes(folder, args.size)
        runs = {}
        for kind in ("segment after", "segment before", "change"):
            out = folder / f"{kind.replace(' ', '_')}.gpkg"
            proc = subprocess.run([sys.executable, __file__, "--child", kind, str(after),
                                   str(before), args.model, str(out)],
                                  capture_output=True, text=True, check=True)
            runs[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{kind:15s} {runs[kind]['seconds']:8.1f} s  peak RSS "
                  f"{runs[kind]['peak_rss_mb']:8.1f} MB  {runs[kind]['polygons']} polygons")
    both = runs["segment after"]["seconds"] + runs["segment before"]["seconds"]
    larger = max(runs["segment after"]["peak_rss_mb"], runs["segment before"]["peak_rss_mb"])
    print(f"time:   change / (segment after + segment before) = "
          f"{runs['change']['seconds'] / both:.2f} (target <= 1, plus the warp)")
    print(f"memory: change / segment of the larger scene = "
          f"{runs['change']['peak_rss_mb'] / larger:.3f} (target <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
