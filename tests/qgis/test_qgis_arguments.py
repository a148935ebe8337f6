"""The ``ces`` command lines of the QGIS algorithms (qgis_plugin/ces_arguments.py), built from
plain values without QGIS or an engine, and accepted by the real ``ces`` parser."""
from __future__ import annotations

import click
import pytest

from crossearth_sar.crossearth_cli.main import cli
from crossearth_sar.qgis_plugin import ces_arguments as ca


def _parses(command: str, args: list[str]) -> dict:
    """The parameters ``ces COMMAND`` parses from ``args`` (click's own parser; nothing runs)."""
    sub = cli.get_command(click.Context(cli), command)
    return sub.make_context(command, list(args), resilient_parsing=False).params


def test_segment_arguments():
    args = ca.segment_arguments("s.tif", "o.gpkg", tile=512, overlap=128, batch=4,
                                device="auto", calibrated=["--calibrated", "yes"], min_area=0.0,
                                simplify=None, model="m.safetensors", raster="", preview="p.png")
    assert args == ["s.tif", "-o", "o.gpkg", "--tile", "512", "--overlap", "128", "--batch", "4",
                    "--device", "auto", "--overwrite", "--calibrated", "yes", "--min-area", "0.0",
                    "--model", "m.safetensors", "--preview", "p.png"]
    params = _parses("segment", args)
    assert params["min_area"] == 0.0 and params["calibrated"] is True and params["raster"] is None


def test_change_arguments():
    args = ca.change_arguments("a.tif", ["b1.tif", "b 2.tif"], "o.gpkg", tile=256, overlap=64,
                               batch=2, device="cpu", confidence="c.tif")
    assert args[:5] == ["a.tif", "--before", "b1.tif", "--before", "b 2.tif"]
    params = _parses("change", args)
    assert tuple(map(str, params["befores"])) == ("b1.tif", "b 2.tif")
    assert str(params["confidence"]) == "c.tif"


def test_descriptors_arguments_leave_zero_to_ces():
    assert ca.descriptors_arguments("s.tif", "d.tif") == ["s.tif", "-o", "d.tif", "--overwrite"]
    args = ca.descriptors_arguments("s.tif", "d.tif", tile=16, stride=8)
    assert args[-4:] == ["--tile", "16", "--stride", "8"]
    assert _parses("descriptors", args)["tile"] == 16


def test_evaluate_arguments():
    args = ca.evaluate_arguments(["i1.tif", "i2.tif"], ["l.gpkg"], "r.json", "r.experts.png",
                                 tile=512, device="auto", class_field="", model=None,
                                 classes="c.yaml")
    assert args == ["--images", "i1.tif", "--images", "i2.tif", "--labels", "l.gpkg", "--json",
                    "r.json", "--experts-plot", "r.experts.png", "--tile", "512", "--device",
                    "auto", "--overwrite", "--classes", "c.yaml"]
    assert _parses("evaluate", args)["images"] == ("i1.tif", "i2.tif")


@pytest.mark.parametrize("resume", [False, True])
def test_finetune_arguments(resume):
    args = ca.finetune_arguments(["i.tif"], "polys.gpkg", "out.safetensors", iters=500, batch=4,
                                 lr=1e-4, tile=256, device="auto", model="base.safetensors",
                                 work_dir="out.ckpt", resume=resume, class_field="class",
                                 peft=["--peft", "earth-adapter"])
    assert ("--resume" in args) is resume
    assert args[args.index("--lr") + 1] == "0.0001"
    params = _parses("finetune", args)
    assert params["lr"] == 1e-4 and params["peft"] == "earth-adapter" and params["iters"] == 500


@pytest.mark.parametrize("resolution, parsed", [("auto", "auto"), ("native", None)])
def test_prepare_arguments(resolution, parsed):
    args = ca.prepare_arguments("S1A_X.zip", "p.tif", resolution=resolution)
    assert args == ["S1A_X.zip", "-o", "p.tif", "--resolution", resolution, "--overwrite"]
    params = _parses("prepare", args)
    assert params["resolution"] == parsed and params["overwrite"] is True
    assert set(ca.RESOLUTION_OPTIONS) == {"auto", "native"}
