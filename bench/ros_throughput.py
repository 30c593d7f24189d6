"""End-to-end pairs/s through ROS: the real node process with a model, fed at a set rate.

Starts `depth_fusion_node` (console script) with the given model and otherwise default
parameters on an isolated ROS domain, publishes thermal mono16 640x256 + RGB rgb8 1224x384 pairs
(and camera_infos) at --rate Hz for --seconds, and reports:
- pairs processed (the node's /diagnostics `pairs_processed`) out of pairs sent, the node's own
  drops (`pairs_dropped`: a newer pair replaced one the worker had no time for) and pairs lost
  before pairing (sent - matched: lost in transport or unmatched);
- depth images received here, and their stamp-to-receive latency (median, p99, max);
- the node's per-stage medians.

Both processes use the Fast DDS profile --profile (default config/fastdds.xml, as the README tells
users to; '' = Fast DDS built-ins) and the camera side publishes with --qos (reliable or
best_effort, what camera drivers use). `--param name=value` overrides a node parameter;
`--ab name=v1,v2` compares values of one parameter in alternating runs (v1, v2, v1, v2, ... for
--repeats rounds; one table, a setting column, and the mean share processed per value), which is
how settings are compared on a shared, noisy machine.

Usage: python bench/ros_throughput.py --model tiny.onnx [--rate 30] [--seconds 15]
    [--qos reliable|best_effort] [--profile config/fastdds.xml] [--clouds] [--param k=v ...]
    [--ab name=v1,v2] [--repeats N] [--label TEXT] [--record]
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO_ROOT, record, stop_process

PROFILE_VARS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
INPUT_TOPICS = ("thermal/image_raw", "rgb/image_raw", "thermal/camera_info", "rgb/camera_info")


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """User + system CPU time so far (Linux /proc) of a process (all threads) or one thread.

    The node's main thread (thread id = pid) is its executor: its time is what taking messages
    and running callbacks costs.
    """
    path = f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _start_node(args, tmp: Path) -> subprocess.Popen:
    params = tmp / "params.yaml"
    lines = ["/**:", "  ros__parameters:", f'    model_path: "{Path(args.model).resolve()}"',
             f'    device: "{args.device}"']
    lines += [f"    {item.split('=', 1)[0]}: {item.split('=', 1)[1]}" for item in args.param]
    params.write_text("\n".join(lines) + "\n")
    script = Path(sys.executable).parent / "depth_fusion_node"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "depth_fusion_ros.node"]
    return subprocess.Popen(cmd + ["--ros-args", "--params-file", str(params),
                                   "-r", "__ns:=/bench"],
                            stdout=open(tmp / "node.log", "w"), stderr=subprocess.STDOUT)


class Feeder:
    """The camera side and the listener, in this process."""

    def __init__(self, qos_name: str):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from depth_fusion_ros.ros_image import numpy_to_image

        rclpy.init()
        self.node = rclpy.create_node("throughput_bench", namespace="bench")
        reliability = (ReliabilityPolicy.RELIABLE if qos_name == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        cam_qos = QoSProfile(depth=5, reliability=reliability)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {t: self.node.create_publisher(Image if "image" in t else CameraInfo, t,
                                                   reliable if "info" in t else cam_qos)
                     for t in INPUT_TOPICS}
        self.received: dict[str, list[tuple[float, int]]] = {"thermal": [], "rgb": []}
        self.diag: list = []
        for view in self.received:
            self.node.create_subscription(Image, f"{view}/depth/image",
                                          lambda m, v=view: self._on_depth(v, m), reliable)
        self.clouds = 0
        self.cloud_type = PointCloud2
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diag.append, reliable)
        rng = np.random.default_rng(0)
        self.thermal = numpy_to_image(rng.integers(3000, 6000, (256, 640), dtype=np.uint16),
                                      "mono16")
        self.rgb = numpy_to_image(rng.integers(0, 256, (384, 1224, 3), dtype=np.uint8), "rgb8")
        self.infos = {}
        for topic, (w, h, f) in {"thermal/camera_info": (640, 256, 400.0),
                                 "rgb/camera_info": (1224, 384, 800.0)}.items():
            k = [f, 0, w / 2, 0, f, h / 2, 0, 0, 1]
            self.infos[topic] = CameraInfo(width=w, height=h, k=k,
                                           p=[f, 0, w / 2, 0, 0, f, h / 2, 0, 0, 0, 1, 0])

    def subscribe_clouds(self) -> None:
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for view in self.received:
            self.node.create_subscription(self.cloud_type, f"{view}/depth/points",
                                          lambda _m: setattr(self, "clouds", self.clouds + 1), qos)

    def _on_depth(self, view: str, msg) -> None:
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.received[view].append((time.monotonic(), time.time_ns() - stamp_ns))

    def spin_for(self, seconds: float) -> None:
        import rclpy

        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            rclpy.spin_once(self.node, timeout_sec=left)

    def wait_for_node(self, proc: subprocess.Popen, log: Path) -> None:
        deadline = time.monotonic() + 120.0
        while not all(p.get_subscription_count() for p in self.pubs.values()):
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"node did not start:\n{log.read_text()}")
            self.spin_for(0.1)
        self.spin_for(1.0)  # discovery is two-sided: let the node match these writers too

    def feed(self, rate_hz: float, seconds: float) -> tuple[int, float, float]:
        """Publish pairs at rate_hz; returns (sent, start, end) (monotonic s)."""
        for topic, info in self.infos.items():
            self.pubs[topic].publish(info)
        self.spin_for(0.2)
        start, sent = time.monotonic(), 0
        while time.monotonic() - start < seconds:
            stamp = self.node.get_clock().now().to_msg()
            self.thermal.header.stamp = self.rgb.header.stamp = stamp
            self.pubs["thermal/image_raw"].publish(self.thermal)
            self.pubs["rgb/image_raw"].publish(self.rgb)
            sent += 1
            self.spin_for(start + sent / rate_hz - time.monotonic())
        return sent, start, time.monotonic()

    def node_values(self) -> dict[str, str]:
        for msg in reversed(self.diag):
            for status in msg.status:
                if status.name.startswith("/bench/"):
                    return {kv.key: kv.value for kv in status.values}
        return {}


def run_once(args) -> dict:
    """One node process fed for args.seconds; returns the figures."""
    tmp = Path(tempfile.mkdtemp(prefix="ros_throughput_"))
    proc = _start_node(args, tmp)
    import rclpy

    feeder = Feeder(args.qos)
    try:
        if args.clouds:
            feeder.subscribe_clouds()
        feeder.wait_for_node(proc, tmp / "node.log")
        cpu0, exec0 = cpu_seconds(proc.pid), cpu_seconds(proc.pid, proc.pid)
        sent, start, end = feeder.feed(args.rate, args.seconds)
        feeder.spin_for(0.5)  # pairs in flight
        cpu_s = cpu_seconds(proc.pid) - cpu0
        exec_s = cpu_seconds(proc.pid, proc.pid) - exec0
        feeder.spin_for(2.5)  # a fresh /diagnostics
    finally:
        stop_process(proc)
    values = feeder.node_values()
    latencies_ms = sorted(lat / 1e6 for _, lat in feeder.received["thermal"])
    steady = [t for t, _ in feeder.received["thermal"] if start + 1.0 <= t <= end]
    feeder.node.destroy_node()
    rclpy.try_shutdown()
    return {"sent": sent, "seconds": end - start, "values": values, "latencies_ms": latencies_ms,
            "received": len(feeder.received["thermal"]), "clouds": feeder.clouds, "cpu_s": cpu_s,
            "exec_s": exec_s,
            "steady_rate": len(steady) / max(end - start - 1.0, 1e-9)}


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def processed_share(run: dict) -> float:
    """Percent of the pairs sent that the node processed."""
    return 100.0 * int(run["values"].get("pairs_processed", 0)) / max(run["sent"], 1)


def describe(run: dict) -> str:
    """One table row: processed share, drops, latency and stage medians."""
    v, lat = run["values"], run["latencies_ms"]
    processed, sent = int(v.get("pairs_processed", 0)), run["sent"]
    matched = int(v.get("pairs_matched", 0))
    stages = "/".join(v.get(f"{s}_ms", "?") for s in ("preprocess", "inference", "postprocess",
                                                       "publish"))
    median = statistics.median(lat) if lat else float("nan")
    return (f"| {sent} | {processed} ({processed_share(run):.1f} %) | "
            f"{v.get('pairs_dropped', '?')} | {sent - matched} | {run['steady_rate']:.1f} | "
            f"{median:.1f} | {_percentile(lat, 0.99):.1f} | {lat[-1] if lat else float('nan'):.1f} "
            f"| {stages} | {1e3 * run['cpu_s'] / max(processed, 1):.1f} | "
            f"{1e3 * run['exec_s'] / max(sent, 1):.2f} |")


HEADER = ("| sent | processed | dropped by node | lost before pairing | pairs/s | latency median "
          "ms | p99 ms | max ms | stages ms (pre/infer/post/publish) | node CPU ms per processed "
          "pair | executor thread CPU ms per sent pair |\n|---|---|---|---|---|---|---|---|---|---|---|")


def ab_settings(ab: str) -> list[str]:
    """'name=v1,v2' -> ['name=v1', 'name=v2']; '' -> [''] (one setting: the defaults)."""
    if not ab:
        return [""]
    name, sep, values = ab.partition("=")
    choices = [v.strip() for v in values.split(",") if v.strip()]
    if not sep or not name.strip() or len(choices) < 2:
        raise SystemExit(f"--ab {ab!r}: expected NAME=V1,V2[,...] with at least two values")
    return [f"{name.strip()}={v}" for v in choices]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help=".onnx/.engine/.pt2 with its sidecar")
    parser.add_argument("--rate", type=float, default=30.0, help="input pairs per second")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--qos", choices=("reliable", "best_effort"), default="reliable",
                        help="QoS the camera side publishes images with")
    parser.add_argument("--profile", default=str(REPO_ROOT / "config" / "fastdds.xml"),
                        help="Fast DDS XML profile for both processes ('' = built-ins)")
    parser.add_argument("--clouds", action="store_true", help="also subscribe both clouds")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="node parameter override (YAML value), repeatable")
    parser.add_argument("--ab", default="", metavar="NAME=V1,V2[,...]",
                        help="node parameter compared in alternating runs")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--label", default="", help="added to the title (e.g. what code ran)")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 90 + 5))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    for var in PROFILE_VARS:  # before rclpy.init: Fast DDS reads it once per process
        if args.profile:
            os.environ[var] = str(Path(args.profile).resolve())
        else:
            os.environ.pop(var, None)
    settings = ab_settings(args.ab)
    rows, shares = [], {setting: [] for setting in settings}
    for _ in range(args.repeats):
        for setting in settings:  # alternating: drift on the machine hits every value alike
            run_args = copy.copy(args)
            run_args.param = args.param + ([setting] if setting else [])
            run = run_once(run_args)
            shares[setting].append(processed_share(run))
            rows.append((f"| {setting} " if setting else "") + describe(run))
            print(rows[-1], file=sys.stderr, flush=True)  # progress; the table follows
    title = ((f"{args.label}: " if args.label else "")
             + f"model {Path(args.model).name}, {args.rate:g} Hz, camera QoS {args.qos}, profile "
             f"{Path(args.profile).name if args.profile else 'none (Fast DDS built-ins)'}"
             + (", clouds subscribed" if args.clouds else "")
             + (f", params {' '.join(args.param)}" if args.param else ""))
    header = ("| setting " + HEADER.replace("\n", "\n|---")) if args.ab else HEADER
    text = f"{title}\n\n{header}\n" + "\n".join(rows)
    if args.ab:
        text += "\n\nmean share of pairs processed: " + ", ".join(
            f"{setting} {statistics.mean(values):.1f} %" for setting, values in shares.items())
    if args.record:
        record("End-to-end pairs through ROS (node process, ONNX Runtime CPU)", text,
               "python bench/ros_throughput.py " + " ".join(sys.argv[1:]))
    else:
        print("\n" + text)


if __name__ == "__main__":
    main()
