"""Boundary F-score (train/boundary_metrics.py) on maps whose edges are known by hand: a
perfect map, an edge shifted within and beyond the tolerance, invalid pixels, pooling."""
from __future__ import annotations

import numpy as np

from crossearth_sar.train.boundary_metrics import boundary_counts, boundary_f, boundary_pixels


def _half(h=20, w=20, col=10):
    m = np.zeros((h, w), np.int64)
    m[:, col:] = 1
    return m


def test_boundary_pixels_are_the_two_sides_of_an_edge():
    b = boundary_pixels(_half(), np.ones((20, 20), bool))
    assert b[:, 9].all() and b[:, 10].all() and b.sum() == 40


def test_boundaries_stop_at_invalid_pixels():
    valid = np.ones((20, 20), bool)
    valid[:, 10] = False        # the edge runs along nodata: no valid neighbour of another class
    assert not boundary_pixels(_half(), valid).any()


def test_perfect_map_scores_one_and_shift_within_tolerance_too():
    ok = np.ones((20, 20), bool)
    f = boundary_f(boundary_counts(_half(), _half(), ok))
    assert f["f_score"] == 1.0 and f["precision"] == 1.0 and f["recall"] == 1.0
    assert boundary_f(boundary_counts(_half(col=12), _half(), ok, 2.0))["f_score"] == 1.0


def test_shift_beyond_tolerance_scores_zero_and_partial_matches_in_between():
    ok = np.ones((20, 20), bool)
    assert boundary_f(boundary_counts(_half(col=14), _half(), ok, 2.0))["f_score"] == 0.0
    # shifted by 3 columns with a 2 px tolerance: of each side's two boundary columns, the
    # inner one lies 2 px from the other map's nearest boundary column, the outer one 3 or 4
    counts = boundary_counts(_half(col=13), _half(), ok, 2.0)
    assert counts.tolist() == [20, 40, 20, 40]
    assert boundary_f(counts)["f_score"] == 0.5


def test_no_edges_is_undefined_and_edges_on_one_side_score_zero():
    ok = np.ones((8, 8), bool)
    flat = np.zeros((8, 8), np.int64)
    assert boundary_f(boundary_counts(flat, flat, ok))["f_score"] is None
    assert boundary_f(boundary_counts(_half(8, 8, 4), flat, ok))["f_score"] == 0.0


def test_counts_pool_over_images():
    ok = np.ones((20, 20), bool)
    pooled = boundary_counts(_half(), _half(), ok) + boundary_counts(_half(col=14), _half(), ok)
    assert boundary_f(pooled)["f_score"] == 0.5
