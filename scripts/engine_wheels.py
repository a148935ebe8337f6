#!/usr/bin/env python3
"""Make a wheel folder for an offline engine setup (the setup's "Wheel folder" parameter):
``python3 scripts/engine_wheels.py DIR [--backend cpu|cuda] [--python-version 3.12]
[--platform TAG] [--torch-index URL] [pip download options]`` from a clone of the
repository (``make wheels`` runs it with .venv's Python into .wheels/); needs only pip.

Downloads, as wheels only and with ``--require-hashes``, exactly what an offline setup
installs (docs/contracts.md §7): the entries of the engine's lock (qgis_plugin/engine.lock:
the packaging tools, uv, setup.cfg's install_requires, PyTorch's dependencies) that apply to
the target, then PyTorch at the lock's version from the PyTorch index of the backend
(``--torch-index`` another index; ``--torch-index=`` pip's configured one; with its CUDA
runtime for ``--backend cuda``). The target is the Python running this script, or another
computer: ``--python-version`` and ``--platform`` (``win_amd64``, ``macosx_14_0_arm64``,
``manylinux_2_28_x86_64``, which brings the older manylinux tags) go to pip, and the lock's
markers are evaluated for them here. Other options go to pip. DIR/.complete is
written last, so an interrupted run is never taken for a complete folder; files already in
DIR are not downloaded again (their hashes are checked). Exit status: pip's.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib
import importlib.util
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPLETE = ".complete"
PYPI = "https://pypi.org/simple"


def plugin_module(name: str):
    """qgis_plugin/<name>.py of this folder (imported as crossearth_sar, whatever the
    folder's name; the engine modules are standard library only)."""
    if "crossearth_sar" not in sys.modules:
        spec = importlib.util.spec_from_file_location("crossearth_sar", ROOT / "__init__.py",
                                                      submodule_search_locations=[str(ROOT)])
        package = importlib.util.module_from_spec(spec)
        sys.modules["crossearth_sar"] = package
        spec.loader.exec_module(package)
    return importlib.import_module(f"crossearth_sar.qgis_plugin.{name}")


def install_requires(setup_cfg: Path = ROOT / "setup.cfg") -> list[str]:
    """The requirements in [options] install_requires of setup.cfg."""
    return plugin_module("engine_lock").install_requires(setup_cfg)


def platform_tags(platforms: list[str]) -> list[str]:
    """pip's ``--platform`` values for ``platforms``: a ``manylinux_2_N_ARCH`` brings the older
    manylinux tags that pip does not add itself (down to manylinux_2_17, manylinux2014)."""
    tags: list[str] = []
    for platform in platforms:
        match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
        more = [platform]
        if match and int(match.group(1)) >= 17:
            arch = match.group(2)
            more = [f"manylinux_2_{n}_{arch}" for n in range(int(match.group(1)), 16, -1)]
            more.append(f"manylinux2014_{arch}")
        tags += [t for t in more if t not in tags]
    return tags


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="engine_wheels.py", description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--backend", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--python-version")
    parser.add_argument("--platform", action="append", default=[])
    parser.add_argument("--torch-index", help="PyTorch's index (default: the backend's)")
    return parser.parse_known_args(argv)


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("usage: python3 scripts/engine_wheels.py DIR [--backend cpu|cuda] "
              "[--python-version X.Y] [--platform TAG] [--torch-index URL] "
              "[pip download options]", file=sys.stderr)
        return 2
    args, pip_options = parse(argv)
    lock_module, plan = plugin_module("engine_lock"), plugin_module("engine_plan")
    lock = lock_module.read_lock()
    backend = plan.choose_backend(args.backend)
    environment = lock_module.target_environment(args.python_version,
                                                 args.platform[0] if args.platform else None)
    target = ([f"--python-version={args.python_version}"] if args.python_version else []) + \
        [f"--platform={p}" for p in platform_tags(args.platform)]
    torch_index = plan.PYTORCH_INDEX.format(backend=backend) if args.torch_index is None \
        else args.torch_index
    folder = args.folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / COMPLETE).unlink(missing_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
           "--dest", str(folder), *target, *pip_options]
    with tempfile.TemporaryDirectory(prefix="ces-wheels-") as tmp:
        locked = Path(tmp) / "engine-target.txt"
        locked.write_text(lock.requirements(environment=environment), encoding="utf-8")
        done = subprocess.run([*pip, "--no-deps", "--require-hashes", "-r", str(locked)])
    if done.returncode != 0:
        return done.returncode
    index = ["--index-url", torch_index, "--extra-index-url", PYPI] if torch_index else []
    # the CPU build's dependencies are the lock's (downloaded above); a CUDA build brings its
    # CUDA runtime (Linux) from the PyTorch index
    deps = ["--no-deps"] if backend == "cpu" else []
    done = subprocess.run([*pip, *index, *deps, f"torch=={lock.torch}"])
    if done.returncode == 0:
        digest = hashlib.sha256(lock.path.read_bytes()).hexdigest()
        (folder / COMPLETE).write_text("\n".join([
            f"lock {lock.path.name} sha256:{digest}",
            f"torch=={lock.torch} ({backend}, {torch_index or 'the configured index'})",
            "target " + " ".join(f"{k}={v}" for k, v in sorted(environment.items())),
            *pip_options]) + "\n", encoding="utf-8")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
