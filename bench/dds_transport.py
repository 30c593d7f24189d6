"""Camera images through DDS between two processes: how many arrive, per transport setup.

A publisher process sends --count rgb8 1224x384 Images (an MS2 RGB frame, 1.4 MB) at --rate Hz
and a subscriber process counts what arrives (and the stamp-to-receive latency); nothing else
runs in them. Each setup is a fresh pair of processes on its own ROS domain:

| setup | publisher | subscriber |
|---|---|---|
| default | built-in transports, best effort | same |
| LARGE_DATA | FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA | same |
| SHM-only | FASTDDS_BUILTIN_TRANSPORTS=SHM | same |
| UDP-only | FASTDDS_BUILTIN_TRANSPORTS=UDPv4 (what crosses a network) | same |
| profile-both | config/fastdds.xml | config/fastdds.xml |
| profile-subscriber-only | built-in | config/fastdds.xml |
| reliable | built-in, reliable | built-in, reliable |
| profile-both-reliable | config/fastdds.xml, reliable | config/fastdds.xml, reliable |
| UDP-only-reliable | UDPv4 only, reliable | same |

    python bench/dds_transport.py [--rate 30] [--count 150] [--repeats 1] [--only NAME,...]
        [--busy-ms MS] [--profile config/fastdds.xml] [--record]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPO_ROOT, record

TOPIC = "/dds_bench/image"
PROFILE_VARS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


def setups(profile: Path) -> dict[str, tuple[dict, dict, bool]]:
    """name -> (publisher env, subscriber env, reliable)."""
    prof = {var: str(profile) for var in PROFILE_VARS}
    return {
        "default": ({}, {}, False),
        "LARGE_DATA": ({"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"},
                       {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}, False),
        "SHM-only": ({"FASTDDS_BUILTIN_TRANSPORTS": "SHM"},
                     {"FASTDDS_BUILTIN_TRANSPORTS": "SHM"}, False),
        "UDP-only": ({"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"},
                     {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"}, False),
        "profile-both": (prof, prof, False),
        "profile-subscriber-only": ({}, prof, False),
        "reliable": ({}, {}, True),
        "profile-both-reliable": (prof, prof, True),
        "UDP-only-reliable": ({"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"},
                              {"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"}, True),
    }


def _qos(reliable: bool):
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    return QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE if reliable
                      else ReliabilityPolicy.BEST_EFFORT)


def run_publisher(count: int, rate_hz: float, reliable: bool) -> None:
    """Child: wait for the subscriber, send `count` images at `rate_hz`, print what was sent."""
    import numpy as np
    import rclpy
    from rclpy.duration import Duration
    from sensor_msgs.msg import Image

    from depth_fusion_ros.ros_image import numpy_to_image

    rclpy.init()
    node = rclpy.create_node("dds_bench_publisher")
    pub = node.create_publisher(Image, TOPIC, _qos(reliable))
    image = numpy_to_image(np.random.default_rng(0).integers(0, 256, (384, 1224, 3), np.uint8),
                           "rgb8")
    deadline = time.monotonic() + 60.0
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # discovery is two-sided: let the subscriber match this writer too
    start = time.monotonic()
    for index in range(count):
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(time.time_ns(), 10**9)
        pub.publish(image)
        time.sleep(max(0.0, start + (index + 1) / rate_hz - time.monotonic()))
    if reliable:
        pub.wait_for_all_acked(Duration(seconds=10))
    print(json.dumps({"sent": count, "send_s": time.monotonic() - start}), flush=True)
    time.sleep(0.5)
    node.destroy_node()
    rclpy.try_shutdown()


def run_subscriber(reliable: bool, busy_ms: float) -> None:
    """Child: count images and their latency until SIGINT, then print them as JSON.

    busy_ms: time each callback holds the executor (a busy node: work in the callback or the
    GIL held by another thread), so the reader takes samples late.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import Image

    latencies_ms: list[float] = []

    def on_image(msg: Image) -> None:
        stamp_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        latencies_ms.append((time.time_ns() - stamp_ns) / 1e6)
        if busy_ms:
            time.sleep(busy_ms / 1e3)

    rclpy.init()
    node = rclpy.create_node("dds_bench_subscriber")
    node.create_subscription(Image, TOPIC, on_image, _qos(reliable))
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    print(json.dumps({"received": len(latencies_ms), "latencies_ms": latencies_ms}), flush=True)
    rclpy.try_shutdown()


