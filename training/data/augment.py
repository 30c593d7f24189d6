"""Training augmentations on raw MS2 samples (before the shared preprocessing).

All geometric operations are applied to both modalities and both ground-truth maps together, so
the fused views stay consistent: a horizontal flip flips everything; a scale-and-crop cuts the
same relative window out of each camera's image and its own GT. The crop is later resized to the
network size, a zoom by `scale` under fixed intrinsics, so GT depth is divided by `scale` (Eigen et
al., NIPS 2014: objects s times larger look s times nearer); GT is resized with nearest neighbour.
Photometric jitter is per modality: colour jitter (and optional sensor noise) on the RGB bytes,
gain/offset/gamma jitter on the thermal counts. A pure gain/offset alone would be undone by
the per-image percentile min-max of `preprocess_thermal`, so a mild gamma makes it count.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Training augmentation settings (all ranges symmetric around the identity)."""

    flip_p: float = 0.5                # horizontal flip probability
    crop_p: float = 0.5                # probability of a scale-and-crop
    max_scale: float = 1.2             # crop window = image / U(1, max_scale)
    brightness: float = 0.2            # RGB: factor in 1 +- brightness
    contrast: float = 0.2              # RGB: factor in 1 +- contrast around the image mean
    saturation: float = 0.2            # RGB: factor in 1 +- saturation around the grey value
    thermal_gain: float = 0.05         # thermal counts * (1 +- gain)
    thermal_offset_counts: float = 150.0  # thermal counts + U(-offset, offset)
    thermal_gamma: float = 0.15        # thermal contrast curve exponent in 1 +- gamma
    # RGB: Gaussian sensor noise, independent per pixel and channel, with a standard deviation
    # drawn per sample from U(0, rgb_noise_std) in 8-bit levels (0 = off, the default). Fresh
    # noise every epoch keeps a network from memorising a recorded frame's fixed noise pattern.
    rgb_noise_std: float = 0.0

    def __post_init__(self):
        if self.max_scale < 1.0:
            raise ValueError(f"AugmentConfig.max_scale must be >= 1, got {self.max_scale}")
        for name in ("flip_p", "crop_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AugmentConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.rgb_noise_std < 256.0:
            raise ValueError(f"AugmentConfig.rgb_noise_std must be in [0, 256) 8-bit levels, got "
                             f"{self.rgb_noise_std}")


def hflip(sample: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Flip thermal [H,W], rgb [H,W,3], gt_thermal [H,W], gt_rgb [H,W] left-right, together."""
    return {k: np.ascontiguousarray(v[:, ::-1]) for k, v in sample.items()}


def crop_window(shape: tuple[int, int], scale: float, fy: float, fx: float) -> tuple[slice, slice]:
    """Window of size shape/scale at relative position (fy, fx) in [0, 1]^2."""
    height, width = shape
    ch, cw = max(1, round(height / scale)), max(1, round(width / scale))
    top, left = round(fy * (height - ch)), round(fx * (width - cw))
    return slice(top, top + ch), slice(left, left + cw)


def scale_crop(sample: dict[str, np.ndarray], scale: float, fy: float,
               fx: float) -> dict[str, np.ndarray]:
    """The same relative window from each camera's image and its GT, GT depth divided by `scale`."""
    out = {}
    for image_key, gt_key in (("thermal", "gt_thermal"), ("rgb", "gt_rgb")):
        win = crop_window(sample[image_key].shape[:2], scale, fy, fx)
        gt_win = crop_window(sample[gt_key].shape[:2], scale, fy, fx)
        out[image_key] = np.ascontiguousarray(sample[image_key][win])
        out[gt_key] = sample[gt_key][gt_win] / np.float32(scale)  # 0 (no return) stays 0
    return out


def jitter_rgb(rgb: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and saturation jitter on [H, W, 3] uint8 (torchvision-style)."""
    image = rgb.astype(np.float32)
    image *= rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)
    mean = image.mean()
    image = (image - mean) * rng.uniform(1 - cfg.contrast, 1 + cfg.contrast) + mean
    grey = image @ np.array([0.299, 0.587, 0.114], np.float32)
    image = (image - grey[..., None]) * rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)
    image += grey[..., None]
    if cfg.rgb_noise_std > 0.0:  # no draw when off: older runs' augmentation streams unchanged
        sigma = np.float32(rng.uniform(0.0, cfg.rgb_noise_std))
        image += rng.standard_normal(image.shape, dtype=np.float32) * sigma
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def jitter_thermal(counts: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Gain, offset and a gamma curve on [H, W] uint16 raw counts (keeps the dtype)."""
    image = counts.astype(np.float32)
    low, high = float(image.min()), float(image.max())
    if high > low:  # gamma on the image's own range, mapped back to counts
        unit = (image - low) / (high - low)
        gamma = rng.uniform(1 - cfg.thermal_gamma, 1 + cfg.thermal_gamma)
        image = low + unit ** np.float32(gamma) * (high - low)
    image = image * rng.uniform(1 - cfg.thermal_gain, 1 + cfg.thermal_gain)
    image += rng.uniform(-cfg.thermal_offset_counts, cfg.thermal_offset_counts)
    return np.clip(image + 0.5, 0, 65535).astype(counts.dtype)


def augment(sample: dict[str, np.ndarray], cfg: AugmentConfig,
            rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Apply the training augmentations to a raw sample (keys thermal, rgb, gt_thermal, gt_rgb)."""
    if rng.random() < cfg.flip_p:
        sample = hflip(sample)
    if cfg.max_scale > 1.0 and rng.random() < cfg.crop_p:
        scale = rng.uniform(1.0, cfg.max_scale)
        sample = scale_crop(sample, scale, rng.random(), rng.random())
    sample = dict(sample)
    sample["rgb"] = jitter_rgb(sample["rgb"], cfg, rng)
    sample["thermal"] = jitter_thermal(sample["thermal"], cfg, rng)
    return sample
