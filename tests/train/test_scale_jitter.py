"""Pixel-size jitter (train/scale_jitter.py): crops multilooked in linear power, labels by
majority, one factor per batch drawn reproducibly, and the sizes recorded in the model."""
from __future__ import annotations

import numpy as np
import pytest

from crossearth_sar.core.scene.contracts import DB_MAPPING
from crossearth_sar.train.classes import IGNORE_INDEX
from crossearth_sar.train.datasets import collate
from crossearth_sar.train.scale_jitter import ScaleJitter, multilook_sample, parse_factors, record_pixel_sizes

LO, HI = DB_MAPPING["co"]


def _x(db):
    return np.clip((db - LO) / (HI - LO), 0, 1).astype(np.float32)


def _sample(db, target, valid=None, index=0):
    x = _x(np.asarray(db, np.float32))
    return {"x": np.stack([x, x, x]), "phys": x.copy(),
            "valid": np.ones(x.shape, bool) if valid is None else valid,
            "target": np.asarray(target, np.uint8), "index": index}


def test_multilook_averages_linear_power_not_db():
    db = np.array([[-10.0, -20.0], [-10.0, -20.0]])
    out = multilook_sample(_sample(db, [[0, 1], [0, 1]]), 2)
    expected = 10 * np.log10((0.1 + 0.01) / 2)          # -12.6 dB, not the dB mean -15
    got = LO + out["x"][0, 0, 0] * (HI - LO)
    assert out["x"].shape == (3, 1, 1) and abs(got - expected) < 0.01
    assert np.array_equal(out["phys"], out["x"][0])


def test_labels_by_majority_and_ignore_where_mostly_unlabelled_or_invalid():
    db = np.full((4, 4), -10.0)
    target = np.array([[1, 1, 0, 255], [1, 0, 255, 255], [0, 0, 1, 1], [0, 0, 1, 1]])
    valid = np.ones((4, 4), bool)
    valid[2:, 2:] = [[False, False], [False, True]]      # 3 of 4 invalid
    out = multilook_sample(_sample(db, target, valid), 2)
    assert out["target"].tolist() == [[1, IGNORE_INDEX], [0, IGNORE_INDEX]]
    assert out["valid"].tolist() == [[True, True], [True, False]]
    assert (out["x"][:, 1, 1] == 0).all()


def test_dual_pol_ratio_channel_is_recomputed_from_the_multilooked_bands():
    co, cross = np.full((2, 2), -8.0), np.array([[-14.0, -20.0], [-14.0, -20.0]])
    x = np.stack([_x(co), np.clip((cross - DB_MAPPING["cross"][0]) / 30, 0, 1),
                  np.clip((co - cross - DB_MAPPING["ratio"][0]) / 22, 0, 1)]).astype(np.float32)
    s = {"x": x, "phys": x[0].copy(), "valid": np.ones((2, 2), bool), "target": np.zeros((2, 2), np.uint8)}
    out = multilook_sample(s, 2)
    cross_db = 10 * np.log10((10 ** -1.4 + 10 ** -2.0) / 2)
    ratio = DB_MAPPING["ratio"][0] + out["x"][2, 0, 0] * 22
    assert abs(ratio - (-8.0 - cross_db)) < 0.01


def test_one_factor_per_batch_reproducible_from_the_item_indexes():
    jitter = ScaleJitter((1, 2, 4), seed=3)
    batches = [[_sample(np.full((8, 8), -10.0), np.zeros((8, 8)), index=i) for i in (k, k + 5)]
               for k in range(12)]
    factors = [jitter.factor(b) for b in batches]
    assert set(factors) == {1, 2, 4}
    assert factors == [ScaleJitter((1, 2, 4), seed=3).factor(b) for b in batches]
    b = collate(batches[factors.index(4)], jitter=jitter)
    assert tuple(b["x"].shape) == (2, 3, 2, 2) and tuple(b["target"].shape) == (2, 2, 2)


def test_parse_factors_and_recorded_pixel_sizes():
    assert parse_factors("4,1, 2") == (1, 2, 4)
    with pytest.raises(ValueError):
        parse_factors("0,2")
    config = {"input": {}}
    record_pixel_sizes(config, (1, 2, 4), 10.0)
    assert config["input"] == {"multilook": [1, 2, 4], "pixel_sizes_m": [10.0, 20.0, 40.0]}
    record_pixel_sizes(config, (1, 2), None)
    assert config["input"] == {"multilook": [1, 2]}
