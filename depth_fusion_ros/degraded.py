"""Which cameras the node runs on: `fused`, `thermal_only` or `rgb_only` (a pure state machine).

A camera counts as present while its last *usable* image is younger than `stale_timeout_s`.
Both present: fused. One present: that camera alone (the node feeds the network the other
input as `preprocess.missing_input`, as modality-dropout training did, and publishes only the
surviving view). None present: `none` (nothing to publish). The mode follows the cameras by
itself: a camera that sends usable images again is present again on its next image.

"Usable" is optional (`image_usability`, parameter `check_image_usable`): an image can arrive
on time and still carry nothing, e.g. a covered lens or a camera blinded by oncoming headlights.
The documented statistics (on the raw image, before any normalisation):
- RGB: unusable if its mean brightness is below DARK_MEAN (a black frame) or more than
  SATURATED_FRACTION of its pixels are at the sensor's maximum (blinded).
- Thermal: unusable if its 1st-99th percentile span is below FLAT_SPAN_COUNTS (16-bit) or
  FLAT_SPAN_8BIT (8-bit): a flat frame (lens cap, frozen shutter, failed sensor).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from depth_fusion_ros.preprocess import percentile_bounds

MODES = ("fused", "thermal_only", "rgb_only", "none")
DARK_MEAN = 4.0  # of 255: darker than any lit night street frame of MS2 or the generator
SATURATED_FRACTION = 0.9
FLAT_SPAN_COUNTS = 20  # raw 14-bit-ish counts; MS2 frames span ~500-3000
FLAT_SPAN_8BIT = 3


def image_usability(view: str, pixels: np.ndarray) -> str | None:
    """Why an image cannot help the network (the module docstring's rules), or None if usable.

    Args:
        view: "thermal" ([H, W] uint16 or uint8) or "rgb" ([H, W, 3] or [H, W] uint8).
    """
    if view == "rgb":
        mean = float(pixels.mean())
        if mean < DARK_MEAN:
            return f"rgb image is black (mean {mean:.1f} of 255 < {DARK_MEAN:g})"
        saturated = float(np.mean(pixels >= 255)) if pixels.ndim == 2 else float(
            np.mean(np.all(pixels >= 255, axis=-1)))
        if saturated > SATURATED_FRACTION:
            return f"rgb image is saturated ({saturated:.0%} of pixels at 255)"
        return None
    low, high = percentile_bounds(pixels, 1.0, 99.0)
    floor = FLAT_SPAN_8BIT if pixels.dtype == np.uint8 else FLAT_SPAN_COUNTS
    if high - low < floor:
        return f"thermal image is flat (1-99 % span {high - low} < {floor})"
    return None


@dataclass
class CameraState:
    last_usable_s: float | None = None
    last_seen_s: float | None = None
    unusable_reason: str | None = None


@dataclass
class ModeTracker:
    """Decides the mode from per-camera arrival times and usability (times in seconds, any clock
    that only moves forward, e.g. time.monotonic)."""

    stale_timeout_s: float
    cameras: dict[str, CameraState] = field(
        default_factory=lambda: {"thermal": CameraState(), "rgb": CameraState()})
    changes: int = 0
    _last: tuple[str, str] | None = None

    def record(self, view: str, now_s: float, unusable_reason: str | None = None) -> None:
        """A camera's image arrived; `unusable_reason` (from `image_usability`) if it carries
        nothing."""
        cam = self.cameras[view]
        cam.last_seen_s = now_s
        cam.unusable_reason = unusable_reason
        if unusable_reason is None:
            cam.last_usable_s = now_s

    def present(self, view: str, now_s: float) -> bool:
        cam = self.cameras[view]
        return cam.last_usable_s is not None and now_s - cam.last_usable_s <= self.stale_timeout_s

    def _why_missing(self, view: str, now_s: float) -> str:
        cam = self.cameras[view]
        if cam.last_seen_s is None:
            return f"no {view} image received yet"
        if cam.unusable_reason is not None and now_s - cam.last_seen_s <= self.stale_timeout_s:
            return cam.unusable_reason
        return f"{view} silent for {now_s - (cam.last_usable_s or cam.last_seen_s):.1f} s"

    def mode(self, now_s: float) -> tuple[str, str]:
        """(mode, reason): reason is "" in fused mode, else why a camera is missing."""
        thermal, rgb = self.present("thermal", now_s), self.present("rgb", now_s)
        if thermal and rgb:
            result = ("fused", "")
        elif thermal:
            result = ("thermal_only", self._why_missing("rgb", now_s))
        elif rgb:
            result = ("rgb_only", self._why_missing("thermal", now_s))
        else:
            result = ("none", "; ".join(self._why_missing(v, now_s) for v in ("thermal", "rgb")))
        if self._last is not None and result[0] != self._last[0]:
            self.changes += 1
        self._last = result
        return result
