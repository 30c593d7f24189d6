"""One depth_fusion_node run over real DDS, measured from outside (used by bench/gpu_check.py).

Starts the node process with a parameter file, publishes thermal mono16 640x256 + RGB rgb8
1224x384 pairs and their camera_infos at a fixed rate *from the moment the process starts*, and
measures:
- start-up: process start to the first depth image received (imports, model load or engine
  build/cache hit, warm-up, discovery, first inference);
- throughput: thermal depth images per second in the steady window (after the first second);
- latency: the node's own /diagnostics medians (`latency_ms`: input stamp to publish,
  `inference_ms`), plus stamp to receipt here.

Needs rclpy, sensor_msgs, diagnostic_msgs and numpy; imports them only when `run_node` is called.
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import stop_process

REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclasses.dataclass
class NodeRun:
    """What one run measured; `error` is set (and figures may be None) when it failed."""

    startup_s: float | None = None
    sent_hz: float | None = None
    pairs_per_s: float | None = None
    node_latency_ms: float | None = None  # node /diagnostics latency_ms (stamp -> publish)
    node_inference_ms: float | None = None  # node /diagnostics inference_ms
    receipt_latency_ms: float | None = None  # stamp -> receipt here, median
    diagnostics: dict = dataclasses.field(default_factory=dict)
    error: str = ""
    log_tail: str = ""


def node_command() -> tuple[list[str], dict]:
    """The node module of this checkout (PYTHONPATH first), like every other part of the check:
    an installed copy left behind by an older `make setup` would measure stale code."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return [sys.executable, "-m", "depth_fusion_ros.node"], env


