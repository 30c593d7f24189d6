"""Pass 1 of `bag_to_ms2`: what a recording holds, read without decoding any image or cloud.

For every image and LiDAR message only the header (stamp, frame_id) is read from the CDR bytes;
camera_info, /tf, /tf_static and odometry messages are deserialised (they are small). Messages
are identified by (topic, ordinal): their position in the topic's message order, which pass 2
reproduces by reading the same connections. A message whose header cannot be read is counted
and never used. Missing topics or wrong types raise `BagInputError` naming the topic.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rosbags.rosbag2 import Reader

from depth_fusion_ros.bag import ros_types as rt
from depth_fusion_ros.bag.sensor_decode import COMPRESSED_IMAGE, DecodeError, header_from_cdr

IMAGE_TYPES = (rt.IMAGE, COMPRESSED_IMAGE)
CLOUD = "sensor_msgs/msg/PointCloud2"
ODOMETRY = "nav_msgs/msg/Odometry"


class BagInputError(ValueError):
    """The recording lacks what the conversion needs; the message names topic, frame or file."""


@dataclass(frozen=True)
class Topics:
    """The topics to read (from the command line)."""

    images: dict[str, str]          # "thr" / "rgb" -> image topic
    infos: dict[str, str]           # "thr" / "rgb" -> camera_info topic
    lidars: tuple[str, ...]
    odometry: str | None = None


@dataclass
class TopicIndex:
    """Header stamps of one topic's messages, in message order."""

    topic: str
    msgtype: str
    stamp_ns: list | np.ndarray = field(default_factory=list)
    log_ns: list | np.ndarray = field(default_factory=list)
    frame_id: str = ""

    def finish(self) -> TopicIndex:
        self.stamp_ns = np.asarray(self.stamp_ns, np.int64)
        self.log_ns = np.asarray(self.log_ns, np.int64)
        return self


@dataclass
class BagIndex:
    """Everything pass 1 learned about one bag."""

    path: Path
    start_ns: int
    end_ns: int
    images: dict[str, TopicIndex]
    lidars: dict[str, TopicIndex]
    infos: dict[str, list]             # view -> [(log_ns, CameraInfo)], in order
    tf_static: list                    # [(parent, child, translation, quaternion)]
    tf: list                           # [(log_ns, parent, child, stamp_ns, t, q)]
    odometry: list                     # [(log_ns, parent, child, stamp_ns, t, q, v_child)]
    bad: Counter = field(default_factory=Counter)  # (topic, reason) -> messages

    @property
    def topics_read(self) -> list[str]:
        return sorted({*(t.topic for t in self.images.values()), *self.lidars})


def _available(reader: Reader) -> dict[str, str]:
    return {c.topic: c.msgtype for c in reader.connections}


def _require(available: dict[str, str], topic: str, types: tuple[str, ...], what: str,
             path: Path) -> None:
    """BagInputError unless `topic` is in the bag with one of `types`."""
    if topic not in available:
        candidates = sorted(t for t, m in available.items() if m in types)
        raise BagInputError(f"{what} topic {topic} is not in {path}; topics of type "
                            f"{'/'.join(t.split('/')[-1] for t in types)} there: "
                            f"{candidates or 'none'} (all topics: {sorted(available)})")
    if available[topic] not in types:
        raise BagInputError(f"{what} topic {topic} in {path} is {available[topic]}, expected "
                            f"{' or '.join(types)}")


def check_topics(reader: Reader, topics: Topics, path: Path) -> None:
    """BagInputError naming the first topic that is missing or of the wrong type."""
    available = _available(reader)
    names = {"thr": "thermal", "rgb": "RGB"}
    for view, topic in topics.images.items():
        _require(available, topic, IMAGE_TYPES, f"{names[view]} image", path)
        _require(available, topics.infos[view], (rt.CAMERA_INFO,), f"{names[view]} camera_info",
                 path)
    for topic in topics.lidars:
        _require(available, topic, (CLOUD,), "LiDAR", path)
    if topics.odometry:
        _require(available, topics.odometry, (ODOMETRY,), "odometry", path)
    if "/tf_static" not in available and "/tf" not in available:
        raise BagInputError(f"{path} has neither /tf_static nor /tf: the converter needs the "
                            "poses of the cameras and LiDARs (e.g. base_link -> each sensor "
                            "frame, recorded from robot_state_publisher or static_transform_publisher)")


