"""sensor_msgs/Image <-> numpy with validation (no cv_bridge in a pip ROS 2 environment).

Decoding is zero-copy where the layout allows it (np.frombuffer over the message's byte array,
strided view over step padding); encoding builds the message's `array('B')` straight from the
array's bytes, which skips rosidl's per-element Python validation of list input (the slow path).
Every rejection raises ImageDecodeError whose `reason` is a short key used by diagnostics counters.
"""
from __future__ import annotations

import array

import numpy as np
from sensor_msgs.msg import Image

# encoding -> (dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "8UC3": (np.dtype(np.uint8), 3),
    "32FC1": (np.dtype(np.float32), 1),
}


class ImageDecodeError(ValueError):
    """A sensor_msgs/Image that cannot be turned into an array; `reason` is a counter key."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def image_to_numpy(msg: Image, allowed: tuple[str, ...] | None = None, *,
                   allow_non_finite: bool = False) -> np.ndarray:
    """Validated view of an Image's pixels.

    Args:
        msg: the message; mono16/16UC1 -> [H, W] u16, mono8/8UC1 -> [H, W] u8,
            rgb8/bgr8/8UC3 -> [H, W, 3] u8 (channel order as sent), 32FC1 -> [H, W] f32.
        allowed: encodings the caller accepts (None = all of ENCODINGS).
        allow_non_finite: keep NaN/inf in float images (depth outputs: NaN = invalid, REP 118);
            inputs keep the default and reject them.
    Returns:
        The pixels, native byte order; a view of msg.data when no byte swap is needed.
    Raises:
        ImageDecodeError with reason zero_size | unsupported_encoding | bad_step |
        bad_data_length | non_finite.
    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height == 0 or width == 0:
        raise ImageDecodeError("zero_size", f"image is {width}x{height}: nothing to decode")
    if msg.encoding not in ENCODINGS:
        raise ImageDecodeError(
            "unsupported_encoding",
            f"encoding '{msg.encoding}' is not supported (supported: {sorted(ENCODINGS)})",
        )
    dtype, channels = ENCODINGS[msg.encoding]
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageDecodeError(
            "bad_step", f"step {step} < width*channels*bytes = {row_bytes} for {msg.encoding}"
        )
    data = msg.data
    if step * height != len(data):
        raise ImageDecodeError(
            "bad_data_length",
            f"len(data) = {len(data)} but step*height = {step}*{height} = {step * height}",
        )
    flat = np.frombuffer(data, dtype=np.uint8)
    # [H, step] bytes -> [H, W*C*itemsize] without the row padding -> typed [H, W(, C)]
    rows = flat.reshape(height, step)[:, :row_bytes]
    wire = dtype.newbyteorder(">" if msg.is_bigendian else "<")
    if step != row_bytes:
        rows = np.ascontiguousarray(rows)  # padded rows: one copy to drop the padding
    pixels = rows.view(wire).reshape((height, width, channels) if channels > 1 else (height, width))
    if wire != dtype:
        pixels = pixels.astype(dtype)  # byte swap to native order (copy)
    if dtype.kind == "f" and not allow_non_finite and not np.isfinite(pixels).all():
        raise ImageDecodeError("non_finite", f"{msg.encoding} image contains NaN or inf")
    # After the scan on purpose: a float image with NaN sent to an integer-only input is
    # reported as non_finite, the more specific reason (DESIGN: NaN/inf input is its own case).
    if allowed is not None and msg.encoding not in allowed:
        raise ImageDecodeError(
            "unsupported_encoding",
            f"encoding '{msg.encoding}' not accepted here (send one of {list(allowed)})",
        )
    return pixels


def numpy_to_image(array_: np.ndarray, encoding: str, header=None) -> Image:
    """Build an Image from an array (little-endian, no row padding).

    Args:
        array_: [H, W] or [H, W, C] whose dtype and channels match `encoding` (any byte order).
        encoding: one of ENCODINGS.
        header: std_msgs/Header to copy in (stamp and frame_id), or None.
    Raises:
        ValueError for an unknown encoding, a channel count or a dtype that does not match it.
        Nothing is cast: a float64 depth sent as 16UC1 would wrap 70000 to 4464 and NaN to 0,
        so the caller converts (and clips, and decides what NaN means) on purpose.
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding '{encoding}' is not supported (supported: {sorted(ENCODINGS)})")
    dtype, channels = ENCODINGS[encoding]
    shape_channels = 1 if array_.ndim == 2 else array_.shape[2]
    if array_.ndim not in (2, 3) or shape_channels != channels:
        raise ValueError(f"{encoding} needs {channels} channel(s), got shape {array_.shape}")
    if (array_.dtype.kind, array_.dtype.itemsize) != (dtype.kind, dtype.itemsize):
        raise ValueError(f"encoding {encoding} needs {dtype.name} pixels, got {array_.dtype.name}; "
                         f"convert the array to {dtype.name} first (clip the range, decide what "
                         f"NaN becomes), numpy_to_image does not cast")
    pixels = np.ascontiguousarray(array_, dtype=dtype.newbyteorder("<"))
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(pixels.shape[0]), int(pixels.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = int(pixels.shape[1] * channels * dtype.itemsize)
    msg.data = bytes_to_array(pixels)
    return msg


def bytes_to_array(pixels: np.ndarray) -> array.array:
    """A contiguous array's bytes as the `array('B')` rosidl stores uint8[] fields in (one memcpy)."""
    out = array.array("B")
    out.frombytes(memoryview(np.ascontiguousarray(pixels)).cast("B"))
    return out


def new_byte_array(size: int) -> array.array:
    """A zeroed `array('B')` of `size` bytes (memset speed) for numpy to write into in place."""
    return array.array("B", b"\0") * size


def empty_image(height: int, width: int, encoding: str, header=None) -> tuple[Image, np.ndarray]:
    """An Image of the given size and a writable numpy view of its data ([H, W] or [H, W, C]).

    Filling the view fills the message: the pixels are written once, no tobytes()/frombytes().
    """
    if encoding not in ENCODINGS:
        raise ValueError(f"encoding '{encoding}' is not supported (supported: {sorted(ENCODINGS)})")
    dtype, channels = ENCODINGS[encoding]
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.encoding, msg.is_bigendian = int(height), int(width), encoding, 0
    msg.step = int(width * channels * dtype.itemsize)
    msg.data = new_byte_array(msg.step * msg.height)
    shape = (height, width, channels) if channels > 1 else (height, width)
    return msg, np.frombuffer(msg.data, dtype=dtype.newbyteorder("<")).reshape(shape)
