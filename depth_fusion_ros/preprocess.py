"""Image preprocessing shared by the node and the training loader (one implementation, no copies).

Follows the MS2 benchmark code (Shin et al., CVPR 2023): thermal raw counts / 2^14, per-image
clip to the 1st-99th percentile and min-max scale to [0, 1]; RGB / 255; both then normalised with
mean 0.45, std 0.225 and resized to the network input size. The percentiles come from a histogram
of the integer image (exact nearest-rank values, O(N) and no float copy), which is what makes the
node's per-frame cost small; the training loader uses the very same function so the numbers match.
"""
from __future__ import annotations

import cv2
import numpy as np

THERMAL_RAW_SCALE = 2.0**14
NORM_MEAN = 0.45
NORM_STD = 0.225
THERMAL_PERCENTILES = (1.0, 99.0)
_CALCHIST_EXACT_PIXELS = 2**24


def normalisation_params() -> dict:
    """The preprocessing constants, as recorded in every model sidecar (DESIGN.md section 4)."""
    low, high = THERMAL_PERCENTILES
    return {
        "thermal": {
            "raw_scale": THERMAL_RAW_SCALE,
            "percentile_low": low,
            "percentile_high": high,
            "mean": NORM_MEAN,
            "std": NORM_STD,
            "accepts": ["mono16", "16UC1", "mono8", "8UC1"],
        },
        "rgb": {"scale": 1.0 / 255.0, "mean": NORM_MEAN, "std": NORM_STD, "channel_order": "rgb"},
    }


def percentile_bounds(image: np.ndarray, low_pct: float, high_pct: float) -> tuple[int, int]:
    """Nearest-rank percentiles of an integer image from its histogram.

    Args:
        image: [H, W] uint8 or uint16.
        low_pct, high_pct: percentiles in [0, 100].
    Returns:
        (low, high) pixel values, low <= high.
    """
    if image.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"percentile_bounds needs a uint8/uint16 image, got {image.dtype}")
    if image.size == 0:
        raise ValueError("percentile_bounds got an empty image")
    if image.size < _CALCHIST_EXACT_PIXELS:
        # cv2.calcHist over [0, max + 1) with unit bins counts exactly (float32 counts are exact
        # below 2^24) and, unlike np.bincount, does not first copy the image to int64.
        bins = int(image.max()) + 1
        hist = cv2.calcHist([image], [0], None, [bins], [0, bins]).ravel().astype(np.int64)
    else:
        hist = np.bincount(image.ravel(), minlength=256)
    cdf = np.cumsum(hist)
    n = int(cdf[-1])
    ranks = np.round(np.array([low_pct, high_pct]) / 100.0 * (n - 1)).astype(np.int64)
    low, high = np.searchsorted(cdf, ranks + 1)  # first value whose cumulative count covers rank
    return int(low), int(high)


def _resize(image: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    height, width = out_hw
    if image.shape[:2] == (height, width):
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def preprocess_thermal(raw: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Thermal counts to a normalised network input.

    Args:
        raw: [H, W] uint16 raw counts (MS2: about 3000-6000) or uint8 (mono8 cameras).
        out_hw: network input (height, width).
    Returns:
        [1, out_h, out_w] float32, percentile-clipped, min-max scaled, mean/std normalised.
    """
    if raw.ndim != 2:
        raise ValueError(f"thermal image must be [H, W], got shape {raw.shape}")
    # Dividing by 2^14 before a min-max scale cancels out, so clip in the raw integer domain.
    low, high = percentile_bounds(raw, *THERMAL_PERCENTILES)
    resized = _resize(raw, out_hw)  # still integer: linear resize of counts, rounded
    # (clip((x - low) / span, 0, 1) - mean) / std in float32, step by step in place on one
    # float copy: half the time of a per-frame lookup table, and the same float32 operations.
    out = resized.astype(np.float32)  # [H, W]
    out -= low
    out /= np.float32(max(high - low, 1))
    np.clip(out, 0.0, 1.0, out=out)
    out -= np.float32(NORM_MEAN)
    out /= np.float32(NORM_STD)
    return out[None]  # [1, H, W]


_RGB_LUT = ((np.arange(256, dtype=np.float32) / 255.0 - NORM_MEAN) / NORM_STD).astype(np.float32)
_RGB_LUT_CV = _RGB_LUT.reshape(256, 1)  # cv2.LUT's layout: 256 rows, one channel


def preprocess_rgb(rgb: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """RGB (or grey) 8-bit image to a normalised network input.

    Args:
        rgb: [H, W, 3] uint8 in RGB channel order, or [H, W] uint8 grey (repeated to 3 channels).
        out_hw: network input (height, width); the aspect ratio is not kept (DESIGN.md section 2).
    Returns:
        [3, out_h, out_w] float32.
    """
    return normalise_rgb(resize_rgb(rgb, out_hw))


def resize_rgb(rgb: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """preprocess_rgb's first half: the 8-bit image the network sees, [out_h, out_w, 3] uint8 RGB
    (bilinear, pixel centres aligned; grey repeated to 3 channels). The node colours its RGB
    cloud with it, so the resize is done once per frame."""
    if rgb.dtype != np.uint8:
        raise TypeError(f"RGB image must be uint8, got {rgb.dtype}")
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"RGB image must be [H, W, 3] or [H, W], got shape {rgb.shape}")
    return _resize(rgb, out_hw)


def normalise_rgb(resized: np.ndarray) -> np.ndarray:
    """preprocess_rgb's second half: [h, w, 3] uint8 -> [3, h, w] float32 normalised."""
    out = np.empty((3, *resized.shape[:2]), np.float32)  # [3, H, W]
    # Split the planes, then a SIMD table look-up per plane written straight into the output.
    for channel, plane in enumerate(cv2.split(resized)):
        cv2.LUT(plane, _RGB_LUT_CV, dst=out[channel])
    return out


MODALITY_CHANNELS = {"thermal": 1, "rgb": 3}


def missing_input(modality: str, out_hw: tuple[int, int]) -> np.ndarray:
    """The network input standing in for a camera that is missing: [C, H, W] float32 zeros.

    Zero is the normalisation mean (0.45 before normalising), an image with no content. Training
    with modality dropout and the node's single-camera (degraded) mode both use this one
    definition, so the network sees at run time exactly what it was trained with.
    """
    if modality not in MODALITY_CHANNELS:
        raise ValueError(f"modality must be one of {tuple(MODALITY_CHANNELS)}, got {modality!r}")
    return np.zeros((MODALITY_CHANNELS[modality], *out_hw), np.float32)