def _transforms(msg) -> list[tuple]:
    out = []
    for t in msg.transforms:
        stamp = t.header.stamp.sec * 1_000_000_000 + t.header.stamp.nanosec
        tr, q = t.transform.translation, t.transform.rotation
        out.append((t.header.frame_id, t.child_frame_id, stamp, (tr.x, tr.y, tr.z),
                    (q.x, q.y, q.z, q.w)))
    return out


def _odometry(msg) -> tuple:
    p, q = msg.pose.pose.position, msg.pose.pose.orientation
    v = msg.twist.twist.linear
    stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
    return (msg.header.frame_id, msg.child_frame_id, stamp, (p.x, p.y, p.z),
            (q.x, q.y, q.z, q.w), (v.x, v.y, v.z))


def connections(reader: Reader, topics: Topics) -> list:
    """The connections both passes read (the same set, so message ordinals agree)."""
    wanted = {*topics.images.values(), *topics.infos.values(), *topics.lidars, "/tf",
              "/tf_static", *([topics.odometry] if topics.odometry else [])}
    return [c for c in reader.connections if c.topic in wanted]


def _index_message(index: BagIndex, kinds: dict, conn, log_ns: int, raw) -> None:
    kind, key = kinds[conn.topic]
    if kind in ("image", "lidar"):
        entry = index.images[key] if kind == "image" else index.lidars[key]
        try:
            stamp_ns, frame_id = header_from_cdr(raw)
        except DecodeError as err:
            index.bad[(conn.topic, err.reason)] += 1
            stamp_ns, frame_id = -1, ""  # kept in place so ordinals stay aligned; never used
        entry.stamp_ns.append(stamp_ns)
        entry.log_ns.append(log_ns)
        entry.frame_id = entry.frame_id or frame_id
        return
    try:
        msg = rt.TYPESTORE.deserialize_cdr(raw, conn.msgtype)
    except Exception:  # noqa: BLE001 - any damage to a small message: count it, skip it
        index.bad[(conn.topic, "undecodable")] += 1
        return
    if kind == "info":
        index.infos[key].append((log_ns, msg))
    elif kind == "tf_static":
        index.tf_static += [(p, c, t, q) for p, c, _, t, q in _transforms(msg)]
    elif kind == "tf":
        index.tf += [(log_ns, *item) for item in _transforms(msg)]
    else:
        index.odometry.append((log_ns, *_odometry(msg)))


def build_index(path: Path, topics: Topics, progress=None) -> BagIndex:
    """Read one bag's headers and small messages (pass 1); BagInputError for missing topics."""
    with Reader(path) as reader:
        check_topics(reader, topics, path)
        available = _available(reader)
        index = BagIndex(path=path, start_ns=reader.start_time, end_ns=reader.end_time,
                         images={v: TopicIndex(t, available[t]) for v, t in topics.images.items()},
                         lidars={t: TopicIndex(t, CLOUD) for t in topics.lidars},
                         infos={v: [] for v in topics.infos}, tf_static=[], tf=[], odometry=[])
        kinds = {t: ("image", v) for v, t in topics.images.items()}
        kinds.update({t: ("info", v) for v, t in topics.infos.items()})
        kinds.update({t: ("lidar", t) for t in topics.lidars})
        kinds.update({"/tf": ("tf", None), "/tf_static": ("tf_static", None)})
        if topics.odometry:
            kinds[topics.odometry] = ("odometry", None)
        for conn, log_ns, raw in reader.messages(connections=connections(reader, topics)):
            _index_message(index, kinds, conn, log_ns, raw)
            if progress is not None:
                progress(1)
    for entry in (*index.images.values(), *index.lidars.values()):
        entry.finish()
        if entry.stamp_ns.size == 0:
            raise BagInputError(f"topic {entry.topic} in {path} has no messages")
    return index
