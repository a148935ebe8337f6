#!/usr/bin/env python3
"""Make a wheel folder for an offline engine setup (the setup's "Wheel folder" parameter):
``python3 scripts/engine_wheels.py DIR [pip download options]`` from a clone of the
repository (``make wheels`` runs it with .venv's Python into .wheels/); needs only pip.

Downloads, as wheels only (``pip download --only-binary=:all:``), everything an offline
setup installs (engine_plan.offline_requirements(): the packaging tools, PyTorch and the
install_requires of setup.cfg) for the Python running this script (its version and
platform; pass ``--python-version``/``--platform`` for another computer). pip's configured
index is used, and options after DIR go to pip (e.g. ``-c requirements/cpu-constraints.txt``).
DIR/.complete is written last, so an interrupted run is never taken for a complete folder;
files already in DIR are not downloaded again. Exit status: pip's.
"""
from __future__ import annotations

import configparser
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPLETE = ".complete"


def install_requires(setup_cfg: Path = ROOT / "setup.cfg") -> list[str]:
    """The requirements in [options] install_requires of setup.cfg."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg, encoding="utf-8")
    return [line.strip() for line in parser["options"]["install_requires"].splitlines()
            if line.strip()]


def _engine_plan():
    """qgis_plugin/engine_plan.py of this folder (imported as crossearth_sar, whatever the
    folder's name; standard library only, like the module)."""
    spec = importlib.util.spec_from_file_location("crossearth_sar", ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    package = importlib.util.module_from_spec(spec)
    sys.modules["crossearth_sar"] = package
    spec.loader.exec_module(package)
    from crossearth_sar.qgis_plugin import engine_plan

    return engine_plan


def main(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print("usage: python3 scripts/engine_wheels.py DIR [pip download options]", file=sys.stderr)
        return 2
    offline_requirements = _engine_plan().offline_requirements
    folder, pip_options = Path(argv[0]), argv[1:]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / COMPLETE).unlink(missing_ok=True)
    requirements = offline_requirements(install_requires())
    done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet",
                           "--only-binary=:all:", "--dest", str(folder), *pip_options,
                           *requirements])
    if done.returncode == 0:
        (folder / COMPLETE).write_text("\n".join(requirements + pip_options) + "\n",
                                       encoding="utf-8")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
