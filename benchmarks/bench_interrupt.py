"""SIGINT to exit: how long ``ces segment`` takes to stop after Ctrl-C (or QGIS's Cancel,
which sends SIGINT and SIGKILL after its grace period). Prints, never asserts.

A synthetic scene (uint16 amplitude, 2048² by default) is segmented with the default model;
once the first progress event of the windows arrives, SIGINT is sent and the time until
the process has exited is measured (several trials: median and maximum), as is what it
left behind (it must be nothing). Target: under 0.5 s on an idle machine; compare with the
QGIS provider's grace period (qgis_plugin/ces_process.py, CANCEL_GRACE_S).

    python benchmarks/bench_interrupt.py [--size 2048] [--trials 5]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_segment import write_synthetic_scene  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def grace_period() -> str:
    """The provider's SIGINT-to-SIGKILL grace period as written in ces_process.py."""
    text = (REPO / "qgis_plugin" / "ces_process.py").read_text()
    m = re.search(r"^\s*([A-Z_]*GRACE[A-Z_]*)\s*=\s*([0-9.]+)", text, re.M)
    return f"{m.group(1)} = {m.group(2)} s" if m else "(no *GRACE* constant found)"


def one_trial(ces: str, scene: Path, folder: Path) -> tuple[float, list[str]]:
    out = folder / "out.gpkg"
    proc = subprocess.Popen([ces, "segment", str(scene), "-o", str(out), "--raster",
                             "--progress", "json", "--overwrite"], cwd=folder,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        event = json.loads(line)
        if event.get("event") == "progress" and event.get("done", 0) >= 1:
            break
    t0 = time.perf_counter()
    proc.send_signal(signal.SIGINT)
    proc.wait()
    dt = time.perf_counter() - t0
    proc.stdout.close()
    proc.stderr.close()
    left = sorted(p.name for p in folder.iterdir() if p.name != scene.name)
    return dt, left


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--trials", type=int, default=5)
    args = ap.parse_args()
    ces = str(Path(sys.executable).parent / "ces")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        scene = write_synthetic_scene(folder / "scene.tif", args.size)
        times = []
        for i in range(args.trials):
            dt, left = one_trial(ces, scene, folder)
            times.append(dt)
            print(f"trial {i + 1}: SIGINT -> exit {dt:.3f} s; left behind: {left or 'nothing'}")
    print(f"SIGINT -> exit over {len(times)} trials: median {statistics.median(times):.3f} s, "
          f"max {max(times):.3f} s (load average {os.getloadavg()[0]:.1f}); "
          f"QGIS provider: {grace_period()}")


if __name__ == "__main__":
    main()
