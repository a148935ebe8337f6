#!/usr/bin/env python3
"""Build the QGIS plugin zip: ``python3 scripts/build_plugin.py crossearth_sar.zip``.

The repository root is the plugin folder; the zip holds it under the single top folder
``crossearth_sar/``, without development files (tests, benchmarks, docs, scripts, CI,
caches, virtual environments, git, GDAL's .aux.xml side files, the models other than the
default one), and at most 25 MB, the limit of plugins.qgis.org. Checks metadata.txt first:
the keys plugins.qgis.org requires, ``version`` equal to version.py's ``__version__``, the
icon present.
Standard library only (runs with Debian's /usr/bin/python3).
"""
from __future__ import annotations

import argparse
import configparser
import fnmatch
import os
import re
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP_FOLDER = "crossearth_sar"
REQUIRED_KEYS = ("name", "qgisMinimumVersion", "description", "about", "version", "author",
                 "email", "repository", "tracker", "homepage", "tags", "category",
                 "hasProcessingProvider", "experimental", "icon")

# Left out wherever they occur.
EXCLUDED_DIRS = {"__pycache__", ".git", ".venv", "venv", ".pytest_cache", ".mypy_cache",
                 ".ruff_cache", ".tox", "build", "dist", "node_modules", ".idea", ".vscode"}
EXCLUDED_DIR_PATTERNS = ("*.egg-info",)
EXCLUDED_FILE_PATTERNS = ("*.pyc", "*.pyo", "*.zip", "*.tmp*", ".*", "*~", "*.swp",
                          "*.aux.xml")   # GDAL's statistics side files: build leftovers
# Only the default model goes into the zip (plugins.qgis.org takes at most 25 MB); the
# other models stay in the repository and the pip package for the CLI, and a user adds one
# to QGIS by copying it into the models folder (README, QGIS).
PLUGIN_MODELS = ("ces-s1-water",)
MAX_ZIP_BYTES = 25 * 1000 * 1000
# Left out at the top level only (development, not plugin).
EXCLUDED_TOP = {"tests", "benchmarks", "docs", "scripts", ".ci", "requirements", "runs",
                "Makefile", "demo.gpkg", "demo_classes.tif", "demo_preview.png"}
# Never left out: the engine's lock, which an engine setup installs from (docs/contracts.md §7).
REQUIRED_FILES = (Path("qgis_plugin") / "engine.lock",)


def read_version(root: Path) -> str:
    """``__version__`` from version.py, without importing the package."""
    text = (root / "version.py").read_text(encoding="utf-8")
    match = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.MULTILINE)
    if not match:
        raise SystemExit(f"{root / 'version.py'}: no __version__ found")
    return match.group(1)


def check_metadata(root: Path) -> dict[str, str]:
    """The [general] section of metadata.txt; SystemExit naming what is wrong."""
    path = root / "metadata.txt"
    if not path.is_file():
        raise SystemExit(f"{path}: missing")
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keep key case (qgisMinimumVersion)
    parser.read(path, encoding="utf-8")
    if "general" not in parser:
        raise SystemExit(f"{path}: no [general] section")
    meta = dict(parser["general"])
    missing = [k for k in REQUIRED_KEYS if not meta.get(k, "").strip()]
    if missing:
        raise SystemExit(f"{path}: missing keys {', '.join(missing)}")
    version = read_version(root)
    if meta["version"].strip() != version:
        raise SystemExit(f"{path}: version {meta['version']} differs from version.py's {version}")
    if meta["hasProcessingProvider"].strip().lower() != "yes":
        raise SystemExit(f"{path}: hasProcessingProvider must be yes")
    if not (root / meta["icon"].strip()).is_file():
        raise SystemExit(f"{path}: icon {meta['icon']} not found")
    if not (root / "LICENSE").is_file():
        raise SystemExit(f"{root / 'LICENSE'}: missing (plugins.qgis.org requires a LICENSE)")
    return meta


def _excluded_dir(rel: Path) -> bool:
    name = rel.name
    if len(rel.parts) == 1 and name in EXCLUDED_TOP:
        return True
    return name in EXCLUDED_DIRS or name.startswith(".") or any(
        fnmatch.fnmatch(name, p) for p in EXCLUDED_DIR_PATTERNS)


def _excluded_file(rel: Path, output: Path) -> bool:
    if len(rel.parts) == 1 and rel.name in EXCLUDED_TOP:
        return True
    if rel.parts[:1] == ("models",) and rel.suffix in (".safetensors", ".png") \
            and not rel.name.startswith(PLUGIN_MODELS):
        return True
    return any(fnmatch.fnmatch(rel.name, p) for p in EXCLUDED_FILE_PATTERNS)


def plugin_files(root: Path, output: Path | None = None) -> list[Path]:
    """The files of the plugin, relative to ``root``, sorted."""
    files = []
    for folder, dirs, names in os.walk(root):
        here = Path(folder).relative_to(root)
        dirs[:] = sorted(d for d in dirs if not _excluded_dir(here / d))
        for name in sorted(names):
            rel = here / name
            full = root / rel
            if output is not None and full.resolve() == output.resolve():
                continue
            if full.is_symlink() or not full.is_file() or _excluded_file(rel, output):
                continue
            files.append(rel)
    return files


def build(output: Path, root: Path = ROOT) -> list[str]:
    """Write the zip to ``output`` (atomically); returns the names inside it."""
    check_metadata(root)
    output = output.resolve()
    files = plugin_files(root, output)
    missing = [str(f) for f in REQUIRED_FILES if f not in files]
    if missing:
        raise SystemExit(f"{', '.join(missing)}: missing from the plugin (python3 scripts/lock_engine.py)")
    tmp = output.with_name(f".{output.name}.tmp-{os.getpid()}")
    names = []
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for rel in files:
                arcname = f"{TOP_FOLDER}/{rel.as_posix()}"
                zf.write(root / rel, arcname)
                names.append(arcname)
        size = tmp.stat().st_size
        if size > MAX_ZIP_BYTES:
            raise SystemExit(f"{output}: {size / 1e6:.1f} MB, over the {MAX_ZIP_BYTES / 1e6:.0f} MB "
                             "that plugins.qgis.org accepts")
        os.replace(tmp, output)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default="crossearth_sar.zip",
                        help="the zip to write (default: crossearth_sar.zip)")
    args = parser.parse_args(argv)
    output = Path(args.output)
    if not output.parent.resolve().is_dir():
        print(f"build_plugin: {output}: folder {output.parent} does not exist", file=sys.stderr)
        return 2
    try:
        names = build(output)
    except SystemExit as e:
        print(f"build_plugin: {e}", file=sys.stderr)
        return 1
    size = output.stat().st_size
    print(f"{output}: {len(names)} files, {size / 1e6:.1f} MB, top folder {TOP_FOLDER}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