def _yaml_value(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _start(params: dict, workdir: Path, namespace: str) -> tuple[subprocess.Popen, Path]:
    path = workdir / f"{namespace}.yaml"
    lines = ["/**:", "  ros__parameters:"] + [f"    {k}: {_yaml_value(v)}" for k, v in
                                              params.items()]
    path.write_text("\n".join(lines) + "\n")
    log = workdir / f"{namespace}.log"
    cmd, env = node_command()
    with log.open("w") as out:  # the child keeps its own descriptor
        proc = subprocess.Popen(cmd + ["--ros-args", "--params-file", str(path),
                                       "-r", f"__ns:=/{namespace}"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
    return proc, log


def _messages():
    """Seeded camera-like inputs and camera_infos (pinhole, no distortion, P = [K|0])."""
    import numpy as np
    from sensor_msgs.msg import CameraInfo

    from depth_fusion_ros.ros_image import numpy_to_image

    rng = np.random.default_rng(0)
    thermal = numpy_to_image(rng.integers(3000, 6000, (256, 640), dtype=np.uint16), "mono16")
    rgb = numpy_to_image(rng.integers(0, 256, (384, 1224, 3), dtype=np.uint8), "rgb8")
    infos = {}
    for view, (width, height, focal) in {"thermal": (640, 256, 400.0),
                                         "rgb": (1224, 384, 800.0)}.items():
        k = [focal, 0.0, width / 2, 0.0, focal, height / 2, 0.0, 0.0, 1.0]
        info = CameraInfo(width=width, height=height, k=k, distortion_model="plumb_bob",
                          d=[0.0] * 5)
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [k[0], 0.0, k[2], 0.0, 0.0, k[4], k[5], 0.0, 0.0, 0.0, 1.0, 0.0]
        info.header.frame_id = f"{view}_optical"
        infos[view] = info
    thermal.header.frame_id, rgb.header.frame_id = "thermal_optical", "rgb_optical"
    return {"thermal": thermal, "rgb": rgb}, infos


def run_node(params: dict, workdir: Path, *, namespace: str, rate_hz: float, seconds: float,
             timeout_s: float) -> NodeRun:
    """Runs the node with `params` (model_path, backend, device, ...) and measures it.

    Args:
        seconds: steady input after the first depth image; timeout_s: give up (and kill the
            node) if no depth image arrives within this many seconds of the start.
    """
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    os.environ.setdefault("ROS_DOMAIN_ID", str(os.getpid() % 90 + 5))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    params = {"input_qos": "reliable", "output_qos": "reliable", "publish_points": False,
              **params}
    start = time.monotonic()
    proc, log = _start(params, workdir, namespace)
    context = rclpy.Context()
    rclpy.init(context=context)
    run = NodeRun()
    try:
        node = rclpy.create_node(f"probe_{namespace}", namespace=namespace, context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pubs = {f"{v}/{t}": node.create_publisher(Image if t == "image_raw" else CameraInfo,
                                                  f"{v}/{t}", qos)
                for v in ("thermal", "rgb") for t in ("image_raw", "camera_info")}
        received: list[tuple[float, int]] = []  # (monotonic receipt, receipt - stamp ns)

        def on_depth(msg: Image) -> None:
            stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            received.append((time.monotonic(), time.time_ns() - stamp_ns))

        node.create_subscription(Image, "thermal/depth/image", on_depth, qos)
        diagnostics: list[dict] = []

        def on_diag(msg: DiagnosticArray) -> None:
            for status in msg.status:
                if status.name.startswith(f"/{namespace}/depth_fusion"):
                    diagnostics.append({kv.key: kv.value for kv in status.values})

        node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, qos)
        images, infos = _messages()
        _feed(run, proc, executor, pubs, images, infos, received, start, rate_hz, seconds,
              timeout_s)
        if not run.error:
            _settle(executor, diagnostics)
            _summarise(run, received, diagnostics)
    finally:
        stop_process(proc, timeout_s=20.0)
        rclpy.shutdown(context=context)
        run.log_tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
    return run


def _feed(run: NodeRun, proc, executor, pubs, images, infos, received, start: float,
          rate_hz: float, seconds: float, timeout_s: float) -> None:
    """Publishes at `rate_hz` until the first depth arrives, then for `seconds` more."""
    sent, sent_since, end, window_start = 0, 0, None, start
    while True:
        now = time.monotonic()
        if received and end is None:
            run.startup_s = received[0][0] - start
            end, window_start = received[0][0] + seconds, now
        if end is not None and now >= end:
            break
        if end is None and now - start > timeout_s:
            run.error = f"no depth image within {timeout_s:.0f} s of the start"
            return
        if proc.poll() is not None:
            run.error = f"the node exited with code {proc.returncode}"
            return
        stamp = time.time_ns()
        for view in ("thermal", "rgb"):
            images[view].header.stamp.sec, images[view].header.stamp.nanosec = divmod(
                stamp, 1_000_000_000)
            infos[view].header.stamp = images[view].header.stamp
            pubs[f"{view}/camera_info"].publish(infos[view])
            pubs[f"{view}/image_raw"].publish(images[view])
        sent += 1
        if end is not None:
            sent_since += 1
        next_s = start + sent / rate_hz
        while time.monotonic() < next_s:
            executor.spin_once(timeout_sec=max(0.0, next_s - time.monotonic()))
    run.sent_hz = sent_since / max(time.monotonic() - window_start, 1e-9)


def _settle(executor, diagnostics: list, wait_s: float = 2.5) -> None:
    """Lets the last outputs and one fresh /diagnostics status arrive."""
    before = len(diagnostics)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline and len(diagnostics) <= before:
        executor.spin_once(timeout_sec=0.1)


def _summarise(run: NodeRun, received: list, diagnostics: list) -> None:
    first = received[0][0]
    window = [t for t, _ in received if t >= first + 1.0]  # skip the ramp-up second
    if len(window) >= 2:
        run.pairs_per_s = (len(window) - 1) / max(window[-1] - window[0], 1e-9)
    run.receipt_latency_ms = statistics.median(lag / 1e6 for _, lag in received)
    if diagnostics:
        values = run.diagnostics = diagnostics[-1]
        for field, key in (("node_latency_ms", "latency_ms"),
                           ("node_inference_ms", "inference_ms")):
            try:
                setattr(run, field, float(values[key]))
            except (KeyError, ValueError):
                pass
