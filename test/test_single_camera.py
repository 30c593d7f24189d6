"""Single-camera mode without DDS: the arrival routing (sync.InputRouter) at its transition edges,
the mode's diagnostics level, single-camera inputs through the pipeline, and the parameters."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from test_node import K_RGB, K_THERMAL, _camera_info

from depth_fusion_ros import params
from depth_fusion_ros.degraded import ModeTracker
from depth_fusion_ros.diagnostics import ERROR, OK, WARN, ModeStatus, NodeStats, mode_level
from depth_fusion_ros.pipeline import BadInput, DepthPipeline, PipelineConfig, accept_image
from depth_fusion_ros.preprocess import missing_input
from depth_fusion_ros.ros_image import numpy_to_image
from depth_fusion_ros.sync import ApproximateTimeSync, InputRouter

PERIOD_S = 0.1  # 10 Hz cameras in these tests
STALE_S = 1.0


def _frame(camera: str, stamp_ns: int):
    """A stand-in message: the router only reads header.stamp (for Work.stamp_ns)."""
    sec, nanosec = divmod(stamp_ns, 1_000_000_000)
    return SimpleNamespace(camera=camera, stamp_ns=stamp_ns,
                           header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec)))


class Cameras:
    """A router fed like the node feeds it; stamps are arrival times (ns), as with live cameras."""

    def __init__(self, needed=("thermal", "rgb"), published=("thermal", "rgb")):
        self.sync = ApproximateTimeSync(0.03, 10)
        self.tracker = ModeTracker(STALE_S, needed=needed, restart_grace=True)
        self.router = InputRouter(self.sync, self.tracker, published)
        self.work = []  # every Work routed so far

    def send(self, camera: str, t_s: float, unusable: str | None = None, stamp_s=None):
        stamp_ns = int(round((t_s if stamp_s is None else stamp_s) * 1e9))
        arrival = self.router.add(camera, stamp_ns, _frame(camera, stamp_ns), t_s, unusable)
        self.work += arrival.work
        return arrival

    def both(self, t_s: float, rgb_unusable: str | None = None):
        self.send("thermal", t_s)
        return self.send("rgb", t_s + 0.001, rgb_unusable, stamp_s=t_s)


def _stamps(work) -> list[tuple[str, tuple[int, ...]]]:
    return [(w.mode, tuple(f.stamp_ns for f in w.frames.values())) for w in work]


def test_first_image_after_the_other_camera_went_stale_runs_alone():
    cams = Cameras()
    for i in range(5):  # 0.0 .. 0.4: fused pairs
        cams.both(i * PERIOD_S)
    assert [w.mode for w in cams.work] == ["fused"] * 5 and all(w.paired for w in cams.work)
    # rgb stops after 0.4 s; thermal frames wait for partners while rgb is merely late ...
    t = 0.5
    while t - 0.401 <= STALE_S:
        arrival = cams.send("thermal", t)
        assert arrival.work == [] and arrival.mode == "fused"
        t = round(t + PERIOD_S, 3)
    assert cams.sync.pending() == (10, 0)  # bounded by the sync queue
    unmatched = cams.sync.stats.unmatched[0]
    # ... and the first thermal image after the timeout already runs alone.
    arrival = cams.send("thermal", t)
    assert (arrival.mode, arrival.reason) == ("thermal_only", f"rgb silent for {t - 0.401:.1f} s")
    assert _stamps(arrival.work) == [("thermal_only", (int(t * 1e9),))]
    assert not arrival.work[0].paired
    # the frames that waited for a partner are dropped, counted as unmatched
    assert cams.sync.pending() == (0, 0) and cams.sync.stats.unmatched[0] == unmatched + 10
    arrival = cams.send("thermal", t + PERIOD_S)
    assert _stamps(arrival.work) == [("thermal_only", (int(round((t + PERIOD_S) * 1e9)),))]


def test_late_rgb_after_the_switch_completes_no_older_pair_and_fused_resumes():
    cams = Cameras()
    for i in range(3):
        cams.both(i * PERIOD_S)  # last pair at 0.2
    for i in range(3, 16):  # thermal alone up to 1.5 s: thermal_only from 1.3 (0.201 + 1.0 < t)
        cams.send("thermal", i * PERIOD_S)
    singles = [w for w in cams.work if w.mode == "thermal_only"]
    assert [w.stamp_ns for w in singles] == [int(round(t * 1e9)) for t in (1.3, 1.4, 1.5)]
    # rgb 0.3 arrives late (delayed delivery): thermal 0.3 waited for it before the switch, but
    # was dropped then, so no pair older than the single images already routed completes.
    before = len(cams.work)
    arrival = cams.send("rgb", 1.55, stamp_s=0.3)
    assert arrival.mode == "fused" and arrival.work == []  # the camera counts as back
    cams.send("thermal", 1.6)  # 0.3 vs 1.6: no partner; rgb 0.3 dropped as unmatched
    arrival = cams.send("rgb", 1.61, stamp_s=1.6)
    assert _stamps(arrival.work) == [("fused", (1_600_000_000, 1_600_000_000))]
    stamps = [w.stamp_ns for w in cams.work]
    assert stamps == sorted(stamps) and len(cams.work) == before + 1  # nothing went backwards


def test_a_pair_with_an_unusable_image_goes_on_without_it():
    cams = Cameras()
    cams.both(0.0)
    arrival = cams.both(0.1, rgb_unusable="rgb image is black (mean 0.0 of 255 < 4)")
    (work,) = arrival.work
    assert (work.mode, work.paired, list(work.frames)) == ("thermal_only", True, ["thermal"])
    assert arrival.mode == "fused"  # the rgb camera is still present (usable 0.1 s ago) ...
    for i in range(2, 14):
        arrival = cams.both(i * PERIOD_S, rgb_unusable="rgb image is black (mean 0.0 of 255 < 4)")
    # ... until its last usable image is stale_timeout_s old: then thermal frames go alone
    assert (arrival.mode, arrival.reason) == ("thermal_only",
                                              "rgb image is black (mean 0.0 of 255 < 4)")
    assert all(list(w.frames) == ["thermal"] for w in cams.work[1:])
    assert cams.work[-1].paired is False
    # A usable rgb image: fused again at once. Its thermal partner (sent just before it) already
    # ran alone, so the first pair is the next one: no view is published twice for one stamp.
    arrival = cams.both(1.4)
    assert arrival.mode == "fused" and arrival.work == []
    assert _stamps(cams.work[-1:]) == [("thermal_only", (1_400_000_000,))]
    arrival = cams.both(1.5)
    assert _stamps(arrival.work) == [("fused", (1_500_000_000,) * 2)]


def test_flat_thermal_and_both_unusable():
    cams = Cameras()
    cams.send("thermal", 0.0, unusable="thermal image is flat (1-99 % span 0 < 20)")
    arrival = cams.send("rgb", 0.001, stamp_s=0.0)
    assert arrival.mode == "rgb_only"  # thermal has sent nothing usable: no grace for it
    assert _stamps(arrival.work) == [("rgb_only", (0,))]
    cams.send("thermal", 0.1, unusable="thermal image is flat (1-99 % span 0 < 20)")
    arrival = cams.send("rgb", 0.101, "rgb image is black (mean 0.0 of 255 < 4)", stamp_s=0.1)
    assert arrival.mode == "rgb_only"  # rgb's last usable image is 0.1 s old
    assert arrival.work == [] and cams.router.skipped == 1  # nothing usable to run on


def test_startup_waits_stale_timeout_for_a_camera_that_never_sent():
    cams = Cameras()
    for i in range(10):
        assert cams.send("thermal", i * PERIOD_S).mode == "fused"
    arrival = cams.send("thermal", 1.1)
    assert (arrival.mode, arrival.reason) == ("thermal_only", "no rgb image received yet")
    assert _stamps(arrival.work) == [("thermal_only", (1_100_000_000,))]
    assert cams.tracker.mode(5.0) == ("none", "thermal silent for 3.9 s; no rgb image received yet")


def test_after_all_cameras_were_silent_the_first_image_waits_for_its_partner():
    cams = Cameras()
    cams.both(0.0)
    assert cams.tracker.mode(2.0)[0] == "none"  # e.g. a paused bag
    arrival = cams.send("thermal", 2.0)  # rgb silent for 2 s, but so was thermal: no switch
    assert (arrival.mode, arrival.work) == ("fused", [])
    arrival = cams.send("rgb", 2.001, stamp_s=2.0)
    assert _stamps(arrival.work) == [("fused", (2_000_000_000,) * 2)]
    for i in range(1, 12):  # rgb stops again: thermal alone after stale_timeout_s
        arrival = cams.send("thermal", 2.0 + i * PERIOD_S)
    assert (arrival.mode, arrival.reason) == ("thermal_only", "rgb silent for 1.1 s")


def test_stamp_rules_apply_in_single_camera_mode_and_unpublished_survivor_is_skipped():
    cams = Cameras(published=("thermal",))
    for i in range(11):  # 0.0 .. 1.0: thermal may still come (restart grace)
        assert cams.send("rgb", i * PERIOD_S).mode == "fused"
    for t in (1.1, 1.2):
        assert cams.send("rgb", t).work == []  # rgb_only, but only the thermal view is published
    assert cams.router.skipped == 2
    assert cams.send("rgb", 1.3, stamp_s=1.2).stamp_problem == "repeated"
    assert cams.send("rgb", 1.4, stamp_s=0.5).stamp_problem == "backwards"
    assert (cams.sync.stats.repeated[1], cams.sync.stats.backwards[1], cams.sync.stats.resets) == (
        1, 1, 1)


def test_baseline_model_runs_its_camera_alone_and_is_ok():
    cams = Cameras(needed=("thermal",), published=("thermal",))
    assert cams.tracker.full_mode == "thermal_only"
    for i in range(3):
        arrival = cams.send("thermal", i * PERIOD_S)
        assert (arrival.mode, arrival.reason) == ("thermal_only", "")
    assert _stamps(cams.work) == [("thermal_only", (int(round(i * PERIOD_S * 1e9)),))
                                  for i in range(3)]
    assert cams.tracker.mode(3.0) == ("none", "thermal silent for 2.8 s")
    assert mode_level("thermal_only", cams.tracker.full_mode) == OK


def test_diagnostics_level_message_and_values_follow_the_mode():
    stats = NodeStats(("thermal", "rgb"), 1.0, start_s=0.0)
    stats.record_input("thermal", 0.5)
    fused = stats.snapshot(0.6, ModeStatus("fused", ""))
    assert (fused.level, fused.message, fused.values["mode"]) == (OK, "running", "fused")
    single = stats.snapshot(1.6, ModeStatus("thermal_only", "rgb silent for 1.1 s", changes=2))
    assert (single.level, single.message) == (WARN, "thermal_only: rgb silent for 1.1 s")
    assert (single.values["mode_reason"], single.values["mode_changes"]) == (
        "rgb silent for 1.1 s", "2")
    none = stats.snapshot(3.0, ModeStatus("none", "thermal silent for 2.5 s; rgb silent"))
    assert (none.level, none.message) == (ERROR, "no usable input: thermal silent for 2.5 s; "
                                                 "rgb silent")
    assert stats.snapshot(3.0).level == ERROR  # without a mode: the stale inputs, as before


# --- single-camera inputs through the pipeline ---------------------------------------------------
def _inputs():
    rng = np.random.default_rng(3)
    thermal = numpy_to_image(rng.integers(3000, 6000, (256, 640), dtype=np.uint16), "mono16")
    rgb = numpy_to_image(rng.integers(0, 256, (384, 1224, 3), dtype=np.uint8), "rgb8")
    thermal.header.frame_id, rgb.header.frame_id = "t", "r"
    infos = (_camera_info(K_THERMAL, 640, 256, "t"), _camera_info(K_RGB, 1224, 384, "r"))
    return thermal, rgb, infos


@pytest.mark.parametrize("present", ["thermal", "rgb"])
def test_pipeline_feeds_missing_input_and_publishes_only_the_present_view(present):
    thermal, rgb, infos = _inputs()
    pipeline = DepthPipeline(PipelineConfig(("thermal", "rgb"), (256, 640), 0.1, 80.0,
                                            "network", 4))
    both = pipeline.prepare(thermal, rgb, *infos)
    alone = pipeline.prepare(thermal if present == "thermal" else None,
                             rgb if present == "rgb" else None, *infos)
    missing = "rgb" if present == "thermal" else "thermal"
    assert alone.views == (present,) and set(alone.headers) == {present}
    np.testing.assert_array_equal(getattr(alone, f"{missing}_input")[0],
                                  missing_input(missing, (256, 640)))
    np.testing.assert_array_equal(getattr(alone, f"{present}_input"),
                                  getattr(both, f"{present}_input"))
    depth = np.full((256, 640), 10.0, np.float32)
    out = pipeline.postprocess(alone, {"thermal": depth, "rgb": depth}, {present: True})
    assert list(out) == [present] and out[present].cloud is not None
    assert out[present].image.header.frame_id == present[0]


def test_accept_image_judges_usability_and_counts_bad_input():
    rng = np.random.default_rng(4)
    black = numpy_to_image(np.zeros((384, 1224, 3), np.uint8), "bgr8")
    msg, why = accept_image("rgb", black, judge_usability=True)
    assert msg is black and why.startswith("rgb image is black")
    assert accept_image("rgb", black) == (black, None)  # not judged without the check
    lively = numpy_to_image(rng.integers(0, 256, (384, 1224, 3), dtype=np.uint8), "rgb8")
    assert accept_image("rgb", lively, judge_usability=True)[1] is None
    flat = numpy_to_image(np.full((256, 640), 4200, np.uint16), "mono16")
    assert "flat" in accept_image("thermal", flat, judge_usability=True)[1]
    with pytest.raises(BadInput) as err:
        accept_image("thermal", numpy_to_image(np.zeros((4, 4, 3), np.uint8), "bgr8"), True)
    assert (err.value.view, err.value.source, err.value.reason) == (
        "thermal", "image", "unsupported_encoding")


def test_compressed_image_is_decoded_once_to_be_judged():
    import cv2
    from sensor_msgs.msg import CompressedImage

    pixels = np.zeros((64, 96, 3), np.uint8)
    msg = CompressedImage(format="bgr8; png compressed bgr8",
                          data=cv2.imencode(".png", pixels)[1].tobytes())
    assert accept_image("rgb", msg) == (msg, None)  # decoding stays the worker's
    decoded, why = accept_image("rgb", msg, judge_usability=True)
    assert why.startswith("rgb image is black")
    assert decoded.encoding == "bgr8" and decoded.pixels.shape == (64, 96, 3)
    broken = CompressedImage(format="bgr8; png compressed bgr8", data=b"\x89PNG broken")
    with pytest.raises(BadInput, match="could not be decoded"):
        accept_image("rgb", broken, judge_usability=True)


# --- parameters ----------------------------------------------------------------------------------
def test_new_parameters_defaults_ranges_and_model_checks():
    defaults = params.parameter_defaults()
    assert {k: defaults[k] for k in ("check_image_usable", "min_confidence",
                                     "colored_min_depth_m", "colored_max_depth_m")} == {
        "check_image_usable": True, "min_confidence": 0.0, "colored_min_depth_m": 0.0,
        "colored_max_depth_m": 80.0}
    with pytest.raises(params.ParameterError, match=r"'min_confidence' = 1.5 is out of range: "
                                                    r"set it to a value in \[0, 1\]"):
        params.params_from_mapping({"model_path": "m.onnx", "min_confidence": 1.5})
    with pytest.raises(params.ParameterError, match="'colored_max_depth_m' = 5.0 must be > "
                                                    "colored_min_depth_m = 5.0"):
        params.params_from_mapping({"model_path": "m.onnx", "colored_min_depth_m": 5,
                                    "colored_max_depth_m": 5})
    p = params.params_from_mapping({"model_path": "m.onnx", "min_confidence": 0.5})
    params.check_against_model(p, "m.onnx", ["thermal", "rgb"], ["thermal", "rgb"])
    with pytest.raises(params.ParameterError) as err:
        params.check_against_model(p, "m.onnx", ["thermal", "rgb"], [])
    assert str(err.value) == (
        "parameter 'min_confidence' = 0.5 needs confidence outputs, but model m.onnx has none "
        "for ['thermal', 'rgb']: set it to 0, or export a model trained with "
        "model.uncertainty_head: true")
    with pytest.raises(params.ParameterError, match="'publish_rgb' is true but model m.onnx "
                                                    r"outputs \['thermal'\]"):
        params.check_against_model(params.NodeParams(model_path="m.onnx"), "m.onnx",
                                   ["thermal"], [])