def _child_env(extra: dict, domain: int) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in PROFILE_VARS and k != "FASTDDS_BUILTIN_TRANSPORTS"}
    env.update(extra, ROS_DOMAIN_ID=str(domain), PYTHONUNBUFFERED="1")
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    env.setdefault("AMENT_PREFIX_PATH", sys.prefix)
    return env


def measure(setup: tuple[dict, dict, bool], args: argparse.Namespace, domain: int) -> dict:
    """One publisher/subscriber pair; returns sent, received and latencies."""
    pub_env, sub_env, reliable = setup
    me = [sys.executable, str(Path(__file__).resolve())]
    flags = ["--reliable"] if reliable else []
    sub = subprocess.Popen(me + ["--role", "sub", "--busy-ms", str(args.busy_ms), *flags], env=_child_env(sub_env, domain),
                           stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    pub = subprocess.Popen(me + ["--role", "pub", "--count", str(args.count), "--rate",
                                 str(args.rate), *flags], env=_child_env(pub_env, domain),
                           stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    try:
        pub_out = pub.communicate(timeout=120 + args.count / args.rate)[0]
        time.sleep(1.0)  # the last images in flight
    finally:
        sub.send_signal(signal.SIGINT)
        sub_out = sub.communicate(timeout=30)[0]
    if pub.returncode != 0 or not pub_out.strip():
        raise SystemExit(f"publisher failed (code {pub.returncode}): {pub_out}")
    result = json.loads(pub_out.strip().splitlines()[-1])
    result.update(json.loads(sub_out.strip().splitlines()[-1]))
    return result


def _row(name: str, runs: list[dict]) -> str:
    received = [r["received"] for r in runs]
    sent = runs[0]["sent"]
    lat = sorted(x for r in runs for x in r["latencies_ms"])
    median = f"{statistics.median(lat):.1f}" if lat else "-"
    p99 = f"{lat[min(len(lat) - 1, int(0.99 * len(lat)))]:.1f}" if lat else "-"
    share = 100.0 * sum(received) / (sent * len(runs))
    return (f"| {name} | {' / '.join(str(n) for n in received)} of {sent} | {share:.0f} % "
            f"| {median} | {p99} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--role", choices=("main", "pub", "sub"), default="main",
                        help=argparse.SUPPRESS)
    parser.add_argument("--reliable", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=30.0, help="images per second")
    parser.add_argument("--count", type=int, default=150, help="images per run")
    parser.add_argument("--repeats", type=int, default=1, help="runs per setup")
    parser.add_argument("--busy-ms", type=float, default=0.0,
                        help="ms each subscriber callback keeps the executor busy")
    parser.add_argument("--only", default="", help="comma list of setup names")
    parser.add_argument("--profile", type=Path, default=REPO_ROOT / "config" / "fastdds.xml")
    parser.add_argument("--record", action="store_true", help="append to bench/RESULTS.md")
    args = parser.parse_args()
    if args.role == "pub":
        return run_publisher(args.count, args.rate, args.reliable)
    if args.role == "sub":
        return run_subscriber(args.reliable, args.busy_ms)
    table = setups(args.profile.resolve())
    chosen = [n for n in table if not args.only or n in args.only.split(",")]
    lines = ["| setup | received (per run) | share | median latency ms | p99 latency ms |",
             "|---|---|---|---|---|"]
    base_domain = int(os.environ.get("ROS_DOMAIN_ID", os.getpid() % 80)) % 80 + 10
    for index, name in enumerate(chosen):
        runs = [measure(table[name], args, (base_domain + index * args.repeats + r) % 100 + 1)
                for r in range(args.repeats)]
        lines.append(_row(name, runs))
        print(lines[-1], file=sys.stderr, flush=True)  # progress; the table follows
    text = "\n".join(lines)
    command = "python bench/dds_transport.py " + " ".join(sys.argv[1:])
    notes = (f"rgb8 1224x384 Images (1.4 MB) at {args.rate:g} Hz between two plain rclpy "
             f"processes, subscriber callback busy {args.busy_ms:g} ms; ROS_AUTOMATIC_DISCOVERY_RANGE={os.environ.get('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')}")
    if args.record:
        record("DDS transport for camera images (received of sent)", text, command.strip(), notes)
    else:
        print(f"{notes}\n\n{text}")


if __name__ == "__main__":
    main()
