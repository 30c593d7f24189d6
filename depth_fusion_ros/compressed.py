"""sensor_msgs/CompressedImage -> numpy, as image_transport's plugins write them (no cv_bridge).

Formats (ros-perception/image_transport_plugins, ROS 2):
- compressed_image_transport: `format` = "<encoding>; <codec> compressed [<target>]", data =
  the file bytes. JPEG: "<enc>; jpeg compressed bgr8" (colour) or "... mono8" (grey; a 16-bit
  image is sent as 8 bits and scaled back by 256 on decoding). PNG: colour as "bgr8"/"bgr16"
  target, mono kept at its bit depth with no target, e.g. "mono16; png compressed " for a
  16-bit thermal image. Colour data is in BGR order when the target says "bgr", otherwise in the
  order of <enc> (old publishers).
- Old publishers and some drivers write just "jpeg" / "png": one channel = mono8 (mono16 if the
  file is 16-bit), three = bgr8.
- compressed_depth_image_transport: "<enc>; compressedDepth [png|rvl]", data = a 12-byte
  ConfigHeader (int32 format, float32 depthParam[2]) then the file. For 16UC1/mono16 the PNG
  holds the raw values and the header is not needed; 32FC1 (quantised inverse depth) and RVL
  are not accepted.
Every rejection is an ImageDecodeError whose `reason` is a diagnostics counter key.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from depth_fusion_ros.ros_image import ENCODINGS, ImageDecodeError

DEPTH_HEADER_BYTES = 12  # compressed_depth_image_transport's ConfigHeader
CODECS = ("jpeg", "png", "tiff", "compressedDepth")


@dataclass(frozen=True)
class CompressedFormat:
    encoding: str | None  # declared sensor_msgs encoding; None for "jpeg"/"png" alone
    codec: str  # one of CODECS
    bgr: bool  # colour data is in BGR order


def parse_format(text: str) -> CompressedFormat:
    """The CompressedImage.format string. Raises ImageDecodeError(unsupported_format)."""
    encoding, sep, rest = text.partition(";")
    if not sep:
        encoding, rest = None, text
    rest_l = rest.strip().lower()
    if "compresseddepth" in rest_l:
        if "rvl" in rest_l:
            raise ImageDecodeError("unsupported_format", f"format '{text}': RVL compressedDepth "
                                   "is not supported; publish png (compressedDepth.format: png)")
        codec = "compressedDepth"
    elif "png" in rest_l:
        codec = "png"
    elif "jpeg" in rest_l or "jpg" in rest_l:
        codec = "jpeg"
    elif "tiff" in rest_l:
        codec = "tiff"
    else:
        raise ImageDecodeError("unsupported_format", f"format '{text}' is not one of "
                               f"compressed_image_transport's jpeg/png/tiff or compressedDepth png")
    bgr = encoding is None or "compressed bgr" in rest_l
    return CompressedFormat(encoding.strip() if encoding is not None else None, codec, bgr)


def compressed_format_error(msg, allowed: tuple[str, ...] | None = None) -> ImageDecodeError | None:
    """What can be known without decoding (the subscription callback): format, encoding, size."""
    try:
        fmt = parse_format(msg.format)
    except ImageDecodeError as err:
        return err
    if len(msg.data) == 0:
        return ImageDecodeError("zero_size", "compressed image has no data")
    if fmt.encoding is not None:
        if fmt.encoding not in ENCODINGS or (allowed is not None and fmt.encoding not in allowed):
            return ImageDecodeError("unsupported_encoding", f"format '{msg.format}': encoding "
                                    f"'{fmt.encoding}' not accepted here "
                                    f"(send one of {list(allowed or ENCODINGS)})")
    return None


def compressed_to_numpy(msg, allowed: tuple[str, ...] | None = None) -> tuple[np.ndarray, str]:
    """Decode a sensor_msgs/CompressedImage.

    Returns:
        (pixels, encoding): pixels laid out as image_to_numpy gives them for `encoding`
        (mono16/16UC1 [H, W] u16, mono8/8UC1 [H, W] u8, rgb8 [H, W, 3] RGB, bgr8 [H, W, 3] BGR).
    Raises:
        ImageDecodeError with reason unsupported_format | zero_size | unsupported_encoding |
        undecodable | wrong_channels | wrong_bit_depth.
    """
    problem = compressed_format_error(msg, allowed)
    if problem is not None:
        raise problem
    fmt = parse_format(msg.format)
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if fmt.codec == "compressedDepth":
        data = data[DEPTH_HEADER_BYTES:]
    pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if pixels is None or pixels.size == 0:
        raise ImageDecodeError("undecodable", f"{fmt.codec} data of {len(msg.data)} bytes "
                               f"could not be decoded (format '{msg.format}')")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    encoding = fmt.encoding or _implied_encoding(channels, pixels.dtype)
    if fmt.codec == "compressedDepth" and encoding not in ("16UC1", "mono16"):
        raise ImageDecodeError("unsupported_encoding", f"compressedDepth '{encoding}' is not a "
                               "16-bit image (32FC1 depth is not a thermal image)")
    dtype, want_channels = ENCODINGS[encoding]
    if channels != want_channels:
        raise ImageDecodeError("wrong_channels", f"format '{msg.format}' declares {encoding} "
                               f"({want_channels} channel(s)) but the data has {channels}")
    if pixels.dtype != dtype:
        if not (fmt.codec == "jpeg" and dtype == np.uint16 and pixels.dtype == np.uint8):
            raise ImageDecodeError("wrong_bit_depth", f"format '{msg.format}' declares {encoding} "
                                   f"({dtype.name}) but the data is {pixels.dtype.name}")
        pixels = pixels.astype(np.uint16) * np.uint16(256)  # 16-bit sent as 8-bit JPEG
    if channels == 3 and fmt.bgr and encoding == "rgb8":
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    if allowed is not None and encoding not in allowed:
        raise ImageDecodeError("unsupported_encoding", f"decoded {encoding} not accepted here "
                               f"(send one of {list(allowed)})")
    return pixels, encoding


def _implied_encoding(channels: int, dtype: np.dtype) -> str:
    """Encoding of a file whose format string does not declare one (old publishers)."""
    if channels == 1:
        return "mono16" if dtype == np.uint16 else "mono8"
    if channels == 3:
        return "bgr8"
    raise ImageDecodeError("wrong_channels", f"compressed image with {channels} channels "
                           "(1 or 3 supported)")
