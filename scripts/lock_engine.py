#!/usr/bin/env python3
"""Write the engine's lock, qgis_plugin/engine.lock (its format and use:
qgis_plugin/engine_lock.py; docs/contracts.md §7): ``python3 scripts/lock_engine.py
[--torch VERSION]`` from a clone of the repository (``make lock``); needs uv (``pip
install uv``) and PyPI.

The input is setup.cfg's install_requires, the packaging tools (pip, setuptools, wheel) and
uv (an offline setup installs with it when the wheel folder holds it), with PyTorch at
exactly ``--torch`` (default: the version the current lock names). ``uv pip compile
--universal --generate-hashes --python-version 3.10`` resolves them once for every platform
and Python >= 3.10 from PyPI. PyTorch itself and what only PyPI's Linux build of it needs
(the CUDA runtime: nvidia-*, cuda-*, triton) are then left out: the setup installs PyTorch
from the PyTorch index of the backend, whose files differ from PyPI's; the lock names its
version in the header line ``# torch==VERSION``. Last, it lists the targets (Python 3.10 to
3.14 on Linux x86_64 and aarch64, Windows x86_64, macOS arm64) where an entry has no wheel,
from PyPI's file lists: a setup installs wheels only. Exit status: uv's, or 2 without uv.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from engine_wheels import ROOT, plugin_module

PYPI = "https://pypi.org/simple"
GPU_ONLY = re.compile(r"nvidia-.*|cuda-.*|triton|pytorch-triton")
HEADER = """\
# The lock of the CrossEarth-SAR engine (docs/contracts.md §7; qgis_plugin/engine_lock.py):
# every package the engine installs, at one exact version with the SHA-256 of each of its
# files, for Linux, Windows and macOS and every Python >= {python} (the markers say where).
# Written by `python3 scripts/lock_engine.py` (`make lock`) with {uv} (`uv pip compile
# --universal --generate-hashes`, from PyPI); do not edit. "-r {input}": setup.cfg's
# install_requires and the packaging tools. A setup installs these with --require-hashes.
# PyTorch is locked by version only: it comes from the PyTorch index of the engine's backend
# (cpu, {cuda}), whose files are not PyPI's; its dependencies are entries here, and a CUDA
# build's CUDA runtime (Linux) comes with it from that index.
# torch=={torch}
"""


def find_uv(given: str | None = None) -> str | None:
    """uv: ``given``, the uv package of this Python (``pip install uv``), or uv on PATH."""
    if given:
        return given
    try:
        import uv

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError):
        return shutil.which("uv")


def pruned(entries: list) -> list:
    """The entries less torch and what only PyPI's Linux build of it needs (GPU_ONLY, and
    whatever only these need, by uv's ``via``); torch's other dependencies stay."""
    dead = {e.name for e in entries if GPU_ONLY.fullmatch(e.name)}
    while True:
        orphans = {e.name for e in entries if e.name not in dead and e.via
                   and all(v in dead for v in e.via)}
        if not orphans:
            break
        dead |= orphans
    return [e for e in entries if e.name not in dead and e.name != "torch"]


def entry_text(entry) -> str:
    """An entry as uv writes it: the requirement, its hashes, its ``# via`` lines."""
    if len(entry.via) == 1:
        via = [f"    # via {entry.via[0]}"]
    else:
        via = ["    # via", *(f"    #   {v}" for v in entry.via)]
    return "\n".join([entry.text, *via])


TARGETS = ("manylinux_2_28_x86_64", "manylinux_2_28_aarch64", "win_amd64", "macosx_14_0_arm64")


def _wheel_fits(filename: str, minor: int, target: str) -> bool:
    """Whether a wheel installs on CPython 3.``minor`` on the ``target`` platform tag."""
    if not filename.endswith(".whl"):
        return False
    pythons, abi, platforms = filename[:-4].split("-")[-3:]
    python_ok = abi in ("none", "abi3", f"cp3{minor}") and any(
        tag in ("py3", "py2.py3") or tag == f"cp3{minor}"
        or (abi == "abi3" and tag.startswith("cp3") and int(tag[3:]) <= minor)
        for tag in pythons.split("."))
    arch = target.rsplit("_", 1)[-1] if target.startswith("manylinux") else None
    return python_ok and any(
        tag == "any" or tag == target == "win_amd64"
        or (arch is not None and tag.startswith("manylinux") and tag.endswith(arch))
        or (target.startswith("macosx") and tag.startswith("macosx")
            and tag.endswith(("arm64", "universal2")))
        for tag in platforms.split("."))


