"""ROS 2 Jazzy messages as `rosbags` dataclasses, serialised to CDR for rosbag2 files.

The converter builds messages with the `rosbags` typestore (pure Python, no ROS install needed),
so a bag written here carries the same message definitions and type hashes as one recorded by
`ros2 bag record` on Jazzy.
"""
from __future__ import annotations

import numpy as np
from rosbags.interfaces import (
    Qos,
    QosDurability,
    QosHistory,
    QosLiveliness,
    QosReliability,
    QosTime,
)
from rosbags.typesys import Stores, get_typestore

TYPESTORE = get_typestore(Stores.ROS2_JAZZY)
T = TYPESTORE.types

IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"

NS_PER_S = 1_000_000_000
_ZERO_TIME = QosTime(sec=0, nsec=0)

# What tf2_ros.StaticTransformBroadcaster offers; `ros2 bag play` re-offers the recorded profile,
# so late joiners (RViz, the node) still receive /tf_static ("latched").
TF_STATIC_QOS = Qos(
    history=QosHistory.KEEP_LAST, depth=1, reliability=QosReliability.RELIABLE,
    durability=QosDurability.TRANSIENT_LOCAL, deadline=_ZERO_TIME, lifespan=_ZERO_TIME,
    liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=_ZERO_TIME,
    avoid_ros_namespace_conventions=False,
)
# Camera drivers publish sensor data best effort; recorded as reliable/volatile so `ros2 bag play`
# reaches both reliable and best-effort subscribers.
SENSOR_QOS = Qos(
    history=QosHistory.KEEP_LAST, depth=10, reliability=QosReliability.RELIABLE,
    durability=QosDurability.VOLATILE, deadline=_ZERO_TIME, lifespan=_ZERO_TIME,
    liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=_ZERO_TIME,
    avoid_ros_namespace_conventions=False,
)


def header(stamp_ns: int, frame_id: str):
    """std_msgs/Header for a stamp in integer nanoseconds."""
    stamp = T["builtin_interfaces/msg/Time"](sec=int(stamp_ns // NS_PER_S),
                                             nanosec=int(stamp_ns % NS_PER_S))
    return T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


_ENCODINGS = {  # encoding -> (dtype little-endian, channels)
    "mono16": ("<u2", 1), "mono8": ("u1", 1), "rgb8": ("u1", 3), "32FC1": ("<f4", 1),
}


def image(array: np.ndarray, encoding: str, stamp_ns: int, frame_id: str):
    """sensor_msgs/Image from a [H, W] or [H, W, 3] array (little-endian, no row padding).

    The array's dtype must match the encoding (uint16 for mono16, uint8 for mono8/rgb8, float32
    for 32FC1; any byte order): nothing is cast, so out-of-range values or NaN never wrap.
    """
    dtype, channels = _ENCODINGS[encoding]
    dtype = np.dtype(dtype)
    if (array.dtype.kind, array.dtype.itemsize) != (dtype.kind, dtype.itemsize):
        raise ValueError(f"encoding {encoding} needs {dtype.name} pixels, got {array.dtype.name}; "
                         f"convert the array to {dtype.name} first")
    arr = np.ascontiguousarray(array, dtype=dtype)
    if arr.ndim != (2 if channels == 1 else 3) or (channels == 3 and arr.shape[2] != 3):
        raise ValueError(f"array of shape {arr.shape} does not fit encoding {encoding!r}")
    height, width = arr.shape[:2]
    return T[IMAGE](
        header=header(stamp_ns, frame_id), height=height, width=width, encoding=encoding,
        is_bigendian=0, step=width * channels * arr.dtype.itemsize,
        data=arr.reshape(-1).view(np.uint8),
    )


def camera_info(k: np.ndarray, width: int, height: int, stamp_ns: int, frame_id: str):
    """sensor_msgs/CameraInfo for a rectified pinhole camera: K from calib, P = [K | 0], D = 0."""
    k = np.asarray(k, dtype=np.float64).reshape(3, 3)
    p = np.zeros((3, 4), dtype=np.float64)
    p[:, :3] = k
    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                do_rectify=False)
    return T[CAMERA_INFO](
        header=header(stamp_ns, frame_id), height=int(height), width=int(width),
        distortion_model="plumb_bob", d=np.zeros(5), k=k.reshape(-1),
        r=np.eye(3).reshape(-1), p=p.reshape(-1), binning_x=0, binning_y=0, roi=roi,
    )


def rotation_to_quaternion(rot: np.ndarray) -> np.ndarray:
    """Unit quaternion [x, y, z, w] (w >= 0) of a 3x3 rotation matrix (Shepperd's method)."""
    m = np.asarray(rot, dtype=np.float64)
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = [0.0, 0.0, 0.0, (m[k, j] - m[j, k]) / s]
        q[i] = s / 4
        q[j] = (m[j, i] + m[i, j]) / s
        q[k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(q) / np.linalg.norm(q)
    return -q if q[3] < 0 else q


def transform_stamped(pose: np.ndarray, parent: str, child: str, stamp_ns: int):
    """geometry_msgs/TransformStamped for a 4x4 pose of `child` in `parent` (metres)."""
    pose = np.asarray(pose, dtype=np.float64)
    qx, qy, qz, qw = rotation_to_quaternion(pose[:3, :3])
    tx, ty, tz = (float(v) for v in pose[:3, 3])
    return T["geometry_msgs/msg/TransformStamped"](
        header=header(stamp_ns, parent), child_frame_id=child,
        transform=T["geometry_msgs/msg/Transform"](
            translation=T["geometry_msgs/msg/Vector3"](x=tx, y=ty, z=tz),
            rotation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
        ),
    )


def tf_message(transforms: list):
    """tf2_msgs/TFMessage holding the given TransformStamped messages."""
    return T[TF_MESSAGE](transforms=list(transforms))


def serialize(msg) -> memoryview:
    """CDR bytes (with encapsulation header) exactly as rosbag2 stores them (no extra copy)."""
    return TYPESTORE.serialize_cdr(msg, msg.__msgtype__)
