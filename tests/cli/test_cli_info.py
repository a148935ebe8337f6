"""`ces info` and the CLI's error contract, run as a real process."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

CES = [sys.executable, "-m", "crossearth_sar.crossearth_cli.main"]


def ces(*args, cwd=None):
    return subprocess.run(CES + [str(a) for a in args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


def ces_help(*args):
    """``ces ARGS --help`` at click's default width (COLUMNS fixed: the usage lines wrap at it)."""
    env = {**os.environ, "COLUMNS": "80"}
    return subprocess.run(CES + [str(a) for a in args] + ["--help"], capture_output=True, text=True,
                          env=env, timeout=120)


def listed_commands(help_text: str) -> list[str]:
    """The command names of a click group's help: the first word of each line of its Commands section."""
    lines = help_text.splitlines()
    start = lines.index("Commands:") + 1
    names = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        names.append(line.split()[0])
    return names


def expected_usage(*path: str) -> str:
    """The usage line click gives ``ces PATH...`` (at the width of an 80-column terminal)."""
    import click

    from crossearth_sar.crossearth_cli.main import cli

    ctx = click.Context(cli, info_name="ces", terminal_width=78)
    command = cli
    for name in path:
        command = command.get_command(ctx, name)
        ctx = click.Context(command, info_name=name, parent=ctx, terminal_width=78)
    return ctx.get_usage()


def test_version():
    from crossearth_sar.version import __version__

    r = ces("--version")
    assert r.returncode == 0 and r.stdout == f"ces, version {__version__}\n"


def test_help_lists_exactly_the_registered_commands():
    import click

    from crossearth_sar.crossearth_cli import main

    r = ces_help()
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage: ces [OPTIONS] COMMAND [ARGS]...\n")
    listed = listed_commands(r.stdout)
    # the group is lazy (main.LazyGroup): its commands are main.COMMANDS, imported on first use,
    # so cli.commands (click's eager registry) stays empty and list_commands is the registry
    registered = main.cli.list_commands(click.Context(main.cli))
    assert registered == sorted(main.COMMANDS) and main.cli.commands == {}
    assert listed == registered                       # every command, each once, in order
    assert set(listed) == {"agreement", "benchmark", "change", "descriptors", "doctor", "evaluate",
                           "finetune", "info", "models", "prepare", "pretrain", "segment"}
    for name in registered:                           # each one resolves to a click command of that name
        command = main.cli.get_command(click.Context(main.cli), name)
        assert isinstance(command, click.Command) and command.name == name


def test_every_command_help_exits_0_with_its_usage_line():
    from crossearth_sar.crossearth_cli import main

    for name in sorted(main.COMMANDS):
        r = ces_help(name)
        assert r.returncode == 0, (name, r.stderr)
        usage = expected_usage(name)
        assert usage.startswith(f"Usage: ces {name} [OPTIONS]"), usage
        assert r.stdout.startswith(usage + "\n"), (name, r.stdout[:300])
        assert r.stderr == "", (name, r.stderr)


def test_models_subcommands_are_listed_and_have_help():
    import click

    from crossearth_sar.crossearth_cli.main import cli

    models = cli.get_command(click.Context(cli), "models")
    registered = models.list_commands(click.Context(models))
    assert registered == sorted(models.commands) and registered
    r = ces_help("models")
    assert listed_commands(r.stdout) == registered
    for name in registered:
        r = ces_help("models", name)
        assert r.returncode == 0, (name, r.stderr)
        assert r.stdout.startswith(expected_usage("models", name) + "\n"), (name, r.stdout[:300])


def test_info_json_on_demo_scene(repo_root):
    r = ces("info", "--json", repo_root / "examples" / "Spain_7370579_S1Hand.tif")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    for key in ("width", "height", "count", "dtype", "crs", "pixel_size_m", "domain",
                "nodata_fraction", "bands"):
        assert key in info
    assert (info["width"], info["height"], info["count"]) == (512, 512, 2)
    assert info["crs"] == "EPSG:4326" and info["domain"] == "db"
    assert info["bands"] == ["VV", "VH"] and info["dtype"] == "float32"
    assert all(5 < v < 15 for v in info["pixel_size_m"])


def test_info_text(repo_root):
    r = ces("info", repo_root / "examples" / "Spain_7370579_S1Hand.tif")
    assert r.returncode == 0
    assert "EPSG:4326" in r.stdout and "dualpol: VV, VH, VV-VH" in r.stdout


def _one_line_error(r, name):
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0], r.stderr
    return lines[0]


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    _one_line_error(ces("info", tmp_path / "missing.tif"), "missing.tif")
    (tmp_path / "notes.txt").write_text("not a raster\n")
    assert "not a raster" in _one_line_error(ces("info", tmp_path / "notes.txt"), "notes.txt")
    _one_line_error(ces("info", tmp_path), str(tmp_path))
    p = tmp_path / "i64.tif"
    with rasterio.open(p, "w", driver="GTiff", width=4, height=4, count=1, dtype="int64",
                       crs="EPSG:32630", transform=from_origin(0, 0, 10, 10)) as d:
        d.write(np.ones((1, 4, 4), np.int64))
    assert "unsupported data type" in _one_line_error(ces("info", p), "i64.tif")
    p = tmp_path / "nan.tif"
    with rasterio.open(p, "w", driver="GTiff", width=4, height=4, count=1, dtype="float32",
                       crs="EPSG:32630", transform=from_origin(0, 0, 10, 10),
                       nodata=float("nan")) as d:
        d.write(np.full((1, 4, 4), np.nan, np.float32))
    assert "nodata" in _one_line_error(ces("info", p), "nan.tif")


def test_installed_console_script_and_import_names(tmp_path):
    """After install: `ces` exists, crossearth_sar.* imports, plain `core`/`train` do not."""
    ces_exe = Path(sys.executable).with_name("ces")
    assert ces_exe.exists()
    code = ("import importlib.util as u, crossearth_sar.core.scene.sar_io;"
            "print(u.find_spec('core') is None and u.find_spec('train') is None)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.stdout.strip() == "True", r.stderr
