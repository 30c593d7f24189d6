"""Record the simulated drive (`rig_drive.py`) as a rosbag2, the way a real rig's bag looks.

    python -m training.synthetic.rig_bag --out drive.bag [--seconds 4] [--seed 0] [--kind day]
        [--scale 1.0] [--storage mcap|sqlite3] [--rgb-compressed] [--odom] [--stop START:LEN]

Topics (header stamps are the sensors' own; the bag's log time is when a driver would have
published: images ~5 ms later, a LiDAR scan after its sweep ends):

| topic | type | notes |
|---|---|---|
| /thermal/image_raw | sensor_msgs/Image | mono16 raw counts, distorted (plumb_bob) |
| /thermal/camera_info | sensor_msgs/CameraInfo | K raw, D, R = I, P = the rectified camera |
| /rgb/image_raw or /rgb/image_raw/compressed | Image bgr8 / CompressedImage jpeg | distorted |
| /rgb/camera_info | sensor_msgs/CameraInfo | as thermal |
| /lidar/points | sensor_msgs/PointCloud2 | organised 64 x columns, x y z intensity (f32), t (u32 ns after the stamp), ring (u16); NaN = no return; frame lidar_link |
| /tf_static | tf2_msgs/TFMessage | base_link -> thermal_optical_frame, rgb_optical_frame, lidar_link |
| /tf | tf2_msgs/TFMessage | odom -> base_link at 50 Hz |
| /odom (with --odom) | nav_msgs/Odometry | odom -> base_link pose and twist at 50 Hz |

`Faults` injects what real recordings contain (clock jumps, damaged messages, missing topics or
transforms) for the converter's tests.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer

from depth_fusion_ros.bag import ros_types as rt
from depth_fusion_ros.bag.integrity import seal_mcap

from .rig_drive import DISTORTION, FRAMES, Drive, DriveSpec, raw_intrinsics

LATENCY_NS = {"camera": 5_000_000, "lidar": 2_000_000, "tf": 1_000_000}
LIDAR_TOPICS = ("/lidar/points", "/lidar/points_b")  # the second only with lidar_halves
POINT_DTYPE = np.dtype({"names": ["x", "y", "z", "intensity", "t", "ring"],
                        "formats": ["<f4", "<f4", "<f4", "<f4", "<u4", "<u2"],
                        "offsets": [0, 4, 8, 12, 16, 20], "itemsize": 24})


@dataclass(frozen=True)
class Faults:
    """Defects to record. `clock_jump` = (at_s, jump_s): from `at_s` into the recording every
    header stamp is shifted by `jump_s` (a driver clock reset); `bad` = (topic, index) messages
    whose payload is damaged; `omit_topics` / `omit_static` leave topics / static transforms out."""

    clock_jump: tuple[float, float] | None = None
    bad: tuple[tuple[str, int], ...] = ()
    omit_topics: tuple[str, ...] = ()
    omit_static: tuple[str, ...] = ()


def _camera_info(drive: Drive, name: str, stamp_ns: int):
    cam = getattr(drive.rig, name)
    p = np.hstack([cam.K, np.zeros((3, 1))])
    roi = rt.T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                   do_rectify=False)
    return rt.T[rt.CAMERA_INFO](
        header=rt.header(stamp_ns, FRAMES[name]), height=cam.height, width=cam.width,
        distortion_model="plumb_bob", d=DISTORTION[name][0].copy(),
        k=raw_intrinsics(cam).reshape(-1), r=np.eye(3).reshape(-1), p=p.reshape(-1),
        binning_x=0, binning_y=0, roi=roi)


def _image(drive: Drive, name: str, stamp_ns: int, compressed: bool):
    image, _ = drive.render(name, stamp_ns)
    raw = drive.distort(name, image)
    if name == "thr":
        return rt.image(raw, "mono16", stamp_ns, FRAMES[name])
    bgr = np.ascontiguousarray(raw[:, :, ::-1])
    if not compressed:
        msg = rt.image(bgr, "rgb8", stamp_ns, FRAMES[name])
        msg.encoding = "bgr8"  # drivers often publish bgr8; same layout, other channel order
        return msg
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok, "JPEG encoding failed"
    return rt.T["sensor_msgs/msg/CompressedImage"](
        header=rt.header(stamp_ns, FRAMES[name]), format="bgr8; jpeg compressed bgr8",
        data=data.ravel())


def _cloud(drive: Drive, stamp_ns: int, columns_of: slice = slice(None)):
    """The sweep of `stamp_ns` as an organised PointCloud2; `columns_of` keeps some columns."""
    scan = drive.scan(stamp_ns)
    xyz, offset_ns = scan.xyz_lidar[:, columns_of], scan.offset_ns[columns_of]
    beams, columns = xyz.shape[:2]
    points = np.zeros((beams, columns), POINT_DTYPE)
    for i, axis in enumerate("xyz"):
        points[axis] = xyz[..., i]
    points["intensity"] = np.where(np.isfinite(xyz[..., 0]), 100.0, 0.0)
    points["t"] = offset_ns[None, :].astype(np.uint32)
    points["ring"] = np.arange(beams, dtype=np.uint16)[:, None]
    field = rt.T["sensor_msgs/msg/PointField"]
    fields = [field(name=n, offset=POINT_DTYPE.fields[n][1], datatype=dt, count=1)
              for n, dt in (("x", 7), ("y", 7), ("z", 7), ("intensity", 7), ("t", 6), ("ring", 4))]
    return rt.T["sensor_msgs/msg/PointCloud2"](
        header=rt.header(stamp_ns, FRAMES["lidar"]), height=beams, width=columns, fields=fields,
        is_bigendian=False, point_step=POINT_DTYPE.itemsize, row_step=POINT_DTYPE.itemsize * columns,
        data=points.reshape(-1).view(np.uint8), is_dense=False)


def _odometry(drive: Drive, stamp_ns: int):
    time_s = drive.seconds_of(stamp_ns)
    pose = drive.T_odom_base(time_s)
    T = rt.T
    vec = T["geometry_msgs/msg/Vector3"]
    point = T["geometry_msgs/msg/Point"](x=pose[0, 3], y=pose[1, 3], z=pose[2, 3])
    quat = T["geometry_msgs/msg/Quaternion"](x=0.0, y=0.0, z=0.0, w=1.0)
    twist = T["geometry_msgs/msg/Twist"](linear=vec(x=float(drive.speed_mps(time_s)), y=0.0, z=0.0),
                                         angular=vec(x=0.0, y=0.0, z=0.0))
    return T["nav_msgs/msg/Odometry"](
        header=rt.header(stamp_ns, FRAMES["odom"]), child_frame_id=FRAMES["base"],
        pose=T["geometry_msgs/msg/PoseWithCovariance"](
            pose=T["geometry_msgs/msg/Pose"](position=point, orientation=quat),
            covariance=np.zeros(36)),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=np.zeros(36)))


def _events(drive: Drive, rgb_topic: str, odom: bool, lidar_topics: tuple[str, ...]):
    """(log time, topic, stamp, index, builder) of every message, not yet built."""
    stamps = drive.camera_stamps_ns()
    period = int(1e9 / drive.spec.lidar.rate_hz)
    tf_step = int(1e9 / drive.spec.tf_rate_hz)
    tf_stamps = np.arange(drive.start_ns - 4 * tf_step,
                          drive.start_ns + int((drive.spec.seconds + 0.2) * 1e9), tf_step)
    yield drive.start_ns - 5 * tf_step, "/tf_static", drive.start_ns, 0
    for name, topic in (("thr", "/thermal/image_raw"), ("rgb", rgb_topic)):
        info = "/thermal/camera_info" if name == "thr" else "/rgb/camera_info"
        for i, s in enumerate(stamps[name]):
            yield int(s) + LATENCY_NS["camera"], info, int(s), i
            yield int(s) + LATENCY_NS["camera"], topic, int(s), i
    for i, s in enumerate(drive.scan_stamps_ns()):
        for topic in lidar_topics:
            yield int(s) + period + LATENCY_NS["lidar"], topic, int(s), i
    for i, s in enumerate(tf_stamps):
        yield int(s) + LATENCY_NS["tf"], "/tf", int(s), i
        if odom:
            yield int(s) + LATENCY_NS["tf"], "/odom", int(s), i


def _build(drive: Drive, topic: str, stamp_ns: int, faults: Faults, halves: bool = False):
    if topic == "/tf_static":
        return rt.tf_message([rt.transform_stamped(drive.T_base(n), FRAMES["base"], FRAMES[n],
                                                   stamp_ns)
                              for n in ("thr", "rgb", "lidar") if FRAMES[n] not in faults.omit_static])
    if topic == "/tf":
        return rt.tf_message([rt.transform_stamped(drive.T_odom_base(drive.seconds_of(stamp_ns)),
                                                   FRAMES["odom"], FRAMES["base"], stamp_ns)])
    if topic == "/odom":
        return _odometry(drive, stamp_ns)
    if topic in LIDAR_TOPICS:  # with halves, each topic gets every other column of the sweep
        return _cloud(drive, stamp_ns,
                      slice(LIDAR_TOPICS.index(topic), None, 2) if halves else slice(None))
    name = "thr" if topic.startswith("/thermal") else "rgb"
    if topic.endswith("camera_info"):
        return _camera_info(drive, name, stamp_ns)
    return _image(drive, name, stamp_ns, topic.endswith("compressed"))


def _apply_faults(msg, topic: str, index: int, log_ns: int, drive: Drive, faults: Faults):
    """Shift header stamps after a clock jump; damage the messages listed in `faults.bad`."""
    if faults.clock_jump is not None and log_ns >= drive.start_ns + faults.clock_jump[0] * 1e9:
        jump_ns = int(faults.clock_jump[1] * 1e9)
        headers = [t.header for t in msg.transforms] if hasattr(msg, "transforms") else [msg.header]
        for h in headers:
            total = h.stamp.sec * 10**9 + h.stamp.nanosec + jump_ns
            h.stamp.sec, h.stamp.nanosec = total // 10**9, total % 10**9
    if (topic, index) in faults.bad:
        if hasattr(msg, "data"):
            msg.data = msg.data[: len(msg.data) // 3]  # truncated payload
        elif hasattr(msg, "k"):
            msg.k = np.zeros(9)  # uncalibrated camera_info
    return msg


def _connections(writer: Writer, rgb_topic: str, odom: bool, omit: tuple[str, ...],
                 lidar_topics: tuple[str, ...]) -> dict:
    types = {"/tf_static": rt.TF_MESSAGE, "/tf": rt.TF_MESSAGE, "/thermal/image_raw": rt.IMAGE,
             "/thermal/camera_info": rt.CAMERA_INFO, "/rgb/camera_info": rt.CAMERA_INFO,
             rgb_topic: ("sensor_msgs/msg/CompressedImage" if rgb_topic.endswith("compressed")
                         else rt.IMAGE)}
    types.update(dict.fromkeys(lidar_topics, "sensor_msgs/msg/PointCloud2"))
    if odom:
        types["/odom"] = "nav_msgs/msg/Odometry"
    return {topic: writer.add_connection(topic, msgtype, typestore=rt.TYPESTORE,
                                         offered_qos_profiles=[rt.TF_STATIC_QOS if topic ==
                                                               "/tf_static" else rt.SENSOR_QOS])
            for topic, msgtype in types.items() if topic not in omit}


def write_rig_bag(out: str | Path, spec: DriveSpec, *, storage: str = "mcap",
                  rgb_compressed: bool = False, odom: bool = False,
                  faults: Faults = Faults(),  # noqa: B008 - frozen default
                  lidar_halves: bool = False) -> Drive:
    """Write the drive of `spec` as a rosbag2 folder `out` (replaced if it exists).

    lidar_halves: the sweep's even columns on /lidar/points and its odd ones on
    /lidar/points_b, as a rig with two LiDARs records two topics (one mounting here)."""
    lidar_topics = LIDAR_TOPICS if lidar_halves else LIDAR_TOPICS[:1]
    out = Path(out)
    drive = Drive(spec)
    rgb_topic = "/rgb/image_raw/compressed" if rgb_compressed else "/rgb/image_raw"
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = Writer(out, version=9, storage_plugin=StoragePlugin[storage.upper()])
    writer.open()
    try:
        conns = _connections(writer, rgb_topic, odom, faults.omit_topics, lidar_topics)
        events = sorted(_events(drive, rgb_topic, odom, lidar_topics),
                        key=lambda e: (e[0], e[1], e[3]))
        for log_ns, topic, stamp_ns, index in events:
            if topic not in conns:
                continue
            msg = _apply_faults(_build(drive, topic, stamp_ns, faults, lidar_halves), topic,
                                index, log_ns, drive, faults)
            writer.write(conns[topic], log_ns, rt.serialize(msg))
    finally:
        writer.close()
    for mcap in out.glob("*.mcap"):
        seal_mcap(mcap)
    return drive


def _parse_stop(text: str | None) -> tuple[float, float] | None:
    if text is None:
        return None
    start, _, length = text.partition(":")
    return float(start), float(length)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.synthetic.rig_bag",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="bag folder to write")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kind", choices=("day", "night", "rain"), default="day")
    parser.add_argument("--scale", type=float, default=1.0, help="camera size factor")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--rgb-compressed", action="store_true", help="RGB as JPEG")
    parser.add_argument("--odom", action="store_true", help="also record /odom")
    parser.add_argument("--stop", default=None, metavar="START:LEN",
                        help="stand still from START for LEN seconds")
    parser.add_argument("--lidar-halves", action="store_true",
                        help="the sweep's even / odd columns on /lidar/points / /lidar/points_b")
    args = parser.parse_args(argv)
    spec = DriveSpec(seed=args.seed, kind=args.kind, seconds=args.seconds, scale=args.scale,
                     stop=_parse_stop(args.stop))
    write_rig_bag(args.out, spec, storage=args.storage, rgb_compressed=args.rgb_compressed,
                  odom=args.odom, lidar_halves=args.lidar_halves)
    print(f"wrote {args.out} ({args.seconds:g} s, {args.kind}, seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
