"""Per-pair processing without ROS plumbing: decode -> rectify -> preprocess -> (infer) -> depth
messages.

Images are sensor_msgs/Image or CompressedImage; a raw image whose camera_info has distortion is
rectified (camera_model.py) before the network, and every output describes the rectified image:
geometry from P (adjusted for ROI and binning, then for the resize to the network size with the
half-pixel rule of geometry.scale_intrinsics), camera_info with D = 0 and R = I.
The node feeds it message objects and publishes what comes out; the benchmark
(bench/node_overhead.py) and the tests drive it directly. Inference stays outside so its cost
can be measured on its own: `prepare()` gives the network inputs, the caller runs
`backend.infer_outputs`, `postprocess()` turns the depth (and confidence) maps into
Image/CameraInfo/PointCloud2 messages, plus the confidence image and, on request, the colourised
depth.

Single-camera inputs (the node's degraded mode): `prepare` takes None for a missing camera, feeds
the network `preprocess.missing_input` for it (what modality-dropout training fed) and publishes
only the views whose camera is present (`Prepared.views`).

Confidence (models with an uncertainty head): `{view}/depth/confidence` 32FC1, same size and
header as the depth, value exp(-sigma) in (0, 1] where sigma is the predicted expected
|log(depth / true depth)| (0.9: about 10 % expected relative error); resized like the depth for
output_size camera; NaN wherever the depth is NaN. `min_confidence` > 0 masks depth pixels of
lower confidence as NaN (so also in the cloud).
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from depth_fusion_ros import preprocess
from depth_fusion_ros.camera_model import CameraInfoError, CameraModel, Rectifier, camera_model
from depth_fusion_ros.clouds import empty_cloud, xyz_intensity_points, xyz_rgb_points
from depth_fusion_ros.compressed import compressed_format_error, compressed_to_numpy
from depth_fusion_ros.degraded import sampled_usability
from depth_fusion_ros.geometry import RayCache, mask_depth_range, scale_intrinsics
from depth_fusion_ros.ros_image import ImageDecodeError, empty_image, image_to_numpy
from depth_fusion_ros.viz import colorize_depth

VIEWS = ("thermal", "rgb")
THERMAL_ENCODINGS = ("mono16", "16UC1", "mono8", "8UC1")
RGB_ENCODINGS = ("rgb8", "bgr8", "mono8", "8UC1")
ENCODINGS = {"thermal": THERMAL_ENCODINGS, "rgb": RGB_ENCODINGS}
IDENTITY_R = np.eye(3).ravel().tolist()


class BadInput(ValueError):
    """A message of one pair that cannot be used; `source` is 'image' or 'camera_info'."""

    def __init__(self, view: str, source: str, reason: str, message: str):
        super().__init__(message)
        self.view, self.source, self.reason = view, source, reason


@dataclass(frozen=True)
class PipelineConfig:
    views: tuple[str, ...]  # views to publish, subset of VIEWS
    network_hw: tuple[int, int]  # model input (height, width), from the sidecar
    min_depth_m: float
    max_depth_m: float
    output_size: str  # "network" | "camera"
    points_stride: int
    # Reuse each view's output messages (and their multi-MB buffers) from pair to pair. Only for a
    # caller that is done with the previous outputs when it asks for the next ones, as the node is:
    # rclpy's publish() serialises synchronously. Saves the page faults of fresh 2.6 MB buffers,
    # which are most of the per-pair cost of the clouds.
    reuse_buffers: bool = False
    # Cameras whose raw images (camera_info D non-zero) are rectified before the network; the
    # others are taken as rectified already (e.g. image_proc's image_rect), geometry from P.
    rectify: tuple[str, ...] = VIEWS
    # Depth pixels whose confidence is below this are NaN (0 = off; needs confidence outputs).
    min_confidence: float = 0.0
    # Fixed metres range of the colourised depth (viz.colorize_depth: TURBO, near = blue).
    colored_range_m: tuple[float, float] = (0.0, 80.0)


@dataclass
class Prepared:
    """One decoded, validated input (a pair, or one camera alone) and its network inputs."""

    headers: dict[str, object]  # camera -> std_msgs/Header of its input image (present ones)
    camera_hw: dict[str, tuple[int, int]]  # camera -> input image (height, width)
    models: dict[str, CameraModel]  # published views (and others with a camera_info)
    rgb: np.ndarray | None  # [H, W, 3] uint8 RGB (or [H, W] mono), rectified; None if missing
    rgb_small: np.ndarray | None  # [h, w, 3] uint8 RGB at the network size; None if missing
    thermal_input: np.ndarray  # [1, 1, h, w] float32 normalised (missing_input if missing)
    rgb_input: np.ndarray  # [1, 3, h, w] float32 normalised (missing_input if missing)
    views: tuple[str, ...] = VIEWS  # views to publish: configured ones whose camera is present


@dataclass
class ViewOutput:
    image: Image
    info: CameraInfo
    cloud: object | None  # sensor_msgs/PointCloud2 when requested
    confidence: Image | None = None  # 32FC1 exp(-sigma), for models with confidence outputs
    colored: Image | None = None  # rgb8 colourised depth, when requested


@dataclass
class DecodedImage:
    """An image already decoded (a compressed one the node decoded on arrival to judge its
    usability), passed on so that it is not decoded twice."""

    header: object  # std_msgs/Header
    pixels: np.ndarray  # as image_to_numpy / compressed_to_numpy give them for `encoding`
    encoding: str


class SerializedImage:
    """A sensor_msgs/Image read from its CDR bytes (a `raw=True` subscription) without a copy.

    Has the fields image_to_numpy and the pipeline read (header, height, width, encoding,
    is_bigendian, step, data); `data` is a memoryview into the received bytes. rclpy's typed
    take copies a 1.4 MB image three times with the GIL held (DDS sample -> C struct -> bytes ->
    array); the raw take copies it once into the bytes this view points at.
    """

    __slots__ = ("header", "height", "width", "encoding", "is_bigendian", "step", "data")

    def __init__(self, cdr: bytes):
        """Parse XCDR1 (little- or big-endian, as its encapsulation header says).

        Raises ImageDecodeError('bad_cdr') for bytes that are not a whole Image.
        """
        try:
            self._parse(memoryview(cdr))
        except (struct.error, ValueError, UnicodeDecodeError) as err:
            raise ImageDecodeError("bad_cdr", f"not a serialized sensor_msgs/Image ({err}): "
                                   f"{len(cdr)} bytes") from err

    def _parse(self, buf: memoryview) -> None:
        if len(buf) < 4 or buf[0] != 0 or buf[1] not in (0, 1):
            raise ValueError("no CDR encapsulation header")
        order = "<" if buf[1] == 1 else ">"
        u32 = struct.Struct(order + "I")
        pos = 4  # CDR alignment counts from the end of the encapsulation header

        def uint32() -> int:
            nonlocal pos
            pos += -(pos - 4) % 4
            (value,) = u32.unpack_from(buf, pos)
            pos += 4
            return value

        def string() -> str:
            nonlocal pos
            size = uint32()  # bytes including the terminating NUL
            if size < 1 or pos + size > len(buf):
                raise ValueError("string runs past the end")
            text = bytes(buf[pos:pos + size - 1]).decode()
            pos += size
            return text

        sec, nanosec = struct.unpack_from(order + "iI", buf, pos)
        pos += 8
        self.header = Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=string())
        self.height, self.width = uint32(), uint32()
        self.encoding = string()
        self.is_bigendian = buf[pos]
        pos += 1
        self.step = uint32()
        size = uint32()
        if pos + size != len(buf) and pos + size + -(pos + size) % 4 != len(buf):
            raise ValueError(f"data holds {size} bytes but {len(buf) - pos} follow")
        self.data = buf[pos:pos + size]


def accept_image(view: str, msg, judge_usability: bool = False) -> tuple[object, str | None]:
    """What the subscription callback does with an image before it is routed: check format,
    encoding and size and, with judge_usability, why it cannot help the network
    (degraded.image_usability on a sample of its pixels).

    A compressed image is only decoded to be judged (else decoding is the worker's, so the
    executor keeps draining); it then goes on as a DecodedImage so it is not decoded twice.
    Args:
        msg: serialized Image bytes (a raw subscription), sensor_msgs/Image or CompressedImage.
    Returns:
        (message to route, why it is unusable or None; always None without judge_usability).
    Raises:
        BadInput(view, "image", reason) for a message that cannot be used.
    """
    try:
        if isinstance(msg, bytes):
            msg = SerializedImage(msg)
        if hasattr(msg, "format"):  # sensor_msgs/CompressedImage
            problem = compressed_format_error(msg, allowed=ENCODINGS[view])
            if problem is not None:
                raise problem
            if not judge_usability:
                return msg, None
            pixels, encoding = compressed_to_numpy(msg, allowed=ENCODINGS[view])
            msg = DecodedImage(msg.header, pixels, encoding)
        else:
            pixels = image_to_numpy(msg, allowed=ENCODINGS[view])  # a view, no copy
    except ImageDecodeError as err:
        raise BadInput(view, "image", err.reason, str(err)) from err
    return msg, (sampled_usability(view, pixels) if judge_usability else None)


def camera_info_error(info: CameraInfo, rectify: bool = True) -> tuple[str, str] | None:
    """(reason, message) if a CameraInfo cannot be used for geometry, else None.

    Checks what can be checked without the image (the subscription callback); the image size
    is checked against ROI and binning when a pair is prepared.
    """
    try:
        camera_model(info, rectify=rectify)
    except CameraInfoError as err:
        return err.reason, str(err)
    return None


class DepthPipeline:
    """Stateful only in its caches: rectification maps (rebuilt when a camera_info changes)
    and rays (rebuilt when the published intrinsics, size or stride change).

    `config` may be replaced by another PipelineConfig between or during calls (the node's live
    parameters, set from the executor thread): postprocess reads each of its fields once per
    view, so one view's output never mixes two configurations.
    """

    def __init__(self, config: PipelineConfig):
        self.config = config
        self.rays = RayCache()
        self.rectifier = Rectifier()
        # view -> (camera_info message, image (h, w), its model): a received message is not
        # modified afterwards, so the same object for the same image size has the same model.
        self._models: dict[str, tuple[object, tuple[int, int], CameraModel]] = {}
        self._buffers: dict[tuple, tuple] = {}

    def _message(self, key: tuple, make, header):
        """A fresh (message, writable view) from `make()`, or the cached one with a new header."""
        if not self.config.reuse_buffers:
            return make()
        if key not in self._buffers:
            self._buffers[key] = make()
        msg, view = self._buffers[key]
        msg.header = header
        return msg, view

    def prepare(self, thermal_msg, rgb_msg, thermal_info: CameraInfo | None,
                rgb_info: CameraInfo | None) -> Prepared:
        """Decode, rectify and preprocess a pair, or one camera alone (the other's message None).
        Raises BadInput naming the view and reason.

        Args:
            thermal_msg, rgb_msg: sensor_msgs/Image, SerializedImage, CompressedImage,
                DecodedImage, or None for a missing camera (at least one given).
        """
        pixels, models, headers = {}, {}, {}
        for view, msg, info in (("thermal", thermal_msg, thermal_info), ("rgb", rgb_msg, rgb_info)):
            if msg is None:
                continue
            image = _decode(view, msg)
            model = self._model(view, info, image.shape[:2])
            if model is not None:
                models[view] = model
                if model.needs_rectification:
                    image = self.rectifier.rectify(view, image, model)
            pixels[view], headers[view] = image, msg.header
        if not pixels:
            raise ValueError("prepare needs the image of at least one camera")
        net_hw = self.config.network_hw
        # Both images are stretched to the network size, whatever their aspect ratio: the
        # training does the same to MS2's 1224x384 RGB (DESIGN.md section 2), and the per-axis
        # intrinsics of the published depth keep the geometry exact.
        thermal = (preprocess.preprocess_thermal(pixels["thermal"], net_hw) if "thermal" in pixels
                   else self._missing("thermal"))
        if "rgb" in pixels:
            rgb_small = preprocess.resize_rgb(pixels["rgb"], net_hw)  # also colours the cloud
            rgb = preprocess.normalise_rgb(rgb_small)
        else:
            rgb_small, rgb = None, self._missing("rgb")
        return Prepared(
            headers=headers, camera_hw={view: image.shape[:2] for view, image in pixels.items()},
            models=models, rgb=pixels.get("rgb"), rgb_small=rgb_small,
            thermal_input=thermal[None], rgb_input=rgb[None],  # [1, C, h, w]
            views=tuple(v for v in self.config.views if v in pixels))

    def _missing(self, modality: str) -> np.ndarray:
        """preprocess.missing_input of the network size, made once (it is never written)."""
        key = ("missing", modality)
        if key not in self._buffers:
            self._buffers[key] = preprocess.missing_input(modality, self.config.network_hw)
        return self._buffers[key]

    def _model(self, view: str, info: CameraInfo | None,
               image_hw: tuple[int, int]) -> CameraModel | None:
        """The camera model of a view; required for published views."""
        required = view in self.config.views
        if info is None:
            if required:
                raise BadInput(view, "camera_info", "no_camera_info",
                               "no valid camera_info received yet for this camera")
            return None
        cached = self._models.get(view)
        if cached is not None and cached[0] is info and cached[1] == image_hw:
            return cached[2]
        try:
            model = camera_model(info, image_hw, rectify=view in self.config.rectify)
        except CameraInfoError as err:
            if required:
                raise BadInput(view, "camera_info", err.reason, str(err)) from err
            return None  # an unpublished view's image goes to the network as it is
        self._models[view] = (info, image_hw, model)
        return model

    def postprocess(self, prepared: Prepared, depths: dict[str, np.ndarray],
                    clouds: dict[str, bool], confidences: dict[str, np.ndarray] | None = None,
                    colored: dict[str, bool] | None = None) -> dict[str, ViewOutput]:
        """Depth maps [h, w] metres (network size) -> messages per view of `prepared.views`.

        Args:
            clouds: view -> whether to build its point cloud (someone subscribes).
            confidences: view -> [h, w] confidence (Backend.infer_outputs' "confidence");
                views without one get no confidence image.
            colored: view -> whether to build its colourised depth (someone subscribes).
        """
        confidences, colored = confidences or {}, colored or {}
        outputs = {}
        for view in prepared.views:
            if view not in depths:
                raise KeyError(f"the model gave no '{view}' depth (it outputs {sorted(depths)})")
            outputs[view] = self._view(prepared, view, depths[view], confidences.get(view),
                                       clouds.get(view, False), colored.get(view, False))
        return outputs

    def _view(self, prepared: Prepared, view: str, depth_net: np.ndarray,
              confidence_net: np.ndarray | None, want_cloud: bool,
              want_colored: bool) -> ViewOutput:
        cfg = self.config
        cam_h, cam_w = prepared.camera_hw[view]
        model = prepared.models[view]
        header = prepared.headers[view]
        out_hw = (cam_h, cam_w) if cfg.output_size == "camera" else cfg.network_hw
        image, depth = self._map(("image", view, out_hw), depth_net, header)
        p = model.p  # [3, 4] the rectified image's geometry at the camera size
        if cfg.output_size != "camera":
            p = scale_intrinsics(p, (cam_w, cam_h), (out_hw[1], out_hw[0]))
        if model.needs_rectification:  # no measurement where the rectified image had no pixel
            depth[self.rectifier.invalid_mask(view, model, out_hw)] = np.nan
        mask_depth_range(depth, cfg.min_depth_m, cfg.max_depth_m)
        confidence = None
        if confidence_net is not None:
            confidence, values = self._map(("confidence", view, out_hw), confidence_net, header)
            if cfg.min_confidence > 0.0:
                depth[values < cfg.min_confidence] = np.nan
            values[np.isnan(depth)] = np.nan
        info = self._info(view, header, depth.shape, p)
        cloud = self._cloud(prepared, view, depth, p[:, :3], header) if want_cloud else None
        return ViewOutput(image, info, cloud, confidence,
                          self._colored(view, depth, header) if want_colored else None)

    def _info(self, view: str, header, depth_hw: tuple[int, int], p: np.ndarray) -> CameraInfo:
        """The published camera_info; with reuse_buffers built again only when its geometry
        changes (building a CameraInfo is ~0.05 ms of Python), else given the new header."""
        if not self.config.reuse_buffers:
            return _rectified_camera_info(header, depth_hw, p)
        geometry = (tuple(depth_hw), p.tobytes())
        cached = self._buffers.get(("info", view))
        if cached is None or cached[1] != geometry:
            cached = self._buffers[("info", view)] = (
                _rectified_camera_info(header, depth_hw, p), geometry)
        cached[0].header = header
        return cached[0]

    def _map(self, key: tuple, net_map: np.ndarray, header) -> tuple[Image, np.ndarray]:
        """A 32FC1 message of the output size (key[2]) holding a network-size map, resized
        bilinearly to the camera size for output_size camera. Returns (message, [H, W] view)."""
        out_hw = key[2]
        net_map = np.asarray(net_map, dtype=np.float32).reshape(self.config.network_hw)  # [h, w]
        msg, values = self._message(key, lambda: empty_image(*out_hw, "32FC1", header), header)
        if tuple(out_hw) != tuple(self.config.network_hw):
            values[...] = cv2.resize(net_map, (out_hw[1], out_hw[0]),
                                     interpolation=cv2.INTER_LINEAR)
        else:
            values[...] = net_map  # the message owns a copy; the backend's buffer is untouched
        return msg, values

    def _colored(self, view: str, depth: np.ndarray, header) -> Image:
        """rgb8 colourised depth: viz.colorize_depth without the scale bar (the demo's colours)
        on the fixed colored_range_m; NaN black."""
        low_m, high_m = self.config.colored_range_m
        msg, pixels = self._message(("colored", view, depth.shape),
                                    lambda: empty_image(*depth.shape, "rgb8", header), header)
        pixels[...] = colorize_depth(depth, high_m, min_depth_m=low_m, scale_bar=False)
        return msg

    def _cloud(self, prepared: Prepared, view: str, depth: np.ndarray, k: np.ndarray, header):
        """Organised cloud of one view, written straight into the message's data. The stride is
        read once: `config` may be replaced meanwhile (the node's live parameters)."""
        stride = self.config.points_stride
        rays = self.rays.get(view, k, depth.shape[1], depth.shape[0], stride)
        grid_h, grid_w = rays.x_per_z.shape
        fourth = "intensity" if view == "thermal" else "rgb"
        cloud, points = self._message(("cloud", view, grid_h, grid_w),
                                      lambda: empty_cloud(grid_h, grid_w, fourth, header), header)
        if view == "thermal":
            xyz_intensity_points(depth, rays, stride,
                                 self._intensity(prepared, depth.shape, stride), out=points)
        else:
            xyz_rgb_points(depth, rays, stride, self._colours(prepared, depth.shape, stride),
                           out=points)
        return cloud

    def _intensity(self, prepared: Prepared, out_hw: tuple[int, int], stride: int) -> np.ndarray:
        """Thermal brightness in [0, 1] as the network saw it, on the strided grid. [h, w] f32."""
        unit = prepared.thermal_input[0, 0]  # [h, w] at the network size
        if unit.shape != tuple(out_hw):  # output_size=camera: resample (pixel centres) first,
            unit = cv2.resize(unit, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_LINEAR)
        # then stride, so point (i, j) gets the brightness of pixel (i * stride, j * stride).
        # Undo the mean/std normalisation: the percentile-clipped, min-max scaled image.
        unit = unit[::stride, ::stride] * preprocess.NORM_STD
        unit += preprocess.NORM_MEAN
        return np.clip(unit, 0.0, 1.0, out=unit)

    def _colours(self, prepared: Prepared, out_hw: tuple[int, int], stride: int) -> np.ndarray:
        """RGB colour of each point on the strided grid. [h, w, 3] uint8.

        At the network size (output_size network) a point's colour is the network input's
        pixel: the RGB image resized bilinearly, pixel centres aligned, as the network saw it
        (the thermal view's intensity is the same). At the camera size it is the camera's pixel.
        """
        rgb = prepared.rgb_small if prepared.rgb_small.shape[:2] == out_hw else prepared.rgb
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)  # mono camera: grey points
        return rgb[::stride, ::stride]


def _decode(view: str, msg) -> np.ndarray:
    """Pixels of an Image, SerializedImage or CompressedImage; colour in RGB order."""
    if isinstance(msg, DecodedImage):
        pixels, encoding = msg.pixels, msg.encoding
        return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB) if encoding == "bgr8" else pixels
    try:
        if hasattr(msg, "format"):  # sensor_msgs/CompressedImage
            pixels, encoding = compressed_to_numpy(msg, allowed=ENCODINGS[view])
        else:
            pixels, encoding = image_to_numpy(msg, allowed=ENCODINGS[view]), msg.encoding
    except ImageDecodeError as err:
        raise BadInput(view, "image", err.reason, str(err)) from err
    if encoding == "bgr8":
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    return pixels


def _rectified_camera_info(header, depth_hw, p: np.ndarray) -> CameraInfo:
    """camera_info of the published (rectified, resized) depth: D = 0, R = I, K = P[:, :3].

    Binning and ROI stay zero: they were applied to P already, and the depth is a whole image.
    """
    info = CameraInfo()
    info.header = header
    info.height, info.width = int(depth_hw[0]), int(depth_hw[1])
    info.distortion_model = "plumb_bob"
    info.d = [0.0] * 5
    info.r = IDENTITY_R
    info.k = p[:, :3].ravel().tolist()
    info.p = p.ravel().tolist()
    return info
