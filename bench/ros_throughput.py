"""End-to-end pairs/s through ROS: the real node process with a model, fed at a set rate.

Starts `depth_fusion_node` (console script) with the given model on an isolated ROS domain,
publishes thermal mono16 640x256 + RGB rgb8 1224x384 pairs (and camera_infos) at --rate Hz for
--seconds, and counts the depth images received per view; also prints the node's own
/diagnostics stage timings.

Usage: python bench/ros_throughput.py --model tiny.onnx [--rate 30] [--seconds 10] [--device cpu]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _start_node(model: str, device: str, tmp: Path) -> subprocess.Popen:
    params = tmp / "params.yaml"
    params.write_text(f'/**:\n  ros__parameters:\n    model_path: "{model}"\n'
                      f'    device: "{device}"\n    input_qos: "reliable"\n')
    script = Path(sys.executable).parent / "depth_fusion_node"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "depth_fusion_ros.node"]
    return subprocess.Popen(cmd + ["--ros-args", "--params-file", str(params),
                                   "-r", "__ns:=/bench"],
                            stdout=open(tmp / "node.log", "w"), stderr=subprocess.STDOUT)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help=".onnx/.engine/.pt2 with its sidecar")
    parser.add_argument("--rate", type=float, default=30.0, help="input pairs per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 90 + 5))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    from depth_fusion_ros.ros_image import numpy_to_image

    tmp = Path(tempfile.mkdtemp(prefix="ros_throughput_"))
    proc = _start_node(str(Path(args.model).resolve()), args.device, tmp)
    rclpy.init()
    node = rclpy.create_node("throughput_bench", namespace="bench")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {t: node.create_publisher(Image if "image" in t else CameraInfo, t, qos)
            for t in ("thermal/image_raw", "rgb/image_raw", "thermal/camera_info",
                      "rgb/camera_info")}
    received = {"thermal": [], "rgb": []}
    diag = []
    for view in received:
        node.create_subscription(Image, f"{view}/depth/image",
                                 lambda m, v=view: received[v].append(time.monotonic()), qos)
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diag.append(m), qos)
    rng = np.random.default_rng(0)
    thermal = numpy_to_image(rng.integers(3000, 6000, (256, 640), dtype=np.uint16), "mono16")
    rgb = numpy_to_image(rng.integers(0, 256, (384, 1224, 3), dtype=np.uint8), "rgb8")
    infos = {"thermal/camera_info": (640, 256, 400.0), "rgb/camera_info": (1224, 384, 800.0)}
    try:
        deadline = time.monotonic() + 120.0
        while pubs["thermal/image_raw"].get_subscription_count() == 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"node did not start:\n{(tmp / 'node.log').read_text()}")
            rclpy.spin_once(node, timeout_sec=0.1)
        for topic, (w, h, f) in infos.items():
            pubs[topic].publish(CameraInfo(width=w, height=h, k=[f, 0, w / 2, 0, f, h / 2, 0, 0, 1]))
        start = time.monotonic()
        sent = 0
        while time.monotonic() - start < args.seconds:
            stamp = node.get_clock().now().to_msg()
            thermal.header.stamp = rgb.header.stamp = stamp
            pubs["thermal/image_raw"].publish(thermal)
            pubs["rgb/image_raw"].publish(rgb)
            sent += 1
            next_s = start + sent / args.rate
            while time.monotonic() < next_s:
                rclpy.spin_once(node, timeout_sec=max(0.0, next_s - time.monotonic()))
        end = time.monotonic()
        settle = end + 2.0
        while time.monotonic() < settle:
            rclpy.spin_once(node, timeout_sec=0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    window = [t for t in received["thermal"] if start + 1.0 <= t <= end]  # skip the ramp-up
    rate = len(window) / max(end - start - 1.0, 1e-9)
    print(f"model {args.model} device {args.device}: sent {sent} pairs at {sent / (end - start):.1f}"
          f" Hz; received {len(received['thermal'])} thermal / {len(received['rgb'])} RGB depth "
          f"images; steady output {rate:.2f} pairs/s")
    if diag:
        values = {kv.key: kv.value for s in diag[-1].status if "/bench/" in s.name
                  for kv in s.values}
        print("node stages (median ms): " + ", ".join(
            f"{k} {values.get(k + '_ms')}" for k in ("preprocess", "inference", "postprocess",
                                                      "publish"))
              + f"; pairs dropped {values.get('pairs_dropped')}")
    node.destroy_node()
    rclpy.try_shutdown()


if __name__ == "__main__":
    main()
