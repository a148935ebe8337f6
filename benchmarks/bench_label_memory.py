"""Peak memory of reading a large labelled scene for training. Prints, never asserts.

``train.labelled_scenes.load_labelled_scenes`` keeps one byte a pixel (the class-index labels); while
reading it also holds the raw label band and the image's validity. This script writes a
synthetic float32 dB scene with a NaN border and a uint8 label raster of the same grid, then
loads them in a fresh process twice: with the validity read in row bands (the default) and
in one whole-scene read, and prints each peak RSS.

    python benchmarks/bench_label_memory.py [--size 8192] [--workdir DIR]
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


def write_pair(folder: Path, size: int, rows: int = 512) -> tuple[Path, Path]:
    """A size x size float32 dB scene (NaN wedge) and its uint8 labels, written in row bands."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    common = dict(driver="GTiff", width=size, height=size, count=1, crs="EPSG:32630",
                  transform=from_origin(400000.0, 4600000.0, 10.0, 10.0), tiled=True,
                  blockxsize=512, blockysize=512, compress="deflate", bigtiff="if_safer")
    img, lab = folder / "big_img.tif", folder / "big_lab.tif"
    with rasterio.open(img, "w", dtype="float32", nodata=float("nan"), **common) as di, \
            rasterio.open(lab, "w", dtype="uint8", **common) as dl:
        xx = np.arange(size)[None, :]
        for r0 in range(0, size, rows):
            h = min(rows, size - r0)
            yy = np.arange(r0, r0 + h)[:, None]
            water = (np.sin(xx / 300.0) + np.cos(yy / 260.0)) > 1.0
            db = np.where(water, -20.0, -8.0) + rng.normal(0, 2.0, (h, size))
            db[xx.repeat(h, 0) < yy * 0.05 + 30] = np.nan
            win = rasterio.windows.Window(0, r0, size, h)
            di.write(db.astype(np.float32), 1, window=win)
            dl.write(water.astype(np.uint8), 1, window=win)
    return img, lab


def child(img: Path, lab: Path, band_pixels: int) -> dict:
    """In a fresh process: load the pair, report the peak RSS (VmHWM) and the labels' size."""
    from crossearth_sar.train import labelled_scenes

    before = peak_rss_mb()
    labelled_scenes.VALID_BAND_PIXELS = band_pixels
    scenes, classes = labelled_scenes.load_labelled_scenes([img], [lab])
    return {"band_pixels": band_pixels, "peak_rss_mb": round(peak_rss_mb(), 1),
            "rss_after_imports_mb": round(before, 1),
            "labels_mb": round(scenes[0].labels.nbytes / 2**20, 1),
            "labelled_fraction": round(scenes[0].labelled_fraction, 4)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=8192)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--child", nargs=3, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        img, lab, bp = args.child
        print(json.dumps(child(Path(img), Path(lab), int(bp))))
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.workdir or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        img, lab = write_pair(folder, args.size)
        print(f"# bench_label_memory: {args.size}x{args.size} float32 scene, uint8 labels")
        peaks = {}
        for name, bp in (("row bands", 1 << 22), ("whole scene", args.size * args.size)):
            out = subprocess.run([sys.executable, __file__, "--child", str(img), str(lab), str(bp)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            peaks[name] = r["peak_rss_mb"]
            print(f"{name:>11}: peak RSS {r['peak_rss_mb']:.0f} MB (after imports "
                  f"{r['rss_after_imports_mb']:.0f} MB; labels {r['labels_mb']:.0f} MB, "
                  f"labelled {r['labelled_fraction']:.3f})")
        print(f"whole-scene / row-band peak: {peaks['whole scene'] / peaks['row bands']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
