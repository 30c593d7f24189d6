"""Depth metrics against values computed by hand from the MS2 reference formulas.

The reference (SupDepth4Thermal `compute_depth_errors`) per image: valid = 1e-3 < gt < 80; with
alignment pred *= median(gt) / median(pred) (torch.median: lower middle value); pred clamped to
[1e-3, 80]; then abs_diff, abs_rel, sq_rel, log10, rmse, rmse_log, a1..a3 over the valid pixels.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from depth_fusion_ros.metrics import (
    METRIC_NAMES,
    MetricAccumulator,
    compute_depth_metrics,
    format_metrics_table,
    lower_median,
)


def test_hand_computed_two_pixels():
    gt = np.array([[2.0, 4.0], [0.0, 100.0]])  # 0 and 100 m are outside the evaluation range
    pred = np.array([[1.0, 5.0], [7.0, 7.0]], np.float32)
    m = compute_depth_metrics(pred, gt)
    assert m["valid_px"] == 2 and m["coverage"] == 1.0 and m["scale"] == 1.0
    assert m["abs_rel"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert m["sq_rel"] == pytest.approx((1 / 2 + 1 / 4) / 2)
    assert m["rmse"] == pytest.approx(1.0)
    assert m["rmse_log"] == pytest.approx(math.sqrt((math.log(0.5) ** 2 + math.log(1.25) ** 2) / 2))
    assert m["abs_diff"] == pytest.approx(1.0)
    assert m["log10"] == pytest.approx((abs(math.log10(0.5)) + math.log10(1.25)) / 2)
    # ratios 2.0 (> 1.25^3) and 1.25 (not < 1.25, but < 1.25^2)
    assert (m["d1"], m["d2"], m["d3"]) == (0.0, 0.5, 0.5)


def test_single_pixel():
    m = compute_depth_metrics(np.array([[3.0]]), np.array([[2.0]]))
    assert m["valid_px"] == 1
    assert m["abs_rel"] == pytest.approx(0.5) and m["sq_rel"] == pytest.approx(0.5)
    assert m["rmse"] == pytest.approx(1.0) and m["abs_diff"] == pytest.approx(1.0)
    assert m["rmse_log"] == pytest.approx(math.log(1.5))
    assert m["log10"] == pytest.approx(math.log10(1.5))
    assert (m["d1"], m["d2"], m["d3"]) == (0.0, 1.0, 1.0)  # 1.5 > 1.25 but < 1.5625
    # median scaling of a single pixel makes it exact
    s = compute_depth_metrics(np.array([[3.0]]), np.array([[2.0]]), median_scaling=True)
    assert s["scale"] == pytest.approx(2 / 3) and s["abs_rel"] == pytest.approx(0.0, abs=1e-12)


def test_all_invalid_gt_gives_none_and_counts_as_skipped():
    pred = np.full((2, 3), 5.0, np.float32)
    for gt in (np.zeros((2, 3)), np.full((2, 3), np.nan), np.full((2, 3), 80.0),
               np.full((2, 3), 1e-3)):  # the range is open at both ends
        assert compute_depth_metrics(pred, gt) is None
    acc = MetricAccumulator()
    acc.add(None)
    assert acc.count == 0 and acc.skipped == 1
    assert all(math.isnan(v) for v in acc.mean().values())


def test_invalid_prediction_is_scored_not_skipped():
    """Half the prediction NaN and the rest exact: the NaN half scores as a 1e-3 m prediction."""
    gt = np.array([[10.0, 20.0, 40.0, 5.0]])
    pred = np.array([[10.0, 20.0, np.nan, np.nan]], np.float32)
    m = compute_depth_metrics(pred, gt)
    assert m["coverage"] == 0.5 and m["valid_px"] == 4
    expected = ((40 - 1e-3) / 40 + (5 - 1e-3) / 5) / 4
    assert m["abs_rel"] == pytest.approx(expected)
    assert m["d1"] == 0.5 and m["d3"] == 0.5
    assert m["rmse"] == pytest.approx(math.sqrt(((40 - 1e-3) ** 2 + (5 - 1e-3) ** 2) / 4))
    # +inf is "beyond the range" and clamps to 80 m; -inf is a missing value
    inf = compute_depth_metrics(np.array([[np.inf, -np.inf]]), np.array([[40.0, 40.0]]))
    assert inf["abs_rel"] == pytest.approx((40 / 40 + (40 - 1e-3) / 40) / 2)
    assert inf["coverage"] == 0.0


def test_prediction_clamped_to_range():
    gt = np.array([[1.0, 50.0]])
    pred = np.array([[0.0, 500.0]], np.float32)  # clamp: 1e-3 and 80
    m = compute_depth_metrics(pred, gt)
    assert m["abs_rel"] == pytest.approx(((1 - 1e-3) / 1 + 30 / 50) / 2)
    assert m["coverage"] == 0.5  # a 0 prediction is "no depth"


def test_lower_median_even_count():
    assert lower_median(np.array([4.0, 1.0, 3.0, 2.0])) == 2.0  # numpy's median would be 2.5
    assert lower_median(np.array([5.0])) == 5.0
    assert lower_median(np.array([3.0, 1.0, 2.0])) == 2.0
    gt = np.array([[1.0, 2.0, 3.0, 4.0]])
    pred = np.array([[1.0, 1.0, 1.0, 10.0]], np.float32)
    m = compute_depth_metrics(pred, gt, median_scaling=True)
    assert m["scale"] == pytest.approx(2.0)  # lower medians 2 / 1 (averaging: 2.5 / 1)
    scaled = np.array([2.0, 2.0, 2.0, 20.0])
    assert m["abs_rel"] == pytest.approx(np.mean(np.abs(scaled - gt[0]) / gt[0]))


def test_median_at_zero_keeps_prediction_unscaled():
    gt = np.array([[2.0, 4.0, 8.0]])
    for pred in (np.zeros((1, 3), np.float32), np.array([[0.0, 0.0, 3.0]], np.float32),
                 np.array([[np.nan, np.nan, 3.0]], np.float32)):
        m = compute_depth_metrics(pred, gt, median_scaling=True)
        assert m["scale"] == 1.0
        clamped = np.clip(np.nan_to_num(pred[0], nan=0.0), 1e-3, 80.0)
        assert m["abs_rel"] == pytest.approx(np.mean(np.abs(clamped - gt[0]) / gt[0]))
        assert all(math.isfinite(m[name]) for name in METRIC_NAMES)


def test_median_scaling_exact_up_to_scale():
    gt = np.array([[2.0, 4.0, 8.0]])
    pred = gt.astype(np.float32) / 3.0
    m = compute_depth_metrics(pred, gt, median_scaling=True)
    assert m["scale"] == pytest.approx(3.0)
    assert m["abs_rel"] == pytest.approx(0.0, abs=1e-6) and m["d1"] == 1.0


def test_prediction_upsampled_to_gt_size():
    gt = np.full((4, 8), 10.0)
    pred = np.full((2, 4), 11.0, np.float32)
    m = compute_depth_metrics(pred, gt)
    assert m["valid_px"] == 32 and m["abs_rel"] == pytest.approx(0.1, rel=1e-6)


def test_accumulator_means_over_images_with_coverage():
    acc = MetricAccumulator()
    acc.add(compute_depth_metrics(np.array([[1.0]]), np.array([[2.0]])))
    acc.add(compute_depth_metrics(np.array([[2.0, np.nan]]), np.array([[2.0, 2.0]])))
    acc.add(None)
    assert acc.count == 2 and acc.skipped == 1
    mean = acc.mean()
    assert mean["abs_rel"] == pytest.approx((0.5 + (0.0 + (2 - 1e-3) / 2) / 2) / 2)
    assert mean["coverage"] == pytest.approx(0.75)
    table = format_metrics_table({"a": mean})
    assert "coverage" in table.splitlines()[0] and "| a | " in table
