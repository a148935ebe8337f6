"""Errors name parameters, each face words them (core/errors.py): the CLI as flags (stderr
and the JSON error event, which also carries the template for QGIS), a data file as its keys,
the Python API by name. Real rasters, real model files, the real `ces` entry point."""
from __future__ import annotations

import json

from crossearth_sar.core.errors import InputError, ParameterError, bare, parameter, word_parameters
from crossearth_sar.crossearth_cli.main import main
from crossearth_sar.crossearth_cli.reporting import error_event, error_text, flag

from _helpers_train import write_label, write_scene


def test_a_parameter_is_worded_by_each_face():
    e = ParameterError("min_area", 5, "must be at least 0", "/data/a.tif")
    assert str(e) == "/data/a.tif: min_area 5: must be at least 0"             # API, data files
    assert error_text(e) == "/data/a.tif: --min-area 5: must be at least 0"     # CLI
    assert e.worded(lambda n: f"'{n.title()}'") == "/data/a.tif: 'Min_Area' 5: must be at least 0"
    assert e.parameters == ("min_area",) and e.parameter == "min_area" and e.value == 5
    hint = InputError(f"o.gpkg: output exists (use {parameter('overwrite')} to replace it)")
    assert error_text(hint) == "o.gpkg: output exists (use --overwrite to replace it)"
    assert str(hint) == "o.gpkg: output exists (use overwrite to replace it)"
    # wrapped by a data-file reader: its words are final (the keys), nothing left to word
    wrapped = InputError(f"data.yaml: source 's': {hint}")
    assert wrapped.parameters == () and "use overwrite" in error_text(wrapped)
    assert word_parameters(f"choose with {parameter('bands')}", flag) == "choose with --bands"
    assert word_parameters(f"choose with {parameter('bands')}", bare) == "choose with bands"
    assert flag("pair_pattern") == "--pair-pattern"


def test_the_json_error_event_carries_the_template_and_parameters():
    e = InputError(f"give both {parameter('val_images')} and {parameter('val_labels')}")
    assert error_event(e) == {"event": "error", "message": "give both --val-images and --val-labels",
                              "template": "give both {val_images} and {val_labels}",
                              "parameters": ["val_images", "val_labels"]}
    assert error_event(InputError("x.tif: not a raster")) == {
        "event": "error", "message": "x.tif: not a raster"}


def test_cli_error_from_the_core_names_the_flag_and_the_event_names_the_parameter(
        tmp_path, tiny_model, capsys):
    write_scene(tmp_path / "a.tif", size=64)
    code = main(["segment", str(tmp_path / "a.tif"), "-o", str(tmp_path / "o.gpkg"),
                 "--model", str(tiny_model), "--min-area", "1e7", "--progress", "json"])
    out, err = capsys.readouterr()
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith(f"ces: error: {tmp_path / 'a.tif'}: --min-area 1e+07: not smaller "
                           "than the whole scene"), line
    event = [json.loads(line) for line in out.splitlines()][-1]
    assert event["event"] == "error" and event["message"] == line[len("ces: error: "):]
    assert event["parameters"] == ["min_area"]
    assert event["template"] == event["message"].replace("--min-area", "{min_area}")
    assert not (tmp_path / "o.gpkg").exists()


def test_a_data_file_error_names_the_key_not_a_flag(tmp_path, tiny_model, capsys):
    for i, name in enumerate("ab"):   # two pairs: pairing by the pattern, which fails
        write_label(tmp_path / f"mask_{name}.tif",
                    write_scene(tmp_path / f"scene_{name}.tif", size=64, seed=i))
    data = tmp_path / "data.yaml"
    data.write_text("classes:\n  - {name: background, value: 0}\n  - {name: water, value: 1}\n"
                    "sources:\n  - name: s1\n    images: scene_*.tif\n    labels: mask_*.tif\n"
                    "    classes: {background: 0, water: 1}\n    pair_pattern: 'tile_(\\d+)'\n")
    code = main(["finetune", "--model", str(tiny_model), "--data", str(data), "--iters", "1",
                 "--tile", "32", "-o", str(tmp_path / "o.safetensors")])
    [line] = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert "data.yaml: source 's1':" in line and "does not match pair_pattern" in line, line
    assert "--pair-pattern" not in line
    assert not (tmp_path / "o.safetensors").exists()
