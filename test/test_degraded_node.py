"""Single-camera (degraded) mode of depth_fusion_node over real DDS.

A camera's publisher stops (or sends black frames): the node keeps publishing the other view
within stale_timeout_s + one frame, reports the mode, WARN and the reason in /diagnostics, never
publishes the missing camera's view meanwhile, and returns to fused mode when the camera is back.
The node runs as its installed console script (test_node.Harness) with the real tiny ONNX model.
"""
from __future__ import annotations

import time

import numpy as np
import pytest
from test_node import VIEWS, Harness, _stamp_ns

from depth_fusion_ros.ros_image import numpy_to_image

STALE_S = 1.0
PERIOD_S = 0.2  # the cameras run at 5 Hz here: the tiny model keeps up on a loaded small CPU
WARN, OK = b"\x01", b"\x00"


class Cameras:
    """Publishes frames of the chosen cameras at PERIOD_S and remembers every stamp sent."""

    def __init__(self, h: Harness):
        self.h = h
        self.sent: dict[str, list[int]] = {v: [] for v in VIEWS}

    def run(self, cameras: tuple[str, ...], seconds: float = 60.0, until=None,
            images: dict | None = None) -> None:
        """Send frames of `cameras` (the same stamp for a pair) for `seconds` or until `until()`."""
        images = images or {}
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until()):
            stamp_ns = time.time_ns()
            for view in cameras:
                msg = images.get(view) or getattr(self.h, view)
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
                self.h.pub[f"{view}/image_raw"].publish(msg)
                self.sent[view].append(stamp_ns)
            next_s = time.monotonic() + PERIOD_S
            self.h.spin_until(lambda n=next_s: time.monotonic() >= n, PERIOD_S + 0.1)

    def stamps(self, view: str, after_ns: int = 0) -> list[int]:
        """Stamps of this view's published depth images, newer than after_ns, ascending."""
        return sorted(s for s in (_stamp_ns(m.header) for _, m in
                                  self.h.received[f"{view}/depth/image"]) if s > after_ns)


def _status_with(h: Harness, mode: str, level: bytes, start: int = 0, timeout_s: float = 5.0):
    """The first /diagnostics status from h.diagnostics[start:] showing this mode and level."""
    def find():
        return next((s for s in h.diagnostics[start:] if {kv.key: kv.value for kv in s.values}.get(
            "mode") == mode and s.level == level), None)

    h.spin_until(lambda: find() is not None, timeout_s)
    status = find()
    assert status is not None, [({kv.key: kv.value for kv in s.values}.get("mode"), s.level)
                                for s in h.diagnostics[-5:]]
    return status, {kv.key: kv.value for kv in status.values}


def _start_fused(h: Harness, cams: Cameras) -> None:
    h.wait_ready()
    h.publish_infos()
    h.spin_until(lambda: False, 0.3)
    cams.run(VIEWS, until=lambda: all(cams.stamps(v) for v in VIEWS))
    assert all(cams.stamps(v) for v in VIEWS), h.log_path.read_text()
    _status_with(h, "fused", OK)


def _back_to_fused(h: Harness, cams: Cameras, lost: str, since_ns: int) -> None:
    cams.run(VIEWS, until=lambda: set(cams.stamps(lost, since_ns)) & set(
        cams.stamps("thermal" if lost == "rgb" else "rgb", since_ns)))
    assert cams.stamps(lost, since_ns), h.log_path.read_text()
    status, values = _status_with(h, "fused", OK, start=len(h.diagnostics))
    assert status.message == "running" and values["mode_reason"] == ""


