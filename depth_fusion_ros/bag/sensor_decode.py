"""Recorded sensor messages (rosbags dataclasses or raw CDR) -> numpy, for `bag_to_ms2`.

Images go through the node's own decoders (`ros_image.image_to_numpy`,
`compressed.compressed_to_numpy`), so a recording the node accepts converts and one it rejects
is rejected for the same reason. PointCloud2 is read through a structured dtype built from its
fields (any point_step / row padding / byte order), with per-point times when the driver
records them. Every rejection is a `DecodeError` whose `reason` is a short summary key.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from depth_fusion_ros.compressed import compressed_to_numpy
from depth_fusion_ros.ros_image import ImageDecodeError, image_to_numpy

THERMAL_ENCODINGS = ("mono16", "16UC1", "mono8", "8UC1")
RGB_ENCODINGS = ("rgb8", "bgr8", "8UC3", "mono8", "8UC1")
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
# PointField datatype -> numpy type (byte order added from is_bigendian)
POINT_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
# Per-point time fields of common drivers: Ouster `t` (uint32 ns after the stamp), Velodyne
# `time` (float32 s after the stamp), Hesai / RoboSense `timestamp` (float64 s, absolute),
# Livox `offset_time` (uint32 ns).
TIME_FIELDS = ("t", "time", "timestamp", "offset_time", "time_offset")


class DecodeError(ValueError):
    """A message that cannot be used; `reason` is a summary counter key."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def header_from_cdr(raw) -> tuple[int, str]:
    """(stamp ns, frame_id) of a message whose first field is a std_msgs/Header, read straight
    from its CDR bytes (no deserialisation of the payload)."""
    raw = memoryview(raw)
    if len(raw) < 16:
        raise DecodeError("truncated", f"message of {len(raw)} bytes has no header")
    order = "<" if raw[1] == 1 else ">"
    sec, nanosec, length = struct.unpack_from(f"{order}iII", raw, 4)
    if nanosec >= 1_000_000_000 or length > len(raw) - 16:
        raise DecodeError("bad_header", "header stamp or frame_id length out of range")
    frame_id = bytes(raw[16:16 + max(length - 1, 0)]).decode("utf-8", "replace")
    return sec * 1_000_000_000 + nanosec, frame_id


def decode_image(msg, msgtype: str, view: str) -> np.ndarray:
    """A recorded image as thermal counts ([H, W] u16/u8) or RGB ([H, W, 3] u8, RGB order).

    Args:
        msg: a deserialised sensor_msgs/Image or sensor_msgs/CompressedImage.
        view: "thr" or "rgb".
    """
    allowed = THERMAL_ENCODINGS if view == "thr" else RGB_ENCODINGS
    try:
        if msgtype == COMPRESSED_IMAGE:
            pixels, encoding = compressed_to_numpy(msg, allowed)
        else:
            pixels, encoding = image_to_numpy(msg, allowed), msg.encoding
    except ImageDecodeError as err:
        raise DecodeError(err.reason, str(err)) from err
    if view == "thr":
        return np.array(pixels)  # a copy: the message buffer is released after decoding
    if pixels.ndim == 2:
        return np.repeat(pixels[:, :, None], 3, axis=2)
    if encoding == "bgr8":
        return np.ascontiguousarray(pixels[:, :, ::-1])
    return np.array(pixels)


@dataclass(frozen=True)
class Cloud:
    """Valid points of one scan (NaN/inf rows removed)."""

    xyz: np.ndarray            # [N, 3] float64, LiDAR frame, metres
    time_ns: np.ndarray        # [N] int64 absolute firing time (the header stamp without times)
    has_times: bool            # per-point times came from a time field
    row: np.ndarray | None     # [N] beam / ring index when the cloud is organised or has `ring`
    columns: int | None        # points per row of an organised cloud


def _point_dtype(msg) -> np.dtype:
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for field in msg.fields:
        kind = POINT_TYPES.get(int(field.datatype))
        if kind is None or field.name in names:
            continue
        count = max(int(field.count), 1)
        names.append(field.name)
        formats.append((order + kind) if count == 1 else (order + kind, (count,)))
        offsets.append(int(field.offset))
    missing = [a for a in "xyz" if a not in names]
    if missing:
        raise DecodeError("no_xyz", f"PointCloud2 has no {'/'.join(missing)} field (fields: "
                          f"{[f.name for f in msg.fields]})")
    try:
        return np.dtype({"names": names, "formats": formats, "offsets": offsets,
                         "itemsize": int(msg.point_step)})
    except ValueError as exc:
        raise DecodeError("bad_fields", f"PointCloud2 fields do not fit point_step "
                          f"{msg.point_step}: {exc}") from exc


