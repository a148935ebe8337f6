"""Sentinel-1 GRD products at full size: ``ces prepare`` time and peak memory at 20 m and 10 m,
and ``ces segment PRODUCT`` end to end at 20 m with the default model. Prints, never asserts.

The product is the real 2021 IW GRDH dual-pol product of ../shared/data/s1_safe (its metadata:
annotation, GCPs, calibration and noise LUTs) unzipped to a .SAFE folder, with measurement TIFFs
written at the annotation's full size (25,931 × 16,854 px, uint16, tiled, deflate) by inverting
the calibration from a known sigma0 map: land (VV −8 dB, VH −15 dB) with speckle (4.4 looks)
and a lake (−22 / −29 dB), a DN-0 border of 30 px as on products since 2018. Each command runs
in its own process; its peak RSS is that process's (ru_maxrss of the child).

Targets: prepare at 20 m within 2 minutes and 2.5 GB peak RSS; segment end to end at 20 m
within 12 minutes (2 CPU cores).

    python benchmarks/bench_s1_prepare.py               # prepare 20 m and 10 m, segment 20 m
    python benchmarks/bench_s1_prepare.py --no-segment  # the two preparations only
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("CES_SHARED_DATA", REPO.parent / "shared" / "data")) / "s1_safe"
PRODUCT = DATA / "S1A_IW_GRDH_1SDV_20210119T031653_20210119T031718_036201_043ED0_8255.zip"
BORDER = 30


def write_full_product(folder: Path) -> Path:
    """The product unzipped into ``folder`` with full-size measurement TIFFs; its .SAFE path."""
    from crossearth_sar.core.scene.sentinel1 import luts
    from crossearth_sar.core.scene.sentinel1.product import find_product

    with zipfile.ZipFile(PRODUCT) as z:
        z.extractall(folder)
    safe = next(folder.glob("*.SAFE"))
    rng = np.random.default_rng(0)
    with find_product(safe) as product:
        width, height = product.image_size()
        for pol in product.polarizations:
            files = product.files[pol]
            gain = luts.read_calibration(product.xml(files.calibration), files.calibration)
            noise = luts.read_noise(product.xml(files.noise), files.noise)
            land, lake = {"VV": (-8.0, -22.0), "VH": (-15.0, -29.0)}[pol]
            profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "uint16",
                       "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
            cols = np.arange(width)
            with rasterio.open(safe / files.measurement, "w", **profile) as dst:
                for r0 in range(0, height, 1024):
                    rows = np.arange(r0, min(r0 + 1024, height))
                    ll, pp = np.meshgrid(rows, cols, indexing="ij")
                    in_lake = np.hypot(ll - height / 2, pp - width / 2) < min(width, height) / 6
                    sigma = 10 ** (np.where(in_lake, lake, land) / 10) * rng.gamma(4.4, 1 / 4.4, ll.shape)
                    a = gain.sample(rows, cols)
                    dn = np.sqrt(sigma * a * a + noise.sample(rows, cols))
                    dn = np.clip(np.rint(dn), 1, 65535).astype(np.uint16)
                    dn[:, :BORDER] = 0
                    dn[:, -BORDER:] = 0
                    if r0 == 0:
                        dn[:BORDER] = 0
                    if r0 + len(rows) >= height:
                        dn[-BORDER:] = 0
                    dst.write(dn, 1, window=Window(0, r0, width, len(rows)))
    return safe


WRAPPER = ("import resource, sys\n"
           "from crossearth_sar.crossearth_cli.main import main\n"
           "try:\n    main()\nfinally:\n"
           "    print('peak_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n")


def run(args: list[str]) -> tuple[float, float, str]:
    """(seconds, peak RSS GB of that process, last line of its output) of ``ces ARGS``."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", WRAPPER, *args, "--progress", "none"],
                       capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    peak = [float(line.split()[1]) for line in p.stderr.splitlines() if line.startswith("peak_kb ")]
    out = [line for line in (p.stdout + p.stderr).strip().splitlines() if not line.startswith("peak_kb ")]
    if p.returncode != 0:
        raise SystemExit(f"ces {' '.join(args)} failed: {' '.join(out[-3:])}")
    return seconds, (peak[0] if peak else float("nan")) / 1024 ** 2, out[-1] if out else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-segment", action="store_true")
    parser.add_argument("--resolutions", default="20,native", help="the preparations to time (comma-separated)")
    parser.add_argument("--folder", type=Path, default=None, help="work folder (default: a temporary one)")
    options = parser.parse_args()
    if not PRODUCT.is_file():
        raise SystemExit(f"{PRODUCT}: the real product metadata is absent")
    with tempfile.TemporaryDirectory(dir=options.folder) as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        safe = write_full_product(tmp)
        print(f"# bench_s1_prepare: {safe.name}, measurement TIFFs written in {time.perf_counter() - t0:.0f} s; "
              f"{os.cpu_count()} cpus")
        for resolution in options.resolutions.split(","):
            out = tmp / f"prepared_{resolution}.tif"
            seconds, peak, line = run(["prepare", str(safe), "-o", str(out), "--resolution", resolution])
            print(f"prepare {resolution:>6}: {seconds:6.1f} s, peak RSS {peak:.2f} GB ({line})")
            out.unlink()
        if not options.no_segment:
            seconds, peak, line = run(["segment", str(safe), "-o", str(tmp / "flood.gpkg"), "--summary"])
            print(f"segment     20 m: {seconds:6.1f} s end to end (prepare + segment), peak RSS {peak:.2f} GB ({line})")


if __name__ == "__main__":
    main()