@pytest.mark.parametrize("lost", ["rgb", "thermal"])
def test_lost_camera_single_camera_mode_and_back(harness_factory, lost):
    survivor = "thermal" if lost == "rgb" else "rgb"
    h = harness_factory(f"lost_{lost}", input_qos="reliable", publish_points=False,
                        stale_timeout_s=STALE_S, diagnostics_period_s=0.25)
    cams = Cameras(h)
    _start_fused(h, cams)
    last_lost_ns = cams.sent[lost][-1]
    diagnostics_before = len(h.diagnostics)
    cams.run((survivor,), seconds=STALE_S + 2.0)
    # The survivor's view goes on: the first image of it published alone is at the latest the
    # first frame sent after the other camera went silent for stale_timeout_s (or, at the
    # boundary, the next one: arrival times are not the stamps): within stale_timeout_s + one
    # frame.
    # A frame delivered late (a busy executor) can switch with an earlier stamp: never later.
    after_timeout = [s for s in cams.sent[survivor] if s > last_lost_ns + STALE_S * 1e9]
    single = cams.stamps(survivor, last_lost_ns)
    assert single and single[0] <= after_timeout[1], (single[:3], after_timeout[:3])
    received_ns = min(t for t, m in h.received[f"{survivor}/depth/image"]
                      if _stamp_ns(m.header) == single[0])
    # ... and it is out one inference after that frame: a bound that only catches a switch that
    # waits for something else (a later frame, a timer), not a speed target. Generous, because
    # a loaded 2-core VM took 2.46 s once where 1.4 s is usual.
    assert (received_ns - last_lost_ns) / 1e9 <= STALE_S + PERIOD_S + 3.0
    assert len(single) >= 3  # and later frames, one by one (the newest when inference is slow)
    h.spin_until(lambda: False, 0.3)
    assert not cams.stamps(lost, last_lost_ns)  # the missing camera's view: never meanwhile
    status, values = _status_with(h, f"{survivor}_only", WARN, start=diagnostics_before)
    assert values["mode_reason"].startswith(f"{lost} silent for "), values
    assert status.message.startswith(f"{survivor}_only: {lost} silent for ")
    h.spin_until(lambda: False, 0.6)  # the latest status counts the single images processed
    assert int(h.diag_values()[f"processed_{survivor}_only"]) >= len(single) >= 3
    # the camera comes back: fused again by itself, both views published
    _back_to_fused(h, cams, lost, cams.sent[survivor][-1])
    log = h.log_path.read_text()
    switch = log.index(f"camera mode fused -> {survivor}_only ({lost} silent for")
    assert "-> fused: all cameras present" in log[switch:]  # (via none if the survivor paused)
    assert "has no confidence outputs" in log  # the plain tiny model


def test_black_rgb_frames_switch_to_thermal_only_and_back(harness_factory):
    h = harness_factory("black_rgb", input_qos="reliable", publish_points=False,
                        stale_timeout_s=STALE_S, diagnostics_period_s=0.25,
                        check_image_usable=True)
    cams = Cameras(h)
    _start_fused(h, cams)
    black = numpy_to_image(np.zeros((384, 1224, 3), np.uint8), "rgb8")
    black.header.frame_id = "rgb_optical"
    first_black_ns = time.time_ns()
    diagnostics_before = len(h.diagnostics)
    cams.run(VIEWS, seconds=STALE_S + 2.0, images={"rgb": black})
    # From the first black frame on, only the thermal view: pairs go on without their black
    # image until the mode switches (rgb's last usable image stale_timeout_s old), single
    # thermal images after it. Nothing is published from a black image.
    h.spin_until(lambda: False, 0.3)
    thermal = cams.stamps("thermal", first_black_ns)
    early = [s for s in thermal if s < first_black_ns + STALE_S * 1e9]
    # As many as were sent in that second (at least 2, unless this process itself was
    # descheduled and sent fewer: on a loaded VM the publisher can stall for a second too).
    sent_early = [s for s in cams.sent["thermal"]
                  if first_black_ns <= s < first_black_ns + STALE_S * 1e9]
    assert len(early) >= min(2, len(sent_early)) and len(thermal) - len(early) >= 2, (
        thermal, sent_early)
    assert not cams.stamps("rgb", first_black_ns - 1)
    status, values = _status_with(h, "thermal_only", WARN, start=diagnostics_before)
    assert values["mode_reason"].startswith("rgb image is black (mean 0.0 of 255"), values
    h.spin_until(lambda: False, 0.6)  # the latest status counts what was processed
    latest = h.diag_values()
    assert int(latest["unusable_rgb"]) >= 5
    assert int(latest["processed_thermal_only"]) >= len(thermal)
    _back_to_fused(h, cams, "rgb", cams.sent["rgb"][-1])


def test_thermal_baseline_model_runs_on_its_camera_alone(tiny_thermal_only_onnx_model, tmp_path):
    h = Harness(tiny_thermal_only_onnx_model, tmp_path, "baseline", input_qos="reliable",
                publish_rgb=False, publish_points=False, stale_timeout_s=STALE_S,
                diagnostics_period_s=0.25)
    try:
        ready = h.spin_until(lambda: h.pub["thermal/image_raw"].get_subscription_count() > 0
                             and h.node.count_publishers("/baseline/thermal/depth/image") > 0, 90.0)
        assert ready, h.log_path.read_text()
        h.spin_until(lambda: False, 0.5)
        # the camera the model does not read is not even subscribed
        assert h.pub["rgb/image_raw"].get_subscription_count() == 0
        assert h.node.count_publishers("/baseline/rgb/depth/image") == 0
        h.pub["thermal/camera_info"].publish(h.infos["thermal"])
        cams = Cameras(h)
        cams.run(("thermal",), until=lambda: len(cams.stamps("thermal")) >= 3)
        assert len(cams.stamps("thermal")) >= 3, h.log_path.read_text()
        status, values = _status_with(h, "thermal_only", OK)
        assert (status.message, values["mode_reason"]) == ("running", "")
        assert int(values["processed_thermal_only"]) >= 1 and values["pairs_processed"] == "0"
    finally:
        h.close()
