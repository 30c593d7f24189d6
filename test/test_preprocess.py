"""Shared preprocessing against hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest

from depth_fusion_ros.preprocess import (
    NORM_MEAN,
    NORM_STD,
    percentile_bounds,
    preprocess_rgb,
    preprocess_thermal,
)


def test_percentile_bounds_match_nearest_rank():
    image = np.random.default_rng(0).integers(3000, 6000, (256, 640)).astype(np.uint16)
    low, high = percentile_bounds(image, 1.0, 99.0)
    assert (low, high) == tuple(np.percentile(image, [1, 99], method="nearest").astype(int))


def test_thermal_clip_minmax_normalise():
    raw = np.tile(np.arange(100, dtype=np.uint16) + 4000, (4, 1))  # 4000..4099 per row
    out = preprocess_thermal(raw, (4, 100))
    assert out.shape == (1, 4, 100) and out.dtype == np.float32
    low, high = percentile_bounds(raw, 1, 99)
    expected = (np.clip((raw[0].astype(np.float32) - low) / (high - low), 0, 1) - NORM_MEAN) / NORM_STD
    np.testing.assert_allclose(out[0, 0], expected, rtol=1e-6)
    assert out.min() == pytest.approx(-NORM_MEAN / NORM_STD) and out.max() == pytest.approx((1 - NORM_MEAN) / NORM_STD)


def test_thermal_flat_image_is_finite():
    out = preprocess_thermal(np.full((8, 8), 5000, np.uint16), (4, 4))
    assert np.isfinite(out).all()


def test_rgb_normalise_resize_and_grey():
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 0] = 255
    out = preprocess_rgb(rgb, (4, 4))
    assert out.shape == (3, 4, 4)
    assert out[0].min() == pytest.approx((1 - NORM_MEAN) / NORM_STD)
    assert out[1].max() == pytest.approx(-NORM_MEAN / NORM_STD)
    assert preprocess_rgb(np.zeros((5, 6), np.uint8), (5, 6)).shape == (3, 5, 6)
    with pytest.raises(TypeError):
        preprocess_rgb(np.zeros((5, 6, 3), np.float32), (5, 6))


@pytest.mark.parametrize("dtype, high", [(np.uint8, 256), (np.uint16, 65536)])
def test_percentile_bounds_exact_over_the_full_range(dtype, high):
    """Every value up to the dtype's maximum is binned on its own (no float binning error)."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, high, (97, 131)).astype(dtype)
    image[0, 0], image[0, 1] = 0, high - 1  # both ends of the range present
    for low_pct, high_pct in ((0.0, 100.0), (1.0, 99.0), (37.5, 62.5)):
        expected = np.percentile(image, [low_pct, high_pct], method="nearest").astype(int)
        assert percentile_bounds(image, low_pct, high_pct) == tuple(expected)
    single = np.full((1, 1), high - 1, dtype)
    assert percentile_bounds(single, 1.0, 99.0) == (high - 1, high - 1)
