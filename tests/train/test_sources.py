"""The data file (train/sources.py): parsing and checking a real YAML / JSON file written to
disk, every error naming the file and the source, the source entry written back, and the
labelled scenes of several sources read from real small GeoTIFFs with their weights, labels
and open options."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning

from crossearth_sar.core.errors import InputError
from crossearth_sar.train.classes import IGNORE_INDEX
from crossearth_sar.train.sources import (
    Source,
    load_data_file,
    load_source_scenes,
    parse_source,
    parse_sources,
    source_document,
)

from _helpers_train import write_label, write_scene

CLASSES = "classes: [{name: land, value: 0}, {name: water, value: 1}]\n"


def _write(tmp_path: Path, text: str, name: str = "data.yaml") -> Path:
    f = tmp_path / name
    f.write_text(text)
    return f


def test_a_data_file_is_parsed_with_paths_relative_to_it(tmp_path):
    (tmp_path / "s1_classes.yaml").write_text("classes: [{name: land, value: 10}, {name: water, values: [20, 21]}]\n"
                                              "ignore: [99]\n")
    f = _write(tmp_path, CLASSES + f"""sources:
  - name: ombria
    images: ombria/AFTER
    labels: [ombria/MASK, {tmp_path / "extra"}]
    classes: {{land: 0, water: 255}}
    ignore: 9
  - images: s1/*_img.tif
    labels: s1/*_lab.tif
    classes: s1_classes.yaml
    weight: 2.5
    stretch: source
    bands: [1, 2]
    domain: db
    class_field: cls
    pair_pattern: '(\\d+)'
    calibrated: no
    nodata: [0, 255]
""")
    data = load_data_file(f)
    assert data.path == f and data.classes.names == ["land", "water"]
    a, b = data.sources
    assert a.name == "ombria" and b.name == "source2"              # unnamed: numbered
    assert a.images == [str(tmp_path / "ombria/AFTER")]
    assert a.labels == [str(tmp_path / "ombria/MASK"), str(tmp_path / "extra")]   # absolute kept
    assert a.classes.names == ["land", "water"] and a.classes.ignore == [9]
    assert [a.classes.index_of(v) for v in (0, 255, 9)] == [0, 1, IGNORE_INDEX]
    assert (a.weight, a.stretch, a.bands, a.calibrated, a.nodata) == (1.0, "scene", None, None, [])
    assert a.open_options == {}
    # the second source's label values come from its own classes file, by class name
    assert [b.classes.index_of(v) for v in (10, 20, 21, 99)] == [0, 1, 1, IGNORE_INDEX]
    assert (b.weight, b.stretch, b.bands, b.domain) == (2.5, "source", [1, 2], "db")
    assert (b.class_field, b.pair_pattern, b.calibrated, b.nodata) == ("cls", r"(\d+)", False, [0.0, 255.0])
    assert b.open_options == {"domain": "db", "bands": [1, 2], "calibrated": False,
                              "nodata_values": (0.0, 255.0)}


def test_json_data_file_and_classes_file_named_at_the_top(tmp_path):
    (tmp_path / "model_classes.yaml").write_text("classes: [{name: bg, value: 0}, {name: water, value: 1}]\n")
    f = _write(tmp_path, json.dumps({"classes": "model_classes.yaml", "sources": [
        {"name": "s", "images": "i.tif", "labels": "l.tif", "classes": {"water": [1, 2]}, "calibrated": True}]}),
        "data.json")
    data = load_data_file(f)
    assert data.classes.names == ["bg", "water"]
    src = data.sources[0]
    assert src.calibrated is True and src.open_options == {"calibrated": True}
    assert [c["values"] for c in src.classes.classes] == [[], [1, 2]]   # bg unlabelled here


def test_a_source_written_back_parses_to_the_same_source(tmp_path):
    f = _write(tmp_path, CLASSES + """sources:
  - {name: s, images: [a.tif, b.tif], labels: l, classes: {water: [1, 2], land: 0}, ignore: [255],
     weight: 3, stretch: source, bands: VV, domain: db, pair_pattern: x(\\d), calibrated: yes,
     nodata: -9999}
""")
    data = load_data_file(f)
    src = data.sources[0]
    doc = source_document(src)
    assert doc == {"name": "s", "images": [str(tmp_path / "a.tif"), str(tmp_path / "b.tif")],
                   "labels": [str(tmp_path / "l")], "classes": {"land": [0], "water": [1, 2]},
                   "ignore": [255], "weight": 3.0, "stretch": "source", "bands": ["VV"], "domain": "db",
                   "pair_pattern": r"x(\d)", "nodata": [-9999.0], "calibrated": "yes"}
    assert parse_source(doc, 0, data.classes, f) == src


def test_benchmark_datasets_use_the_same_parser_with_their_own_keys(tmp_path):
    data = load_data_file(_write(tmp_path, CLASSES + "sources: [{name: s, images: i, labels: l, classes: {water: 1}}]\n"))
    items = [{"name": "d", "images": "i", "labels": "l", "classes": {"water": 1}, "max_images": 4}]
    (src,) = parse_sources(items, data.classes, tmp_path / "suite.yaml", "dataset", extra_keys=("max_images",))
    assert isinstance(src, Source) and src.extra == {"max_images": 4}
    with pytest.raises(InputError, match=r"suite.yaml: dataset 'd': unknown key\(s\) max_images"):
        parse_sources(items, data.classes, tmp_path / "suite.yaml", "dataset")


ENTRY = "name: s, images: i.tif, labels: l.tif, classes: {water: 1}"


@pytest.mark.parametrize("text, message", [
    ("sources: []\n", "a data file needs a non-empty 'sources' list"),
    ("- just a list\n", "a data file needs a non-empty 'sources' list"),
    (f"sources: [{{{ENTRY}}}]\n", "a data file needs a top-level 'classes' list (the model's classes)"),
    (CLASSES + "sources: [not a mapping]\n", "source 1 must be a mapping (images, labels, classes...)"),
    (CLASSES + "sources: [{name: s, images: i.tif, classes: {water: 1}}]\n", "source 's': needs 'labels'"),
    (CLASSES + f"sources: [{{{ENTRY}, wieght: 2, colour: red}}]\n", "source 's': unknown key(s) colour, wieght"),
    (CLASSES + f"sources: [{{{ENTRY}, weight: heavy}}]\n", "source 's': weight 'heavy' is not a number"),
    (CLASSES + f"sources: [{{{ENTRY}, weight: 0}}]\n", "source 's': weight must be a positive number, got 0"),
    (CLASSES + f"sources: [{{{ENTRY}, weight: .inf}}]\n", "source 's': weight must be a positive number, got inf"),
    (CLASSES + f"sources: [{{{ENTRY}, stretch: tile}}]\n", "source 's': stretch 'tile' is not one of scene, source"),
    (CLASSES + f"sources: [{{{ENTRY}, domain: sigma0}}]\n", "source 's': domain 'sigma0' is not one of"),
    (CLASSES + "sources: [{name: s, images: 3, labels: l.tif, classes: {water: 1}}]\n",
     "source 's': 'images' must be a path or a list of paths"),
    (CLASSES + "sources: [{name: s, images: i.tif, labels: [], classes: {water: 1}}]\n",
     "source 's': 'labels' must be a path or a list of paths"),
    (CLASSES + "sources: [{name: s, images: i.tif, labels: l.tif, classes: [1, 2]}]\n",
     "source 's': 'classes' must map class names to label values (e.g. {water: [1, 2]}) or name a classes file"),
    (CLASSES + "sources: [{name: s, images: i.tif, labels: l.tif, classes: {flood: 1}}]\n",
     "source 's': class 'flood' is not one of the data file's classes (land, water)"),
    (CLASSES + "sources: [{name: s, images: i.tif, labels: l.tif, classes: {land: [0, 1], water: 1}}]\n",
     "source 's': label value 1 is claimed by two classes, 'land' and 'water'"),
    (CLASSES + f"sources: [{{{ENTRY}, ignore: [x]}}]\n", "source 's': 'ignore' must be a list of integers"),
    (CLASSES + f"sources: [{{{ENTRY}, ignore: [1, 255]}}]\n", "source 's': label values [1] are both classes and ignored"),
    (CLASSES + f"sources: [{{{ENTRY}, calibrated: maybe}}]\n", "source 's': calibrated 'maybe' is not one of auto, yes, no"),
    (CLASSES + f"sources: [{{{ENTRY}, nodata: [0, x]}}]\n", "source 's': nodata must be a number or a list of numbers"),
    (CLASSES + f"sources: [{{{ENTRY}, nodata: .nan}}]\n", "source 's': nodata values must be finite numbers"),
    (CLASSES + f"sources: [{{{ENTRY}}}, {{{ENTRY}}}]\n", "source name 's' appears twice"),
    ("classes: [\nsources: x\n", "not a valid data file"),
])
def test_bad_entries_are_input_errors_naming_the_file_and_the_source(tmp_path, text, message):
    f = _write(tmp_path, text)
    with pytest.raises(InputError) as e:
        load_data_file(f)
    assert str(e.value).startswith(f"{f}: "), str(e.value)
    assert message in str(e.value), str(e.value)


def test_a_missing_data_file_is_named(tmp_path):
    with pytest.raises(InputError, match=r"nothing.yaml: cannot read the data file"):
        load_data_file(tmp_path / "nothing.yaml")


def _uint8_tile(path: Path, values: np.ndarray) -> None:
    """An uncalibrated 8-bit single-band tile without georeferencing."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=values.shape[1], height=values.shape[0],
                           count=1, dtype="uint8") as dst:
            dst.write(values.astype(np.uint8)[None])


def _plain_label(path: Path, values: np.ndarray) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        write_label(path, values, crs=None, transform=rasterio.Affine.identity())


@pytest.fixture()
def three_sources(tmp_path):
    """Source a: 2 dB GeoTIFFs with 0/1 labels; b: 1 dB GeoTIFF whose water is label value 7 and
    whose value 9 is ignored; c: 3 uint8 tiles with one pooled calibration, the last one all
    nodata (0). Returns (data file, truths of a and b, tile values of c)."""
    for name in "abc":
        (tmp_path / name).mkdir()
    truth_a = [write_scene(tmp_path / "a" / f"s{i}_img.tif", size=32, seed=i, water_box=(4, 20 + 4 * i, 2, 30))
               for i in range(2)]
    for i, t in enumerate(truth_a):
        write_label(tmp_path / "a" / f"s{i}_lab.tif", t)
    truth_b = write_scene(tmp_path / "b" / "x_img.tif", size=32, water_box=(10, 30, 0, 16))
    lab_b = np.where(truth_b == 1, 7, 0)
    lab_b[:2] = 9
    write_label(tmp_path / "b" / "x_lab.tif", lab_b)
    rng = np.random.default_rng(1)
    tiles = []
    for i in range(3):
        v = np.where(np.arange(32)[None, :] < 10 + 4 * i, 60, 150) + rng.integers(-10, 10, (32, 32))
        v = np.zeros((32, 32), int) if i == 2 else v
        tiles.append(v)
        _uint8_tile(tmp_path / "c" / f"t{i}_img.tif", v)
        _plain_label(tmp_path / "c" / f"t{i}_lab.tif", (v < 100).astype(np.uint8))
    f = _write(tmp_path, CLASSES + """sources:
  - {name: a, images: a/*_img.tif, labels: a/*_lab.tif, classes: {land: 0, water: 1}}
  - {name: b, images: b/x_img.tif, labels: b/x_lab.tif, classes: {land: 0, water: 7}, ignore: [9], weight: 3}
  - {name: c, images: c/*_img.tif, labels: c/*_lab.tif, classes: {land: 0, water: 1}, stretch: source, nodata: [0],
     pair_pattern: 't(\\d)'}
""")
    return f, truth_a, truth_b, tiles


def test_source_scenes_of_real_geotiffs(three_sources):
    f, truth_a, truth_b, tiles = three_sources
    logs: list[str] = []
    scenes = load_source_scenes(load_data_file(f), log=logs.append)
    assert [s.image.name for s in scenes] == ["s0_img.tif", "s1_img.tif", "x_img.tif", "t0_img.tif", "t1_img.tif"]
    # crop weight weight_s / n_s: the empty tile of c is skipped, so c's 2 tiles share weight 1
    assert [s.weight for s in scenes] == [0.5, 0.5, 3.0, 0.5, 0.5]
    # labels: class indices on the image grid, ignored values 255
    for s, t in zip(scenes[:2], truth_a):
        assert s.labels.dtype == np.uint8 and np.array_equal(s.labels, t)
    expected_b = truth_b.copy()
    expected_b[:2] = IGNORE_INDEX
    assert np.array_equal(scenes[2].labels, expected_b)
    for s, v in zip(scenes[3:], tiles[:2]):
        assert np.array_equal(s.labels, (v < 100).astype(np.uint8))
    # open options: c's nodata and one calibration (gain, offset dB) pooled over its tiles
    assert all(s.options == {} for s in scenes[:3])
    c0, c1 = scenes[3].options, scenes[4].options
    assert c0["nodata_values"] == (0.0,) and c0["calibration"].shape == (1, 2)
    np.testing.assert_array_equal(c0["calibration"], c1["calibration"])
    gain, offset = c0["calibration"][0]
    assert logs[:2] == ["source a: 2 image(s), weight 1, stretch scene", "source b: 1 image(s), weight 3, stretch scene"]
    assert logs[2] == (f"source c: 2 image(s), weight 1, stretch source, pooled calibration (gain, offset dB) "
                       f"{[[round(float(gain), 4), round(float(offset), 2)]]}")


def test_a_source_that_does_not_load_is_named(three_sources):
    f, *_ = three_sources
    text = f.read_text().replace("labels: b/x_lab.tif", "labels: a/*_lab.tif")
    f.write_text(text)
    with pytest.raises(InputError) as e:
        load_source_scenes(load_data_file(f))
    msg = str(e.value)
    assert msg.startswith(f"{f}: source 'b': ") and "label(s) without an image" in msg, msg
