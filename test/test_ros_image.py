"""sensor_msgs/Image <-> numpy: round trips, padding, endianness and every rejection reason."""
from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image

from depth_fusion_ros.ros_image import (
    ImageDecodeError,
    empty_image,
    image_to_numpy,
    numpy_to_image,
)

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("encoding,array", [
    ("mono16", RNG.integers(0, 65535, (4, 5), dtype=np.uint16)),
    ("mono8", RNG.integers(0, 255, (4, 5), dtype=np.uint8)),
    ("rgb8", RNG.integers(0, 255, (4, 5, 3), dtype=np.uint8)),
    ("32FC1", RNG.standard_normal((4, 5)).astype(np.float32)),
])
def test_round_trip(encoding, array):
    msg = numpy_to_image(array, encoding)
    assert (msg.height, msg.width, msg.encoding) == (4, 5, encoding)
    assert msg.step * msg.height == len(msg.data)
    out = image_to_numpy(msg)
    assert out.dtype == array.dtype and np.array_equal(out, array)


def test_step_padding_and_big_endian():
    values = np.arange(12, dtype=np.uint16).reshape(3, 4) * 300
    msg = Image(height=3, width=4, encoding="mono16", is_bigendian=1, step=10)
    padded = np.zeros((3, 10), np.uint8)
    padded[:, :8] = values.astype(">u2").view(np.uint8).reshape(3, 8)
    msg.data = padded.tobytes()
    out = image_to_numpy(msg)
    assert out.dtype == np.uint16 and np.array_equal(out, values)


def test_empty_image_view_writes_message():
    msg, view = empty_image(2, 3, "32FC1")
    view[...] = 1.5
    assert msg.step == 12 and np.array_equal(image_to_numpy(msg), np.full((2, 3), 1.5, np.float32))


def _msg(**fields):
    base = dict(height=2, width=2, encoding="mono8", step=2, data=bytes(4))
    base.update(fields)
    return Image(**base)


@pytest.mark.parametrize("msg,reason", [
    (_msg(height=0, step=2, data=b""), "zero_size"),
    (_msg(encoding="yuv422"), "unsupported_encoding"),
    (_msg(step=1), "bad_step"),
    (_msg(data=bytes(3)), "bad_data_length"),
    (numpy_to_image(np.array([[1.0, np.nan]], np.float32), "32FC1"), "non_finite"),
    (numpy_to_image(np.array([[1.0, np.inf]], np.float32), "32FC1"), "non_finite"),
])
def test_rejections_carry_reason(msg, reason):
    with pytest.raises(ImageDecodeError) as err:
        image_to_numpy(msg)
    assert err.value.reason == reason


def test_allowed_encodings():
    msg = numpy_to_image(np.zeros((2, 2), np.float32), "32FC1")
    with pytest.raises(ImageDecodeError) as err:
        image_to_numpy(msg, allowed=("mono16",))
    assert err.value.reason == "unsupported_encoding" and "mono16" in str(err.value)


@pytest.mark.parametrize("encoding,array", [
    ("16UC1", np.array([[70000.0, -1.0, 3.7, np.nan]])),  # would wrap to [4464, 65535, 3, 0]
    ("mono16", np.array([[1, 2]], np.int32)),
    ("mono16", np.array([[1, 2]], np.uint8)),
    ("32FC1", np.array([[1.5, 2.5]], np.float64)),
    ("32FC1", np.array([[1, 2]], np.uint16)),
    ("mono8", np.array([[300, 2]], np.uint16)),
    ("rgb8", np.zeros((2, 2, 3), np.float32)),
    ("bgr8", np.zeros((2, 2, 3), np.int8)),
])
def test_numpy_to_image_refuses_mismatched_dtype(encoding, array):
    with pytest.raises(ValueError) as err:
        numpy_to_image(array, encoding)
    assert encoding in str(err.value) and array.dtype.name in str(err.value)


def test_numpy_to_image_accepts_big_endian_of_the_right_type():
    values = np.array([[70, 65535]], dtype=">u2")
    out = image_to_numpy(numpy_to_image(values, "16UC1"))
    assert out.dtype == np.uint16 and out.tolist() == [[70, 65535]]
