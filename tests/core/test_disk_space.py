"""core/disk_space.py: free space where a path would be written, the needs of a run summed per
file system (kept files all, temporaries scene by scene), and the pre-flight refusal in the
one-line form of core/write_failures.py. Also the estimates built on it: segmentation outputs
(core/products/outputs.py) and training checkpoints (train/checkpoint_commit.py)."""
from __future__ import annotations

import errno
import shutil

import pytest

from crossearth_sar.core import disk_space
from crossearth_sar.core.disk_space import (
    MB,
    check_space,
    device_totals,
    existing_folder,
    free_bytes,
    megabytes_free,
    megabytes_needed,
    need,
)
from crossearth_sar.core.products.outputs import output_needs
from crossearth_sar.core.write_failures import WriteFailure


def test_a_missing_output_is_measured_in_its_nearest_existing_folder(tmp_path):
    assert existing_folder(tmp_path / "a" / "b" / "o.gpkg") == tmp_path
    assert existing_folder(tmp_path) == tmp_path
    assert free_bytes(tmp_path / "not" / "yet.tif") == shutil.disk_usage(tmp_path).free


def test_megabytes_round_the_safe_way():
    assert megabytes_needed(1) == 1 and megabytes_needed(MB) == 1 and megabytes_needed(MB + 1) == 2
    assert megabytes_free(MB - 1) == 0 and megabytes_free(3 * MB + 5) == 3


def test_kept_files_add_up_and_temporaries_count_per_scene(tmp_path):
    needs = [need(tmp_path / "a.gpkg", 10), need(tmp_path / "b.gpkg", 20),
             need(tmp_path / "a.gpkg", 100, kept=False, job=0),
             need(tmp_path / "b.gpkg", 300, kept=False, job=1),
             need(tmp_path / "b.gpkg", 5, kept=False, job=1)]
    ((path, folder, total),) = device_totals(needs).values()
    assert total == 10 + 20 + 305 and path == tmp_path / "a.gpkg" and folder == tmp_path


def test_a_disk_clearly_too_small_is_refused_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(disk_space, "free_bytes", lambda path: 12 * MB)
    monkeypatch.setattr("crossearth_sar.core.write_failures.free_bytes", lambda path: 12 * MB)
    check_space([need(tmp_path / "o.gpkg", 12 * MB)])   # fits exactly
    with pytest.raises(WriteFailure) as e:
        check_space([need(tmp_path / "o.gpkg", 100), need(tmp_path / "o.tif", 240 * MB)])
    assert e.value.error_number == errno.ENOSPC
    assert str(e.value) == (f"no space left on device writing {tmp_path / 'o.gpkg'} "
                            f"(about 241 MB needed, 12 MB free)")


def test_segmentation_needs_grow_with_the_outputs_asked_for(tmp_path):
    def total(**outputs):
        needs = output_needs((1000, 800, 0.5), tmp_path / "o.gpkg", **outputs)
        return sum(n.bytes for n in needs)
    alone = total()
    assert alone >= 2.0 * 1000 * 800 * 0.5            # the temporary confidence raster
    with_confidence = total(confidence=tmp_path / "c.tif")
    assert with_confidence > alone + 2.0 * 1000 * 800 * 0.5
    assert total(preview=tmp_path / "p.png") > alone
    assert total(raster=tmp_path / "r.tif") > alone


def test_a_checkpoint_needs_the_model_and_the_optimizer_moments():
    import torch

    from crossearth_sar.train.checkpoint_commit import checkpoint_bytes, tensor_bytes

    model = torch.nn.Sequential(torch.nn.Linear(10, 10), torch.nn.Linear(10, 2))
    for p in model[0].parameters():
        p.requires_grad_(False)
    weights = (110 + 22) * 4
    assert checkpoint_bytes(model) == weights + 2 * 22 * 4
    state = {"optimizer": {"state": {0: {"exp_avg": torch.zeros(5), "step": torch.tensor(1.0)}}},
             "rng": [torch.zeros(3, dtype=torch.uint8)], "iteration": 4}
    assert tensor_bytes(state) == 5 * 4 + 4 + 3
    assert checkpoint_bytes(model, state) == weights + 27
