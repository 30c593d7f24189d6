"""`depth_fusion_evaluator`: live accuracy of predicted depth against ground-truth depth topics.

For each view (default thermal and rgb) it subscribes a predicted depth image (32FC1 metres,
default `thermal/depth/image`, `rgb/depth/image`) and a ground-truth depth image (32FC1 metres,
NaN or 0 = no measurement, default `/gt/thermal/depth`, `/gt/rgb/depth` as written by
`ms2_to_bag`), pairs them by exact header stamp (bounded buffers: a frame the node dropped simply
never pairs), and computes the nine metrics of `depth_fusion_ros.metrics` twice per frame:
metric (no scaling) and median-scaled (MS2 benchmark convention), the prediction resized to the
GT size. Every valid GT pixel is scored: a pixel the node published as NaN (outside its
[min_depth_m, max_depth_m]) counts as a missing prediction, and the fraction of valid GT pixels
with a prediction is reported as `coverage`.

Published:
- `/diagnostics` (diagnostic_msgs/DiagnosticArray, every `publish_period_s`): one status per view,
  `depth_fusion_evaluator: <view>`, values = frame counts and running means
  `metric/<name>`, `median/<name>` (names: the nine metrics and `coverage`).
- `~/metrics` (diagnostic_msgs/DiagnosticArray, one message per evaluated frame, header stamp =
  the frame's stamp): one status named `<view>` with the frame's `frame/metric/<name>`,
  `frame/median/<name>`, `frame/scale`, `frame/valid_px`, `frame/coverage` and the running means
  as above.

Files: `csv_path` gets one row per evaluated frame per view (written as frames arrive);
`summary_path` gets a Markdown table at shutdown (Ctrl-C / SIGTERM included), which is also
printed.
"""
from __future__ import annotations

import csv
import sys
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, qos_profile_sensor_data
from sensor_msgs.msg import Image

from depth_fusion_ros.metrics import (
    EVAL_MAX_DEPTH_M,
    EVAL_MIN_DEPTH_M,
    METRIC_NAMES,
    MetricAccumulator,
    compute_depth_metrics,
    format_metrics_table,
)
from depth_fusion_ros.params import (
    NumberRange,
    ParameterError,
    check_command_line_overrides,
    check_range,
    help_text,
    wants_help,
)
from depth_fusion_ros.ros_image import image_to_numpy

# name -> (default, description): the one table of declared parameters (launch tests parse it).
PARAMETERS: dict[str, tuple[object, str]] = {
    "views": (["thermal", "rgb"], "views to evaluate; names label the CSV, summary and topics"),
    "pred_topics": (["thermal/depth/image", "rgb/depth/image"],
                    "predicted depth topic (32FC1 m) per entry of `views`"),
    "gt_topics": (["/gt/thermal/depth", "/gt/rgb/depth"],
                  "ground-truth depth topic (32FC1 m, NaN or 0 = none) per entry of `views`"),
    "min_depth_m": (EVAL_MIN_DEPTH_M, "GT pixels at or below this depth are ignored (m)"),
    "max_depth_m": (EVAL_MAX_DEPTH_M, "GT pixels at or above this depth are ignored (m)"),
    "csv_path": ("", "CSV with one row per frame per view ('' = no CSV)"),
    "summary_path": ("", "Markdown summary table written at shutdown ('' = print only)"),
    "queue_size": (30, "unpaired frames kept per topic while waiting for the other side"),
    "publish_period_s": (1.0, "period of the /diagnostics summary (s)"),
    "input_qos": ("reliable", "subscription QoS: reliable | sensor_data (best effort)"),
}
# name -> allowed values of the int/float parameters (finite; see depth_fusion_ros/params.py).
RANGES: dict[str, NumberRange] = {
    "min_depth_m": NumberRange(0.0, 1000.0, "m"),
    "max_depth_m": NumberRange(0.0, 1000.0, "m"),
    "queue_size": NumberRange(1, 10000, "frames"),
    "publish_period_s": NumberRange(0.01, 3600.0, "s"),
}
INPUT_QOS = ("reliable", "sensor_data")
CSV_COLUMNS = (["stamp_ns", "view", "valid_px", "coverage", "scale"]
               + [f"metric_{n}" for n in METRIC_NAMES] + [f"median_{n}" for n in METRIC_NAMES])


@dataclass
class ViewState:
    """Buffers and running means of one view."""

    name: str
    preds: OrderedDict  # stamp_ns -> [H, W] f32 prediction
    gts: OrderedDict  # stamp_ns -> [Hg, Wg] f32 GT
    metric: MetricAccumulator
    median: MetricAccumulator
    unmatched_pred: int = 0
    unmatched_gt: int = 0
    bad_messages: int = 0
    gt_received: int = 0  # GT frames received: the bag's frames when the replay is lossless