def _points(msg) -> np.ndarray:
    """[H, W] structured array of the cloud's points (row padding dropped)."""
    dtype = _point_dtype(msg)
    height, width, step = int(msg.height), int(msg.width), int(msg.row_step)
    data = np.asarray(msg.data, np.uint8)
    if height == 0 or width == 0:
        raise DecodeError("empty", "PointCloud2 has no points")
    if step < width * dtype.itemsize or data.size < step * height:
        raise DecodeError("bad_data_length", f"PointCloud2 data is {data.size} bytes, expected "
                          f"row_step {step} x height {height} (width {width} x point_step "
                          f"{dtype.itemsize})")
    rows = data[:step * height].reshape(height, step)[:, :width * dtype.itemsize]
    return np.ascontiguousarray(rows).view(dtype).reshape(height, width)


def _times_ns(points: np.ndarray, stamp_ns: int, field: str | None) -> np.ndarray | None:
    """Absolute per-point times from a time field, or None (see TIME_FIELDS)."""
    names = points.dtype.names
    if field == "none":
        return None
    name = field if field not in (None, "auto") else next((n for n in TIME_FIELDS if n in names),
                                                         None)
    if name is None:
        return None
    if name not in names:
        raise DecodeError("no_time_field", f"PointCloud2 has no time field {name!r} "
                          f"(fields: {list(names)}); use --lidar-time-field auto or none")
    values = points[name].astype(np.float64) if points[name].dtype.kind == "f" else points[name]
    if values.dtype.kind in "iu":
        return stamp_ns + values.astype(np.int64)  # integer fields are ns offsets
    if values.dtype.itemsize == 8 and np.nanmedian(values) > 1e8:
        return np.round(values * 1e9).astype(np.int64)  # absolute epoch seconds
    return stamp_ns + np.round(values * 1e9).astype(np.int64)  # seconds after the stamp


def decode_cloud(msg, stamp_ns: int, time_field: str | None = "auto") -> Cloud:
    """A PointCloud2 as valid points with firing times (the stamp for all if it has none)."""
    points = _points(msg)
    xyz = np.stack([points[a].astype(np.float64) for a in "xyz"], axis=-1)  # [H, W, 3]
    times = _times_ns(points, stamp_ns, time_field)
    row = None
    if points.shape[0] > 1:
        row = np.broadcast_to(np.arange(points.shape[0])[:, None], points.shape)
    elif "ring" in points.dtype.names:
        row = points["ring"].astype(np.int64)
    valid = np.isfinite(xyz).all(axis=-1) & (np.abs(xyz).sum(axis=-1) > 0)  # (0,0,0) = no return
    return Cloud(xyz=xyz[valid], has_times=times is not None,
                 time_ns=(times[valid] if times is not None
                          else np.full(int(valid.sum()), stamp_ns, np.int64)),
                 row=None if row is None else np.asarray(row)[valid],
                 columns=points.shape[1] if points.shape[0] > 1 else None)


def angular_resolution(cloud: Cloud) -> tuple[float, float] | None:
    """(vertical, horizontal) angle between neighbouring beams / columns, or None when the cloud
    has no beam index (unorganised without `ring`)."""
    if cloud.row is None or cloud.xyz.shape[0] < 100:
        return None
    x, y, z = cloud.xyz.T
    elevation = np.arctan2(z, np.hypot(x, y))
    rows = np.unique(cloud.row)
    per_row = np.array([np.median(elevation[cloud.row == r]) for r in rows])
    gaps = np.abs(np.diff(np.sort(per_row)))
    if gaps.size == 0:
        return None
    if cloud.columns:
        horizontal = 2.0 * np.pi / cloud.columns  # an organised spinning LiDAR: one column per step
    else:
        per_ring = max(cloud.xyz.shape[0] / rows.size, 1.0)
        horizontal = 2.0 * np.pi / per_ring
    return float(np.median(gaps)), float(horizontal)
