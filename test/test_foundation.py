"""Foundation checks: the runtime package never loads torch, and rclpy works over real DDS."""
from __future__ import annotations

import pkgutil
import subprocess
import sys
import time

import numpy as np

import depth_fusion_ros


def _runtime_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(depth_fusion_ros.__path__, "depth_fusion_ros."))


def test_runtime_import_does_not_load_torch():
    modules = _runtime_modules()
    assert "depth_fusion_ros.preprocess" in modules
    code = (
        "import importlib, sys\n"
        f"mods = {modules!r}\n"
        "for m in mods: importlib.import_module(m)\n"
        "assert 'torch' not in sys.modules, [m for m in sys.modules if m.startswith('torch')][:5]\n"
        "print(len(mods))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) == len(modules)


def test_rclpy_image_round_trip_over_dds():
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    rclpy.init()
    try:
        pub_node = rclpy.create_node("smoke_pub")
        sub_node = rclpy.create_node("smoke_sub")
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        received: list[Image] = []
        sub_node.create_subscription(Image, "smoke/image", received.append, qos)
        pub = pub_node.create_publisher(Image, "smoke/image", qos)
        executor = rclpy.executors.SingleThreadedExecutor()
        executor.add_node(pub_node)
        executor.add_node(sub_node)
        pixels = np.arange(12, dtype=np.uint16).reshape(3, 4)
        msg = Image(height=3, width=4, encoding="mono16", step=8, data=pixels.tobytes())
        msg.header.frame_id = "thermal_optical"
        deadline = time.monotonic() + 20.0
        while not received and time.monotonic() < deadline:
            pub.publish(msg)
            executor.spin_once(timeout_sec=0.1)
        assert received, "no Image arrived over DDS within 20 s"
        got = received[0]
        assert (got.height, got.width, got.encoding, got.header.frame_id) == (3, 4, "mono16", "thermal_optical")
        np.testing.assert_array_equal(np.frombuffer(bytes(got.data), np.uint16).reshape(3, 4), pixels)
    finally:
        rclpy.shutdown()
