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


# --- sensor_msgs/CompressedImage, as compressed_image_transport writes it ---------------------

def _compressed(fmt: str, data: bytes):
    from sensor_msgs.msg import CompressedImage

    return CompressedImage(format=fmt, data=data)


def _png(array: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", array)
    assert ok
    return buf.tobytes()


def test_compressed_mono16_png_and_compressed_depth_round_trip():
    from depth_fusion_ros.compressed import compressed_to_numpy

    counts = RNG.integers(3000, 6000, (6, 7), dtype=np.uint16)
    pixels, encoding = compressed_to_numpy(_compressed("mono16; png compressed ", _png(counts)))
    assert encoding == "mono16" and pixels.dtype == np.uint16 and np.array_equal(pixels, counts)
    # compressed_depth_image_transport: 12-byte ConfigHeader (format, 2 floats), then the PNG
    header = np.array([0], "<i4").tobytes() + np.array([0.0, 0.0], "<f4").tobytes()
    msg = _compressed("16UC1; compressedDepth png", header + _png(counts))
    pixels, encoding = compressed_to_numpy(msg, allowed=("mono16", "16UC1"))
    assert encoding == "16UC1" and np.array_equal(pixels, counts)


def test_compressed_colour_order_follows_the_format_string():
    import cv2

    from depth_fusion_ros.compressed import compressed_to_numpy

    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 30  # R, G, B
    bgr_png = _png(rgb[..., ::-1])  # the publisher converts to bgr8 before imencode
    pixels, encoding = compressed_to_numpy(_compressed("rgb8; png compressed bgr8", bgr_png))
    assert encoding == "rgb8" and pixels[0, 0].tolist() == [200, 100, 30]
    pixels, encoding = compressed_to_numpy(_compressed("bgr8; png compressed bgr8", bgr_png))
    assert encoding == "bgr8" and pixels[0, 0].tolist() == [30, 100, 200]
    ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]))
    pixels, encoding = compressed_to_numpy(_compressed("rgb8; jpeg compressed bgr8", jpeg.tobytes()))
    assert encoding == "rgb8" and np.abs(pixels[8, 8].astype(int) - [200, 100, 30]).max() <= 3
    pixels, encoding = compressed_to_numpy(_compressed("jpeg", jpeg.tobytes()))  # old publishers
    assert encoding == "bgr8" and np.abs(pixels[8, 8].astype(int) - [30, 100, 200]).max() <= 3
    grey = RNG.integers(0, 255, (5, 5), dtype=np.uint8)  # 8-bit (AGC) thermal as mono8 PNG
    pixels, encoding = compressed_to_numpy(_compressed("mono8; png compressed ", _png(grey)))
    assert encoding == "mono8" and np.array_equal(pixels, grey)


THERMAL = ("mono16", "16UC1", "mono8", "8UC1")


@pytest.mark.parametrize("fmt,data,reason", [
    ("mono16; png compressed ", b"\x89PNG not really", "undecodable"),
    ("mono16; png compressed ", b"", "zero_size"),
    ("mono16; png compressed ", "eight", "wrong_bit_depth"),  # 8-bit PNG declared 16-bit
    ("mono16; png compressed ", "colour", "wrong_channels"),
    ("mono8; png compressed ", "sixteen", "wrong_bit_depth"),
    ("rgb8; png compressed bgr8", "sixteen", "unsupported_encoding"),  # not a thermal encoding
    ("16UC1; compressedDepth rvl", "sixteen", "unsupported_format"),
    ("mono16; qoi compressed", "sixteen", "unsupported_format"),
    ("32FC1; compressedDepth png", "sixteen", "unsupported_encoding"),
    ("16UC1; compressedDepth png", b"\x00" * 12, "undecodable"),
])
def test_bad_compressed_images_carry_a_reason(fmt, data, reason):
    from depth_fusion_ros.compressed import compressed_to_numpy

    arrays = {"eight": np.zeros((4, 4), np.uint8), "sixteen": np.zeros((4, 4), np.uint16),
              "colour": np.zeros((4, 4, 3), np.uint8)}
    if isinstance(data, str):
        data = _png(arrays[data])
    with pytest.raises(ImageDecodeError) as err:
        compressed_to_numpy(_compressed(fmt, data), allowed=THERMAL)
    assert err.value.reason == reason, str(err.value)