def stamp_ns_of(msg: Image) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def depth_to_numpy(msg: Image) -> np.ndarray:
    """[H, W] f32 metres from a 32FC1 Image, NaN kept (invalid depth is NaN by REP 118).

    Raises ImageDecodeError (a ValueError) naming the problem: wrong encoding or layout.
    """
    return image_to_numpy(msg, ("32FC1",), allow_non_finite=True)


def _kv(key: str, value) -> KeyValue:
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return KeyValue(key=key, value=text)


class DepthEvaluator(Node):
    """Pairs prediction and GT by stamp, accumulates metrics, reports them."""

    def __init__(self, cli_args: list[str] | None = None) -> None:
        """cli_args: the command line rclpy.init got (default sys.argv), to check overrides."""
        super().__init__("depth_fusion_evaluator")
        for name, (default, description) in PARAMETERS.items():
            try:
                self.declare_parameter(name, default, _descriptor(description))
            except InvalidParameterTypeException as err:  # e.g. queue_size:=1.5
                raise ParameterError(f"parameter '{name}' must be {type(default).__name__} "
                                     f"like its default {default!r}: {err}") from err
        p = {name: self.get_parameter(name).value for name in PARAMETERS}
        # a -p override dropped by rcl (another type than the params file's) stops start-up
        check_command_line_overrides(p, cli_args, self.get_name())
        _validate(p)
        views, preds, gts = list(p["views"]), list(p["pred_topics"]), list(p["gt_topics"])
        if not (len(views) == len(preds) == len(gts)) or not views:
            raise ValueError(f"parameters views {views}, pred_topics {preds} and gt_topics {gts} "
                             f"must be non-empty lists of the same length")
        self.min_depth_m, self.max_depth_m = float(p["min_depth_m"]), float(p["max_depth_m"])
        self.queue_size = int(p["queue_size"])
        self.summary_path = str(p["summary_path"])
        self.views = {v: ViewState(v, OrderedDict(), OrderedDict(), MetricAccumulator(),
                                   MetricAccumulator()) for v in views}
        qos = qos_profile_sensor_data if p["input_qos"] == "sensor_data" else QoSProfile(depth=10)
        for view, pred_topic, gt_topic in zip(views, preds, gts, strict=True):
            self.create_subscription(Image, pred_topic, self._callback(view, "pred"), qos)
            self.create_subscription(Image, gt_topic, self._callback(view, "gt"), qos)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.metrics_pub = self.create_publisher(DiagnosticArray, "~/metrics", 10)
        # steady clock: summaries keep coming before /clock starts and while a replay pauses
        self.create_timer(float(p["publish_period_s"]), self._publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        self._csv_file = self._csv = None
        if p["csv_path"]:
            path = Path(p["csv_path"])
            path.parent.mkdir(parents=True, exist_ok=True)
            self._csv_file = path.open("w", newline="")
            self._csv = csv.writer(self._csv_file)
            self._csv.writerow(CSV_COLUMNS)
        pairs = ", ".join(f"{v}: {a} vs {b}" for v, a, b in zip(views, preds, gts, strict=True))
        self.get_logger().info(f"evaluating {pairs} by exact stamp")

    def _callback(self, view: str, side: str):
        def callback(msg: Image) -> None:
            self._on_depth(self.views[view], side, msg)
        return callback

    def _on_depth(self, state: ViewState, side: str, msg: Image) -> None:
        try:
            depth_m = depth_to_numpy(msg)
        except ValueError as err:
            state.bad_messages += 1
            self.get_logger().warning(f"{state.name} {side} depth dropped: {err}",
                                      throttle_duration_sec=5.0)
            return
        stamp_ns = stamp_ns_of(msg)
        state.gt_received += side == "gt"
        mine, other = (state.preds, state.gts) if side == "pred" else (state.gts, state.preds)
        if stamp_ns in other:
            partner = other.pop(stamp_ns)
            pred, gt = (depth_m, partner) if side == "pred" else (partner, depth_m)
            self._evaluate(state, stamp_ns, pred, gt)
            return
        mine[stamp_ns] = depth_m
        while len(mine) > self.queue_size:  # bounded: the oldest never found its partner
            mine.popitem(last=False)
            if side == "pred":
                state.unmatched_pred += 1
            else:
                state.unmatched_gt += 1

    def _evaluate(self, state: ViewState, stamp_ns: int, pred_m: np.ndarray,
                  gt_m: np.ndarray) -> None:
        """Metric and median-scaled metrics of one pair; pred [H, W], GT [Hg, Wg] in metres."""
        rng = {"min_depth_m": self.min_depth_m, "max_depth_m": self.max_depth_m}
        metric = compute_depth_metrics(pred_m, gt_m, median_scaling=False, **rng)
        median = compute_depth_metrics(pred_m, gt_m, median_scaling=True, **rng)
        state.metric.add(metric)
        state.median.add(median)
        if metric is None:
            return  # no valid GT pixel in this frame: counted as skipped
        if self._csv is not None:
            self._csv.writerow([stamp_ns, state.name, metric["valid_px"],
                                f"{metric['coverage']:.6g}", f"{median['scale']:.6g}"]
                               + [f"{metric[n]:.6g}" for n in METRIC_NAMES]
                               + [f"{median[n]:.6g}" for n in METRIC_NAMES])
            self._csv_file.flush()
        status = self._status(state, name=state.name)
        status.values = ([_kv(f"frame/metric/{n}", metric[n]) for n in METRIC_NAMES]
                         + [_kv(f"frame/median/{n}", median[n]) for n in METRIC_NAMES]
                         + [_kv("frame/scale", median["scale"]),
                            _kv("frame/valid_px", metric["valid_px"]),
                            _kv("frame/coverage", metric["coverage"])] + status.values)
        out = DiagnosticArray(status=[status])
        out.header.stamp.sec, out.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        self.metrics_pub.publish(out)

    def _status(self, state: ViewState, name: str) -> DiagnosticStatus:
        frames = state.metric.count
        level = DiagnosticStatus.OK if frames else DiagnosticStatus.WARN
        message = (f"{frames} frames, abs_rel {state.metric.mean()['abs_rel']:.4f} metric, "
                   f"{state.median.mean()['abs_rel']:.4f} median-scaled" if frames
                   else "no prediction/GT pair with valid GT yet")
        values = [_kv("frames", frames), _kv("gt_frames", state.gt_received),
                  _kv("frames_without_gt", state.metric.skipped),
                  _kv("unmatched_pred", state.unmatched_pred),
                  _kv("unmatched_gt", state.unmatched_gt), _kv("bad_messages", state.bad_messages)]
        for label, acc in (("metric", state.metric), ("median", state.median)):
            values += [_kv(f"{label}/{n}", v) for n, v in acc.mean().items()]
        return DiagnosticStatus(level=level, name=name, message=message,
                                hardware_id="depth_fusion_evaluator", values=values)

    def _publish_diagnostics(self) -> None:
        out = DiagnosticArray(status=[self._status(s, f"depth_fusion_evaluator: {s.name}")
                                      for s in self.views.values()])
        out.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(out)

    def summary(self) -> str:
        """Markdown summary: frame counts and one table row per view and scaling."""
        rows, counts = {}, []
        for s in self.views.values():
            # Still-buffered frames never found their partner either.
            # A frame is evaluated once its prediction and GT met; a GT frame without a
            # prediction is one the node dropped (pairs_dropped) or the transport lost.
            counts.append(f"{s.name}: {s.metric.count} of {s.gt_received} ground-truth frames "
                          f"evaluated ({s.metric.skipped} without valid GT; unmatched: "
                          f"{s.unmatched_pred + len(s.preds)} predictions, "
                          f"{s.unmatched_gt + len(s.gts)} GT frames)")
            if s.metric.count:
                rows[f"{s.name} / metric"] = s.metric.mean()
                rows[f"{s.name} / median-scaled"] = s.median.mean()
        table = format_metrics_table(rows) if rows else "(no frames evaluated)"
        return ("## depth_fusion_evaluator summary\n\n" + "\n".join(f"- {c}" for c in counts)
                + f"\n\nGT range ({self.min_depth_m:g}, {self.max_depth_m:g}) m\n\n{table}\n")

    def finish(self) -> str:
        """Close the CSV, write and return the summary (called once at shutdown)."""
        if self._csv_file is not None:
            self._csv_file.close()
            self._csv_file = self._csv = None
        text = self.summary()
        if self.summary_path:
            path = Path(self.summary_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return text


def _validate(p: dict[str, object]) -> None:
    """Start-up check of the numeric and QoS parameters; ParameterError names the parameter."""
    for name, allowed in RANGES.items():  # types are the defaults' (rclpy checked them)
        check_range(name, p[name], allowed)
    if not p["max_depth_m"] > p["min_depth_m"]:
        raise ParameterError(f"parameter 'max_depth_m' = {p['max_depth_m']} must be > "
                             f"min_depth_m = {p['min_depth_m']}")
    if p["input_qos"] not in INPUT_QOS:
        raise ParameterError(f"parameter 'input_qos' = {p['input_qos']!r} is not one of "
                             f"{list(INPUT_QOS)}")


def _descriptor(description: str):
    """Read-only: the evaluator reads its parameters once, at start-up, so `ros2 param set` is
    refused rather than silently ignored."""
    from rcl_interfaces.msg import ParameterDescriptor

    return ParameterDescriptor(description=description, read_only=True)


def main(argv: list[str] | None = None) -> int:
    if wants_help(argv if argv is not None else sys.argv):
        print(help_text("depth_fusion_evaluator", __doc__.split("\n")[0].replace("`", ""),
                        [(name, default, text) for name, (default, text) in PARAMETERS.items()]))
        return 0
    rclpy.init(args=argv)
    try:
        node = DepthEvaluator(cli_args=argv)
    except ValueError as err:
        print(f"depth_fusion_evaluator: error: {err}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass  # Ctrl-C / SIGTERM: fall through to the summary
    finally:
        print(node.finish(), flush=True)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
