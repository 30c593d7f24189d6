"""Degraded-mode state machine and the image usability statistics (no DDS)."""
from __future__ import annotations

import numpy as np
import pytest

from depth_fusion_ros.degraded import ModeTracker, image_usability, sampled_usability


def test_modes_follow_the_cameras():
    t = ModeTracker(stale_timeout_s=1.0)
    assert t.mode(0.0) == ("none", "no thermal image received yet; no rgb image received yet")
    t.record("thermal", 0.0)
    assert t.mode(0.1) == ("thermal_only", "no rgb image received yet")
    t.record("rgb", 0.2)
    assert t.mode(0.3) == ("fused", "")
    t.record("thermal", 1.0)
    mode, reason = t.mode(1.5)  # rgb last at 0.2: silent 1.3 s > 1.0
    assert mode == "thermal_only" and reason == "rgb silent for 1.3 s"
    t.record("rgb", 1.6)  # the camera comes back: fused on its next image
    assert t.mode(1.7) == ("fused", "")
    assert t.mode(5.0)[0] == "none"
    t.record("rgb", 5.1)
    assert t.mode(5.2) == ("rgb_only", "thermal silent for 4.2 s")
    assert t.changes == 6  # none -> thermal_only -> fused -> thermal_only -> fused -> none -> rgb_only


def test_unusable_images_count_as_missing_until_usable_again():
    t = ModeTracker(stale_timeout_s=1.0)
    t.record("thermal", 0.0)
    t.record("rgb", 0.0)
    t.record("rgb", 0.5, unusable_reason="rgb image is black (mean 0.3 of 255 < 4)")
    t.record("thermal", 1.2)
    t.record("rgb", 1.2, unusable_reason="rgb image is black (mean 0.3 of 255 < 4)")
    assert t.mode(1.3) == ("thermal_only", "rgb image is black (mean 0.3 of 255 < 4)")
    t.record("rgb", 1.4)
    assert t.mode(1.4) == ("fused", "")


def test_image_usability_statistics():
    rng = np.random.default_rng(0)
    night = rng.integers(0, 40, (384, 1224, 3), dtype=np.uint8)  # dark but not black
    assert image_usability("rgb", night) is None
    assert "black" in image_usability("rgb", np.zeros((8, 8, 3), np.uint8))
    blinded = np.full((10, 10, 3), 255, np.uint8)
    blinded[0, 0] = 10
    assert "saturated (99% of pixels" in image_usability("rgb", blinded)
    assert image_usability("rgb", np.full((4, 4), 128, np.uint8)) is None  # mono accepted
    counts = rng.integers(3000, 6000, (256, 640), dtype=np.uint16)
    assert image_usability("thermal", counts) is None
    assert "flat" in image_usability("thermal", np.full((256, 640), 4200, np.uint16))
    assert "flat" in image_usability("thermal", np.full((8, 8), 9, np.uint8))
    assert image_usability("thermal", rng.integers(0, 255, (8, 8), dtype=np.uint8)) is None


def _usability_cases():
    rng = np.random.default_rng(1)
    lively = rng.integers(0, 256, (384, 1224, 3), dtype=np.uint8)
    half_covered = lively.copy()
    half_covered[:192] = 0  # a lens half covered: still usable, on all rows and on the sample
    nearly_black = rng.integers(0, 3, (384, 1224, 3), dtype=np.uint8)
    nearly_black[180:220, 600:640] = 255  # a headlight in a covered lens' frame: still black
    blinded = np.full((384, 1224, 3), 255, np.uint8)
    blinded[300:] = 40  # 22 % of the rows not saturated: usable
    counts = rng.integers(3000, 6000, (256, 640), dtype=np.uint16)
    flat = np.full((256, 640), 4200, np.uint16)
    warm_spot = flat.copy()
    warm_spot[100:160, 200:400] = 5200  # 7 % of the pixels: the 99th percentile sees it
    return [("rgb", lively), ("rgb", half_covered), ("rgb", lively // 80), ("rgb", nearly_black),
            ("rgb", np.full((384, 1224, 3), 255, np.uint8)), ("rgb", blinded),
            ("rgb", lively[:30, :40, 0]), ("thermal", counts), ("thermal", flat),
            ("thermal", warm_spot), ("thermal", (counts // 32).astype(np.uint8)),
            ("thermal", np.full((20, 16), 9, np.uint8))]


def test_sampled_usability_decides_as_the_whole_image():
    verdicts = []
    for view, pixels in _usability_cases():
        whole = image_usability(view, pixels)
        verdicts.append(whole is None)
        sampled = sampled_usability(view, pixels)
        assert (sampled is None) == (whole is None), (view, pixels.shape, whole, sampled)
        if whole is not None:  # the same rule gives the reason
            assert sampled.split(" (")[0] == whole.split(" (")[0]
    assert 0 < sum(verdicts) < len(verdicts)  # the cases hold usable and unusable images


@pytest.mark.parametrize("timeout", [0.5, 2.0])
def test_stale_timeout_is_the_boundary(timeout):
    t = ModeTracker(stale_timeout_s=timeout)
    t.record("thermal", 0.0)
    t.record("rgb", 0.0)
    assert t.mode(timeout)[0] == "fused"
    assert t.mode(timeout + 1e-6)[0] == "none"
