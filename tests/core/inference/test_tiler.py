"""The tiler: windows, weights, and exactness of tiled vs untiled inference (pointwise model)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from rasterio.windows import Window

from crossearth_sar.core.errors import InputError
from crossearth_sar.core.inference import tiler
from crossearth_sar.core.scene import sar_io

from _helpers_segment import PointwiseModel, write_db_scene


def test_windows_cover_the_scene_and_stay_inside():
    for size, tile, overlap in [(1000, 256, 64), (257, 256, 0), (100, 256, 32), (513, 128, 127)]:
        starts = tiler.window_starts(size, tile, overlap)
        covered = np.zeros(size, bool)
        for s in starts:
            covered[s:s + tile] = True
            assert s >= 0 and (s + tile <= size or size < tile)
        assert covered.all()
        steps = np.diff(starts)
        assert (steps <= tile - overlap).all() and (steps > 0).all()


def test_blend_weights_positive_and_smooth():
    w = tiler.blend_weights(64)
    assert w.shape == (64, 64) and w.dtype == np.float32
    assert (w > 0).all() and w.max() <= 1.0
    assert np.allclose(w, w.T) and np.allclose(w, w[::-1, ::-1])
    assert w[32, 32] > 0.99 and w[0, 0] < 0.01


def test_bad_tiling_is_input_error():
    with pytest.raises(InputError):
        tiler.check_tiling(256, 256)
    with pytest.raises(InputError):
        tiler.check_tiling(8, 0)
    with pytest.raises(InputError):
        tiler.check_tiling(64, 8, batch=0)
    with pytest.raises(InputError):
        tiler.resolve_device("tpu")


def _untiled(scene, model: PointwiseModel) -> tuple[np.ndarray, np.ndarray]:
    data = scene.read_window(Window(0, 0, scene.width, scene.height))
    with torch.inference_mode():
        probs = model.predict(torch.from_numpy(data.x)[None], None, None)[0]
    conf, idx = probs.max(0)
    classes = np.where(data.valid, idx.numpy(), tiler.NODATA_CLASS).astype(np.uint8)
    return classes, np.where(data.valid, conf.numpy(), np.nan)


def _tiled(scene, model, **kw) -> tuple[np.ndarray, np.ndarray, tiler.TilingStats]:
    classes = np.full((scene.height, scene.width), 254, np.uint8)
    conf = np.full((scene.height, scene.width), -1.0, np.float32)
    rows_seen = []

    def sink(row0, c, p):
        rows_seen.append((row0, c.shape[0]))
        classes[row0:row0 + c.shape[0]] = c
        conf[row0:row0 + c.shape[0]] = p

    stats = tiler.run_tiled(scene, model.predict, 3, sink, device="cpu", **kw)
    # rows arrive once each, top to bottom
    nxt = 0
    for r0, h in rows_seen:
        assert r0 == nxt
        nxt += h
    assert nxt == scene.height
    return classes, conf, stats


@pytest.mark.parametrize("size", [(203, 157), (64, 300), (40, 33)])
def test_tiled_equals_untiled_for_a_pointwise_model(tmp_path, size):
    width, height = size
    path = write_db_scene(tmp_path / "s.tif", width, height, seed=width,
                          nodata_box=(5, 20, 3, 30))
    model = PointwiseModel(classes=3, seed=1)
    with sar_io.open_scene(path) as scene:
        ref_classes, ref_conf = _untiled(scene, model)
        assert len(np.unique(ref_classes)) >= 3  # nodata + at least two classes: a real test
        for tile, overlap, batch in [(64, 16, 1), (64, 32, 3), (48, 0, 2), (96, 40, 5)]:
            classes, conf, stats = _tiled(scene, model, tile=tile, overlap=overlap, batch=batch)
            np.testing.assert_array_equal(classes, ref_classes, err_msg=f"{tile}/{overlap}/{batch}")
            np.testing.assert_allclose(conf, ref_conf, rtol=1e-5, equal_nan=True)
            assert stats.windows_run + stats.windows_skipped == stats.windows


def test_windows_without_valid_pixels_are_skipped(tmp_path):
    path = write_db_scene(tmp_path / "s.tif", 160, 160, nodata_box=(0, 100, 0, 160))
    model = PointwiseModel(classes=3, seed=2)
    with sar_io.open_scene(path) as scene:
        classes, conf, stats = _tiled(scene, model, tile=32, overlap=0, batch=4)
    assert stats.windows == 25 and stats.windows_skipped == 15
    assert (classes[:100] == tiler.NODATA_CLASS).all() and np.isnan(conf[:100]).all()
    assert (classes[100:] != tiler.NODATA_CLASS).all()


def test_class_values_and_progress(tmp_path):
    path = write_db_scene(tmp_path / "s.tif", 70, 50)
    model = PointwiseModel(classes=3, seed=3)
    calls = []
    out = {}
    with sar_io.open_scene(path) as scene:
        tiler.run_tiled(scene, model.predict, 3, lambda r, c, p: out.setdefault(r, c),
                        tile=32, overlap=8, batch=2, class_values=[10, 20, 30],
                        progress=lambda s, d, t: calls.append((s, d, t)))
    values = np.unique(np.concatenate([c.ravel() for c in out.values()]))
    assert set(values.tolist()) <= {10, 20, 30} and len(values) >= 2
    assert calls[-1][1] == calls[-1][2] and calls[0][0] == "segment"
