"""Progress inside a window: a scene of a few windows counts transformer-block steps, a
larger one counts windows (core/inference/window_steps.py), through the real pipeline and
the real tiny model."""
from __future__ import annotations

from crossearth_sar.core.inference import pipeline
from crossearth_sar.core.inference.window_steps import SMALL_SCENE_WINDOWS, window_steps
from crossearth_sar.core.models import checkpoints

from _helpers_segment import write_db_scene


def _segment_events(scene, model, tmp_path, tile: int) -> list[tuple[int, int]]:
    events: list[tuple[str, int, int]] = []
    pipeline.segment_scene(scene, model, tmp_path / f"out{tile}.gpkg", tile=tile, overlap=0,
                           batch=2, device="cpu", progress=lambda *e: events.append(e))
    return [(done, total) for stage, done, total in events if stage == "segment"]


def test_one_window_moves_block_by_block_and_many_windows_count_windows(tiny_model, tmp_path):
    model = checkpoints.load(tiny_model).eval()
    blocks = len(model.backbone.blocks)
    scene = write_db_scene(tmp_path / "scene.tif", 128, 128)

    one = _segment_events(scene, model, tmp_path, tile=128)            # 1 window
    assert {total for _, total in one} == {blocks}
    assert [done for done, _ in one] == sorted(done for done, _ in one)
    assert len({done for done, _ in one}) == blocks + 1 and one[-1] == (blocks, blocks)

    many = _segment_events(scene, model, tmp_path, tile=32)            # 16 windows
    assert 16 > SMALL_SCENE_WINDOWS and {total for _, total in many} == {16}
    assert many[-1] == (16, 16)
    assert all(not h._forward_hooks for h in model.backbone.blocks)    # hooks removed


def test_without_transformer_blocks_the_callback_is_unchanged():
    events = []

    def record(*e):
        events.append(e)

    class NoBlocks:
        pass

    with window_steps(NoBlocks(), record) as progress:
        assert progress is record
