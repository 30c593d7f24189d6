"""Demo stage 6: the real ROS 2 system over DDS on this machine.

Starts `depth_fusion_evaluator` and `depth_fusion_node` (ONNX Runtime, CPU) as separate processes
from their console scripts, plays the bag with `depth_fusion_bag_player`, and listens in-process
(rclpy) to what a user would look at: both depth images, both clouds (one of each is kept for the
PLY files), the node's /diagnostics and the evaluator's metrics.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
FASTDDS_PROFILE = REPO_ROOT / "config" / "fastdds.xml"
PROFILE_VARS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


def use_fastdds_profile() -> None:
    """Every process of the demo (this one and those it starts) on config/fastdds.xml, as the
    README tells users to run theirs: Fast DDS reads it once per process, before rclpy.init."""
    for var in PROFILE_VARS:
        os.environ[var] = str(FASTDDS_PROFILE)


def console_script(name: str) -> str:
    """Path of an installed console script (the venv's bin first, then PATH)."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"console script '{name}' not found: run `make setup` first")
    return found


def write_params(out_dir: Path, model_path: Path) -> tuple[Path, Path]:
    """Node and evaluator parameter files: the shipped YAMLs with the demo's values filled in."""
    node = yaml.safe_load((REPO_ROOT / "config" / "depth_fusion.yaml").read_text())
    node_params = node["/**"]["ros__parameters"]
    # input_qos stays `auto`: the player publishes reliable, so the node subscribes reliable and
    # no frame of the evaluation is lost in transport.
    # Wall-clock time, not /clock: with use_sim_time the node used to miss the first
    # camera_infos because its input_qos auto re-check ran on ROS time, which does not advance
    # until the player publishes /clock, and the player waits for subscribers first (fixed:
    # that timer is on a steady clock now). The demo keeps wall time: its figures are metrics.
    node_params.update(model_path=str(model_path.resolve()), backend="onnxruntime", device="cpu")
    evaluator = yaml.safe_load((REPO_ROOT / "config" / "evaluator.yaml").read_text())
    eval_params = evaluator["/**"]["ros__parameters"]
    eval_params.update(csv_path=str((out_dir / "live_metrics.csv").resolve()),
                       summary_path=str((out_dir / "live_summary.md").resolve()))
    node_file, eval_file = out_dir / "node_params.yaml", out_dir / "evaluator_params.yaml"
    node_file.write_text(yaml.safe_dump(node))
    eval_file.write_text(yaml.safe_dump(evaluator))
    return node_file, eval_file


@dataclass
class Listener:
    """What the demo sees on the ROS graph while the bag plays."""

    depth_stamps: dict[str, list[float]] = field(default_factory=lambda: {"thermal": [], "rgb": []})
    clouds: dict[str, object] = field(default_factory=dict)
    node_status: dict[str, str] = field(default_factory=dict)
    live_metrics: int = 0


def _subscribe(node, listener: Listener, cloud_at: int) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image, PointCloud2

    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    for view in ("thermal", "rgb"):
        def on_depth(msg, view=view):
            listener.depth_stamps[view].append(time.monotonic())

        def on_cloud(msg, view=view):
            # Keep the newest cloud until mid-sequence, then hold that one (a typical frame).
            if view not in listener.clouds or len(listener.depth_stamps[view]) < cloud_at:
                listener.clouds[view] = msg
        node.create_subscription(Image, f"{view}/depth/image", on_depth, qos)
        node.create_subscription(PointCloud2, f"{view}/depth/points", on_cloud, qos)

    def on_diag(msg):
        for status in msg.status:
            if status.name.endswith(": depth fusion"):  # the node's status, not the evaluator's
                listener.node_status = {kv.key: kv.value for kv in status.values}
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    node.create_subscription(DiagnosticArray, "depth_fusion_evaluator/metrics",
                             lambda _msg: setattr(listener, "live_metrics", listener.live_metrics + 1), 10)


def _stop(proc: subprocess.Popen, name: str, timeout_s: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            print(f"  {name} did not stop on SIGINT within {timeout_s:.0f} s and was killed")


def run_ros_stage(bag: Path, model_path: Path, out_dir: Path, *, n_frames: int,
                  rate: float = 1.0, tail_s: float = 3.0) -> dict:
    """Play `bag` through the node and evaluator; returns figures for the summary.

    Raises RuntimeError naming the process that failed (with its log file).
    """
    import rclpy

    out_dir.mkdir(parents=True, exist_ok=True)
    node_params, eval_params = write_params(out_dir, model_path)
    use_fastdds_profile()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    logs = {name: (out_dir / f"{name}.log").open("w") for name in ("node", "evaluator", "player")}
    procs: dict[str, subprocess.Popen] = {}
    rclpy.init()
    node = rclpy.create_node("depth_fusion_demo_listener")
    listener = Listener()
    _subscribe(node, listener, cloud_at=max(1, n_frames // 2))
    try:
        procs["evaluator"] = subprocess.Popen(
            [console_script("depth_fusion_evaluator"), "--ros-args", "--params-file", str(eval_params)],
            stdout=logs["evaluator"], stderr=subprocess.STDOUT, env=env)
        procs["node"] = subprocess.Popen(
            [console_script("depth_fusion_node"), "--ros-args", "--params-file", str(node_params)],
            stdout=logs["node"], stderr=subprocess.STDOUT, env=env)
        procs["player"] = subprocess.Popen(
            [console_script("depth_fusion_bag_player"), str(bag), "--rate", str(rate),
             "--wait-for-subscribers", "1", "--wait-timeout", "120", "--quiet",
             # discovery is two-sided: give the subscribers a moment to match the player too
             "--start-delay", "3.0"],
            stdout=logs["player"], stderr=subprocess.STDOUT, env=env)
        while procs["player"].poll() is None:
            rclpy.spin_once(node, timeout_sec=0.05)
            for name in ("node", "evaluator"):
                if procs[name].poll() is not None:
                    raise RuntimeError(f"{name} exited with code {procs[name].returncode} while the bag "
                                       f"played; see {out_dir / (name + '.log')}")
        if procs["player"].returncode != 0:
            raise RuntimeError(f"the bag player failed (code {procs['player'].returncode}); "
                               f"see {out_dir / 'player.log'}")
        end = time.monotonic() + tail_s
        while time.monotonic() < end:  # the last pairs are still in flight
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        for name in ("node", "evaluator", "player"):
            if name in procs:
                _stop(procs[name], name)
        node.destroy_node()
        rclpy.shutdown()
        for handle in logs.values():
            handle.close()
    figures = _figures(listener, out_dir, n_frames)
    print("live evaluation: " + ", ".join(f"{view} {n} of {n_frames} bag frames" for view, n
                                           in figures["frames_evaluated"].items()), flush=True)
    return figures


def evaluated_frames(csv_path: Path) -> dict[str, int]:
    """Frames the evaluator scored per view (rows of its per-frame CSV)."""
    import csv

    counts = {"thermal": 0, "rgb": 0}
    if csv_path.exists():
        with csv_path.open() as handle:
            for row in csv.DictReader(handle):
                counts[row["view"]] = counts.get(row["view"], 0) + 1
    return counts


def _figures(listener: Listener, out_dir: Path, n_frames: int) -> dict:
    stamps = listener.depth_stamps["thermal"]
    rate = 0.0
    if len(stamps) >= 2:
        rate = (len(stamps) - 1) / max(stamps[-1] - stamps[0], 1e-9)
    figures = {
        "depth_images_received": {view: len(s) for view, s in listener.depth_stamps.items()},
        "output_pairs_per_s": rate,
        "node_diagnostics": listener.node_status,
        "evaluator_messages": listener.live_metrics,
        "bag_frames": n_frames,
        "frames_evaluated": evaluated_frames(out_dir / "live_metrics.csv"),
        "clouds": listener.clouds,
    }
    summary = out_dir / "live_summary.md"
    figures["live_summary_md"] = summary.read_text() if summary.exists() else ""
    (out_dir / "ros_figures.json").write_text(json.dumps(
        {k: v for k, v in figures.items() if k != "clouds"}, indent=2))
    return figures


def live_means(csv_path: Path) -> dict[str, dict[str, dict[str, float]]]:
    """Mean metrics per view and mode from the evaluator's per-frame CSV."""
    import csv

    from depth_fusion_ros.metrics import METRIC_NAMES

    rows_by_view: dict[str, list[dict[str, str]]] = {}
    with csv_path.open() as handle:
        for row in csv.DictReader(handle):
            rows_by_view.setdefault(row["view"], []).append(row)
    out: dict[str, dict[str, dict[str, float]]] = {"metric": {}, "median": {}}
    for view, rows in rows_by_view.items():
        for mode in out:
            means = {m: float(np.mean([float(r[f"{mode}_{m}"]) for r in rows])) for m in METRIC_NAMES}
            out[mode][view] = {**means, "frames": len(rows)}
    return out
