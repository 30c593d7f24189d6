"""depth_fusion_evaluator as a real process over DDS: pairing by stamp, metrics, CSV, summary.

Predictions are exactly 1.1 x the ground truth, so the metric abs_rel is 0.1 and the
median-scaled one 0; the RGB view's prediction is smaller than its GT (resize path) and constant.
"""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image

from depth_fusion_ros.evaluator import depth_to_numpy
from depth_fusion_ros.ros_image import numpy_to_image

REPO = Path(__file__).resolve().parents[1]
STAMPS_NS = [1_000_000_000 + i * 66_666_667 for i in range(3)]


def script_cmd(name: str, module: str) -> list[str]:
    """The installed console script, else the same entry point through this interpreter."""
    script = Path(sys.executable).parent / name
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main())"]


def ros_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _image(array: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    msg = numpy_to_image(array.astype(np.float32), "32FC1")
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


def _spin_until(executor, done, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not done():
        executor.spin_once(timeout_sec=0.05)
    return done()


def test_depth_to_numpy_keeps_nan_and_checks_layout():
    depth = np.array([[1.5, np.nan], [80.0, 0.25]], dtype=np.float32)
    out = depth_to_numpy(_image(depth, 0, "x"))
    assert out.shape == (2, 2) and np.isnan(out[0, 1]) and out[1, 0] == pytest.approx(80.0)
    bad = _image(depth, 0, "x")
    bad.step = 4  # too short for 2 float columns
    with pytest.raises(ValueError, match="step"):
        depth_to_numpy(bad)


@pytest.fixture()
def ros_node():
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("evaluator_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def test_evaluator_process_metrics_csv_and_summary(ros_node, tmp_path):
    node, executor = ros_node
    csv_path, summary_path = tmp_path / "eval.csv", tmp_path / "eval.md"
    proc = subprocess.Popen(
        script_cmd("depth_fusion_evaluator", "depth_fusion_ros.evaluator")
        + ["--ros-args", "-p", f"csv_path:={csv_path}", "-p", f"summary_path:={summary_path}",
           "-p", "publish_period_s:=0.2"],
        env=ros_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        metrics, diags = [], []
        node.create_subscription(DiagnosticArray, "/depth_fusion_evaluator/metrics",
                                 metrics.append, 10)
        node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        pubs = {name: node.create_publisher(Image, topic, 10) for name, topic in [
            ("gt_thermal", "/gt/thermal/depth"), ("pred_thermal", "/thermal/depth/image"),
            ("gt_rgb", "/gt/rgb/depth"), ("pred_rgb", "/rgb/depth/image")]}
        assert _spin_until(executor, lambda: all(p.get_subscription_count() for p in pubs.values()),
                           20.0), "evaluator did not subscribe"
        rng = np.random.default_rng(0)
        for stamp_ns in STAMPS_NS:
            gt = rng.uniform(2.0, 60.0, (64, 160)).astype(np.float32)
            gt[rng.random(gt.shape) < 0.5] = np.nan  # no LiDAR return
            pred = np.where(np.isnan(gt), 5.0, gt * 1.1)
            pubs["gt_thermal"].publish(_image(gt, stamp_ns, "thermal_optical_frame"))
            pubs["pred_thermal"].publish(_image(pred, stamp_ns, "thermal_optical_frame"))
            gt_rgb = np.full((96, 306), 10.0, dtype=np.float32)
            gt_rgb[::3] = np.nan
            pubs["pred_rgb"].publish(_image(np.full((64, 160), 11.0), stamp_ns, "rgb_optical_frame"))
            pubs["gt_rgb"].publish(_image(gt_rgb, stamp_ns, "rgb_optical_frame"))
        pubs["gt_thermal"].publish(_image(gt, 9_000_000_000, "x"))  # never predicted: unmatched
        bad = numpy_to_image(np.zeros((4, 4), np.uint8), "mono8")
        pubs["pred_rgb"].publish(bad)
        assert _spin_until(executor, lambda: len(metrics) >= 6, 20.0), f"got {len(metrics)} metrics"

        def frames_done():
            last = {s.name: {kv.key: kv.value for kv in s.values} for d in diags for s in d.status}
            rgb = last.get("depth_fusion_evaluator: rgb", {})
            thermal = last.get("depth_fusion_evaluator: thermal", {})
            return (rgb.get("frames") == "3" and rgb.get("bad_messages") == "1"
                    and thermal.get("gt_frames") == "4")  # the never-predicted GT arrived too
        assert _spin_until(executor, frames_done, 10.0), "diagnostics never reported 3 rgb frames"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    by_view = {}
    for msg in metrics:
        (status,) = msg.status
        values = {kv.key: float(kv.value) for kv in status.values}
        by_view.setdefault(status.name, []).append(values)
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        assert stamp_ns in STAMPS_NS
    for view in ("thermal", "rgb"):
        assert len(by_view[view]) == 3
        for values in by_view[view]:
            assert values["frame/metric/abs_rel"] == pytest.approx(0.1, abs=1e-5)
            assert values["frame/median/abs_rel"] == pytest.approx(0.0, abs=1e-5)
            assert values["frame/scale"] == pytest.approx(1 / 1.1, rel=1e-5)
            assert values["frame/metric/d1"] == pytest.approx(1.0)
            assert values["frame/coverage"] == 1.0
    assert by_view["rgb"][0]["frame/valid_px"] == 96 * 306 - 32 * 306  # every 3rd row NaN
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 6 and {r["view"] for r in rows} == {"thermal", "rgb"}
    assert all(float(r["metric_abs_rel"]) == pytest.approx(0.1, abs=1e-5) for r in rows)
    summary = summary_path.read_text()
    assert "| thermal / metric | 0.1000 |" in summary
    assert "| rgb / median-scaled | 0.0000 |" in summary
    # 4 thermal GT frames came (one never predicted), 3 were evaluated
    assert "thermal: 3 of 4 ground-truth frames evaluated (0 without valid GT; unmatched: " \
           "0 predictions, 1 GT frames)" in summary, summary
    assert "| thermal / metric |" in out  # printed at shutdown too
