"""Which cameras the node runs on: `fused`, `thermal_only` or `rgb_only` (a pure state machine).

A camera counts as present while its last *usable* image is younger than `stale_timeout_s`.
Both present: fused. One present: that camera alone (the node feeds the network the other
input as `preprocess.missing_input`, as modality-dropout training did, and publishes only the
surviving view). None present: `none` (nothing to publish). The mode follows the cameras by
itself: a camera that sends usable images again is present again on its next image.
A model that reads one camera only (a thermal_only / rgb_only baseline: `needed` holds that
camera) runs in that camera's mode whenever the camera is present; the other camera is ignored.
With `restart_grace`, a usable image that ends a time with no camera present (the start, a paused
bag, every driver restarting) gives the cameras that have not sent since then (and whose last image, if any, was
usable) `stale_timeout_s` to send: cameras starting a little apart do not put the node in single-camera mode for a moment; one
that does not start is missing after the same silence a running camera is allowed.

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

import cv2
import numpy as np

from depth_fusion_ros.preprocess import percentile_bounds

MODES = ("fused", "thermal_only", "rgb_only", "none")
DARK_MEAN = 4.0  # of 255: darker than any lit night street frame of MS2 or the generator
SATURATED_FRACTION = 0.9
FLAT_SPAN_COUNTS = 20  # raw 14-bit-ish counts; MS2 frames span ~500-3000
FLAT_SPAN_8BIT = 3
# The node judges every image on arrival, on USABILITY_ROWS evenly spaced whole rows (1/16 of
# the pixels of MS2's 1224x384 RGB, ~29k): the statistics decide the same. Whole rows because a
# row is contiguous: they read 1/16 of the image's cache lines, where every 4th row and column
# (the same number of pixels) read 1/4 of them and took 2.5x longer on a frame not in the cache.
USABILITY_ROWS = 24


def image_usability(view: str, pixels: np.ndarray) -> str | None:
    """Why an image cannot help the network (the module docstring's rules), or None if usable.

    Args:
        view: "thermal" ([H, W] uint16 or uint8) or "rgb" ([H, W, 3] or [H, W] uint8).
    """
    if view == "rgb":
        mean = float(np.mean(cv2.mean(pixels)[:1 if pixels.ndim == 2 else 3]))
        if mean < DARK_MEAN:
            return f"rgb image is black (mean {mean:.1f} of 255 < {DARK_MEAN:g})"
        if mean < SATURATED_FRACTION * 255.0:
            return None  # fewer than that fraction of the pixels can be at 255: not saturated
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


def sampled_usability(view: str, pixels: np.ndarray) -> str | None:
    """`image_usability` on every (height // USABILITY_ROWS)-th whole row (all rows of images
    of fewer than 2 * USABILITY_ROWS rows); a view of the rows, no copy."""
    return image_usability(view, pixels[::max(1, pixels.shape[0] // USABILITY_ROWS)])


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
    needed: tuple[str, ...] = ("thermal", "rgb")  # the cameras the model reads
    restart_grace: bool = False
    _last: tuple[str, str] | None = None
    _restart_s: float | None = None  # the image that ended the last time with no camera present

    @property
    def full_mode(self) -> str:
        """The mode with every needed camera present: fused, or a baseline's own camera."""
        return "fused" if len(self.needed) == 2 else f"{self.needed[0]}_only"

    def record(self, view: str, now_s: float, unusable_reason: str | None = None) -> None:
        """A camera's image arrived; `unusable_reason` (from `image_usability`) if it carries
        nothing."""
        if self.restart_grace and unusable_reason is None and not any(
                self.present(v, now_s) for v in self.needed):
            self._restart_s = now_s
        cam = self.cameras[view]
        cam.last_seen_s = now_s
        cam.unusable_reason = unusable_reason
        if unusable_reason is None:
            cam.last_usable_s = now_s

    def present(self, view: str, now_s: float) -> bool:
        cam = self.cameras[view]
        restart_s = self._restart_s
        if restart_s is not None and cam.unusable_reason is None and now_s - restart_s <= \
                self.stale_timeout_s and (cam.last_seen_s is None or cam.last_seen_s < restart_s):
            return True  # restart_grace: not heard of since the restart, but not missing yet
        return cam.last_usable_s is not None and now_s - cam.last_usable_s <= self.stale_timeout_s

    def _why_missing(self, view: str, now_s: float) -> str:
        if view not in self.needed:
            return ""  # a baseline's other camera is not missing: the model does not read it
        cam = self.cameras[view]
        if cam.last_seen_s is None:
            return f"no {view} image received yet"
        if cam.unusable_reason is not None and now_s - cam.last_seen_s <= self.stale_timeout_s:
            return cam.unusable_reason
        return f"{view} silent for {now_s - (cam.last_usable_s or cam.last_seen_s):.1f} s"

    def mode(self, now_s: float) -> tuple[str, str]:
        """(mode, reason): reason is "" in fused mode, else why a camera is missing."""
        thermal, rgb = (v in self.needed and self.present(v, now_s) for v in ("thermal", "rgb"))
        if thermal and rgb:
            result = ("fused", "")
        elif thermal:
            result = ("thermal_only", self._why_missing("rgb", now_s))
        elif rgb:
            result = ("rgb_only", self._why_missing("thermal", now_s))
        else:
            result = ("none", "; ".join(self._why_missing(v, now_s) for v in self.needed))
        if self._last is not None and result[0] != self._last[0]:
            self.changes += 1
        self._last = result
        return result
