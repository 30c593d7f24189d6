"""What publishing one organised cloud costs the node, against what node_overhead.py charges.

`bench/node_overhead.py` stands in `rclpy.serialization.serialize_message` for publishing. This
measures, in one process and one run, per 640x256 xyz+intensity cloud (2.6 MB, the node's
message with its reused buffer): serialize_message; `Publisher.publish(msg)` with no subscriber;
`publish(msg)` and `publish(bytes)` (pre-serialised CDR, rclpy's publish_raw) with a subscriber
in another process (raw subscription, so its own deserialisation does not load this one); and a
plain memcpy of the same size for scale. Both processes use --profile (config/fastdds.xml, as
the README tells users) and the node's malloc tuning. Output reliability: --qos (the node's
default output_qos is reliable).

Usage: python bench/publish_cost.py [--runs 200] [--qos reliable|best_effort] [--record]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import REPO_ROOT, record, stop_process, times_ms

PROFILE_VARS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
TOPIC = "publish_cost/points"


def _qos(name: str):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    reliability = ReliabilityPolicy.RELIABLE if name == "reliable" else \
        ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(depth=5, reliability=reliability)


def subscriber(qos_name: str) -> None:
    """The other process: a raw subscription that takes every message, until terminated."""
    import rclpy
    from sensor_msgs.msg import PointCloud2

    rclpy.init()
    node = rclpy.create_node("publish_cost_sub")
    node.create_subscription(PointCloud2, TOPIC, lambda _raw: None, _qos(qos_name), raw=True)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--qos", choices=("reliable", "best_effort"), default="reliable")
    parser.add_argument("--profile", default=str(REPO_ROOT / "config" / "fastdds.xml"))
    parser.add_argument("--record", action="store_true")
    parser.add_argument("--subscriber", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in PROFILE_VARS:
        os.environ[name] = args.profile
    if args.subscriber:
        subscriber(args.qos)
        return

    import rclpy
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import Header

    from depth_fusion_ros.clouds import empty_cloud
    from depth_fusion_ros.malloc_tuning import keep_large_buffers_in_heap

    keep_large_buffers_in_heap()  # as depth_fusion_node's main() does
    rclpy.init()
    node = rclpy.create_node("publish_cost_pub")
    pub = node.create_publisher(PointCloud2, TOPIC, _qos(args.qos))
    msg, points = empty_cloud(256, 640, "intensity", Header(frame_id="thermal"))
    points[...] = np.random.default_rng(0).random(points.shape, dtype=np.float32)
    raw = serialize_message(msg)
    rows = {"serialize_message (what node_overhead.py charges)":
            times_ms(lambda: serialize_message(msg), args.runs, warmup=5)}
    rows["publish(msg), no subscriber"] = times_ms(lambda: pub.publish(msg), args.runs, warmup=5)
    proc = subprocess.Popen([sys.executable, __file__, "--subscriber", "--qos", args.qos,
                             "--profile", args.profile])
    try:
        deadline = time.monotonic() + 30.0
        while pub.get_subscription_count() == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("the subscriber process did not match within 30 s")
            time.sleep(0.1)
        time.sleep(1.0)  # discovery is two-sided
        rows["publish(msg), subscriber in another process"] = times_ms(
            lambda: pub.publish(msg), args.runs, warmup=5)
        rows["publish(bytes) pre-serialised, subscriber in another process"] = times_ms(
            lambda: pub.publish(raw), args.runs, warmup=5)
    finally:
        stop_process(proc)
    src = np.ones(len(raw), np.uint8)
    dst = np.empty_like(src)
    rows["memcpy of the same bytes"] = times_ms(lambda: np.copyto(dst, src), args.runs, warmup=5)
    base = statistics.median(rows["serialize_message (what node_overhead.py charges)"])
    lines = [f"one 640x256 xyz+intensity cloud ({len(raw) / 1e6:.2f} MB), {args.runs} runs, "
             f"{args.qos} output, profile {Path(args.profile).name if args.profile else 'none'}",
             "", "| step | median ms | vs serialize_message |", "|---|---:|---:|"]
    for name, times in rows.items():
        median = statistics.median(times)
        lines.append(f"| {name} | {median:.3f} | {median / base:.2f}x |")
    table = "\n".join(lines)
    if args.record:  # record() prints it too
        record("Publishing one cloud vs the serialisation node_overhead.py charges", table,
               "bench/publish_cost.py " + " ".join(sys.argv[1:]))
    else:
        print(table)
    node.destroy_node()
    rclpy.shutdown()


if __name__ == "__main__":
    main()