def missing_wheels(lock, lock_module, index: str = PYPI) -> dict[str, list[str]]:
    """{"3.12 win_amd64": ["fiona==1.10.1", ...]}: the entries without a wheel per target."""
    files = {}
    for name in sorted(lock.names()):
        request = urllib.request.Request(f"{index.rstrip('/')}/{name}/", headers={
            "Accept": "application/vnd.pypi.simple.v1+json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            files[name] = json.load(answer)["files"]
    missing = {}
    for minor in range(10, 15):
        for target in TARGETS:
            environment = lock_module.target_environment(f"3.{minor}", target)
            for entry in lock.applicable(environment):
                hashes = {h.split(":", 1)[1] for h in entry.hashes}
                if not any(_wheel_fits(f["filename"], minor, target) for f in files[entry.name]
                           if f.get("hashes", {}).get("sha256") in hashes):
                    missing.setdefault(f"3.{minor} {target}", []).append(
                        f"{entry.name}=={entry.version}")
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch", help="PyTorch's exact version (default: the current lock's)")
    parser.add_argument("--index-url", default=PYPI, help=f"the package index (default {PYPI})")
    parser.add_argument("--uv", help="the uv program (default: the uv package, or uv on PATH)")
    parser.add_argument("--output", type=Path, help="default: qgis_plugin/engine.lock")
    args = parser.parse_args(argv)
    lock_module = plugin_module("engine_lock")
    plan = plugin_module("engine_plan")
    output = args.output or lock_module.LOCK_FILE
    if not args.torch and not Path(output).is_file():
        print(f"lock_engine: no {output} yet: name PyTorch's version with --torch", file=sys.stderr)
        return 2
    torch = args.torch or lock_module.read_lock(output).torch
    uv = find_uv(args.uv)
    if uv is None:
        print("lock_engine: uv not found: `python3 -m pip install uv`, then run again",
              file=sys.stderr)
        return 2
    required = lock_module.install_requires(ROOT / "setup.cfg")
    inputs = [*lock_module.TOOLS, *lock_module.OPTIONAL, *required, f"torch=={torch}"]
    version = subprocess.run([uv, "--version"], capture_output=True, text=True).stdout.split(" (")[0]
    minimum = "%d.%d" % plan.MIN_PYTHON
    with tempfile.TemporaryDirectory(prefix="ces-lock-") as tmp:
        (Path(tmp) / lock_module.INPUT_NAME).write_text("\n".join(inputs) + "\n", encoding="utf-8")
        done = subprocess.run([uv, "pip", "compile", "--no-config", "--quiet", "--universal",
                               "--generate-hashes", "--python-version", minimum,
                               "--default-index", args.index_url, "--no-header",
                               "--annotation-style", "split", lock_module.INPUT_NAME,
                               "-o", "raw.txt"], cwd=tmp)
        if done.returncode != 0:
            return done.returncode
        raw = (Path(tmp) / "raw.txt").read_text(encoding="utf-8")
    header = HEADER.format(python=minimum, uv=version, input=lock_module.INPUT_NAME,
                           cuda=plan.CUDA_BACKEND, torch=torch)
    entries = pruned(lock_module.parse_lock(header + raw, output).entries)
    text = header + "".join(entry_text(e) + "\n" for e in entries)
    lock_module.parse_lock(text, output)   # it reads back
    tmp_output = output.with_name(f".{output.name}.tmp")
    tmp_output.write_text(text, encoding="utf-8")
    tmp_output.replace(output)
    print(f"{output}: {len(entries)} entries ({len({e.name for e in entries})} packages), "
          f"torch=={torch}, {len(text.splitlines())} lines")
    try:
        missing = missing_wheels(lock_module.read_lock(output), lock_module, args.index_url)
    except (OSError, ValueError) as e:
        print(f"lock_engine: the wheels were not checked: {e}", file=sys.stderr)
        return 0
    for target, entries in missing.items():
        print(f"no wheel for Python {target}: {', '.join(entries)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
