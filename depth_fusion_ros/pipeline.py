"""Per-pair processing without ROS plumbing: decode -> preprocess -> (infer) -> depth messages.

The node feeds it message objects and publishes what comes out; the benchmark
(bench/node_overhead.py) and the tests drive it directly. Inference stays outside so its cost
can be measured on its own: `prepare()` gives the network inputs, the caller runs
`backend.infer`, `postprocess()` turns the depth maps into Image/CameraInfo/PointCloud2 messages.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from sensor_msgs.msg import CameraInfo, Image

from depth_fusion_ros import preprocess
from depth_fusion_ros.clouds import empty_cloud, xyz_intensity_points, xyz_rgb_points
from depth_fusion_ros.geometry import RayCache, intrinsics_error, mask_depth_range, scale_intrinsics
from depth_fusion_ros.ros_image import ImageDecodeError, empty_image, image_to_numpy

VIEWS = ("thermal", "rgb")
THERMAL_ENCODINGS = ("mono16", "16UC1", "mono8", "8UC1")
RGB_ENCODINGS = ("rgb8", "bgr8", "mono8", "8UC1")


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


@dataclass
class Prepared:
    """One decoded, validated pair and its network inputs."""

    headers: dict[str, object]  # view -> std_msgs/Header of the input image
    camera_hw: dict[str, tuple[int, int]]  # view -> input image (height, width)
    infos: dict[str, CameraInfo]
    rgb: np.ndarray  # [H, W, 3] uint8 RGB order (or [H, W] mono), kept for the cloud colours
    thermal_input: np.ndarray  # [1, 1, h, w] float32 normalised
    rgb_input: np.ndarray  # [1, 3, h, w] float32 normalised


@dataclass
class ViewOutput:
    image: Image
    info: CameraInfo
    cloud: object | None  # sensor_msgs/PointCloud2 when requested


def camera_info_error(info: CameraInfo) -> tuple[str, str] | None:
    """(reason, message) if a CameraInfo cannot be used for geometry, else None."""
    problem = intrinsics_error(np.asarray(info.k, dtype=np.float64))
    if problem is not None:
        return ("zero_K" if "all zero" in problem else "bad_K"), problem
    return None


class DepthPipeline:
    """Stateful only in its ray cache (rays are rebuilt when K, size or stride change)."""

    def __init__(self, config: PipelineConfig):
        self.config = config
        self.rays = RayCache()
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

    def prepare(self, thermal_msg: Image, rgb_msg: Image,
                thermal_info: CameraInfo | None, rgb_info: CameraInfo | None) -> Prepared:
        """Decode and preprocess a pair. Raises BadInput naming the view and reason."""
        thermal = _decode("thermal", thermal_msg, THERMAL_ENCODINGS)
        rgb = _decode("rgb", rgb_msg, RGB_ENCODINGS)
        if rgb_msg.encoding == "bgr8":
            rgb = cv2.cvtColor(rgb, cv2.COLOR_BGR2RGB)
        infos = {}
        for view, info, pixels in (("thermal", thermal_info, thermal), ("rgb", rgb_info, rgb)):
            if view in self.config.views:
                infos[view] = _check_info(view, info, pixels.shape[:2])
        net_hw = self.config.network_hw
        return Prepared(
            headers={"thermal": thermal_msg.header, "rgb": rgb_msg.header},
            camera_hw={"thermal": thermal.shape[:2], "rgb": rgb.shape[:2]},
            infos=infos,
            rgb=rgb,
            thermal_input=preprocess.preprocess_thermal(thermal, net_hw)[None],  # [1, 1, h, w]
            rgb_input=preprocess.preprocess_rgb(rgb, net_hw)[None],  # [1, 3, h, w]
        )

    def postprocess(self, prepared: Prepared, depths: dict[str, np.ndarray],
                    clouds: dict[str, bool]) -> dict[str, ViewOutput]:
        """Depth maps [h, w] metres (network size) -> messages per published view.

        Args:
            clouds: view -> whether to build its point cloud (someone subscribes).
        """
        outputs = {}
        for view in self.config.views:
            if view not in depths:
                raise KeyError(f"the model gave no '{view}' depth (it outputs {sorted(depths)})")
            outputs[view] = self._view(prepared, view, depths[view], clouds.get(view, False))
        return outputs

    def _view(self, prepared: Prepared, view: str, depth_net: np.ndarray,
              want_cloud: bool) -> ViewOutput:
        cfg = self.config
        cam_h, cam_w = prepared.camera_hw[view]
        info_in = prepared.infos[view]
        k = np.asarray(info_in.k, dtype=np.float64).reshape(3, 3)
        p = np.asarray(info_in.p, dtype=np.float64).reshape(3, 4)
        depth_net = np.asarray(depth_net, dtype=np.float32).reshape(cfg.network_hw)  # [h, w]
        header = prepared.headers[view]
        out_hw = (cam_h, cam_w) if cfg.output_size == "camera" else cfg.network_hw
        image, depth = self._message(("image", view, out_hw),
                                     lambda: empty_image(*out_hw, "32FC1", header), header)
        if cfg.output_size == "camera":  # depth: [H, W] view of image.data
            depth[...] = cv2.resize(depth_net, (cam_w, cam_h), interpolation=cv2.INTER_LINEAR)
        else:
            depth[...] = depth_net  # the message owns a copy; the backend's buffer is untouched
            out_h, out_w = cfg.network_hw
            k = scale_intrinsics(k, (cam_w, cam_h), (out_w, out_h))
            p = scale_intrinsics(p, (cam_w, cam_h), (out_w, out_h))
        if not p.any():
            p = np.hstack([k, np.zeros((3, 1))])  # uncalibrated P: a monocular P = [K | 0]
        mask_depth_range(depth, cfg.min_depth_m, cfg.max_depth_m)
        info = _camera_info(info_in, header, depth.shape, k, p)
        cloud = self._cloud(prepared, view, depth, k, header) if want_cloud else None
        return ViewOutput(image, info, cloud)

    def _cloud(self, prepared: Prepared, view: str, depth: np.ndarray, k: np.ndarray, header):
        """Organised cloud of one view, written straight into the message's data."""
        stride = self.config.points_stride
        rays = self.rays.get(view, k, depth.shape[1], depth.shape[0], stride)
        grid_h, grid_w = rays.x_per_z.shape
        fourth = "intensity" if view == "thermal" else "rgb"
        cloud, points = self._message(("cloud", view, grid_h, grid_w),
                                      lambda: empty_cloud(grid_h, grid_w, fourth, header), header)
        if view == "thermal":
            xyz_intensity_points(depth, rays, stride, self._intensity(prepared, depth.shape),
                                 out=points)
        else:
            xyz_rgb_points(depth, rays, stride, self._colours(prepared, depth.shape), out=points)
        return cloud

    def _intensity(self, prepared: Prepared, out_hw: tuple[int, int]) -> np.ndarray:
        """Thermal brightness in [0, 1] as the network saw it, on the strided grid. [h, w] f32."""
        stride = self.config.points_stride
        # Undo the mean/std normalisation: the percentile-clipped, min-max scaled image.
        unit = prepared.thermal_input[0, 0, ::stride, ::stride] * preprocess.NORM_STD
        unit += preprocess.NORM_MEAN
        grid_hw = (-(-out_hw[0] // stride), -(-out_hw[1] // stride))
        if unit.shape != grid_hw:  # output_size=camera: resample to the camera grid
            unit = cv2.resize(unit, grid_hw[::-1], interpolation=cv2.INTER_LINEAR)
        return np.clip(unit, 0.0, 1.0, out=unit)

    def _colours(self, prepared: Prepared, out_hw: tuple[int, int]) -> np.ndarray:
        """RGB colour of each point on the strided grid. [h, w, 3] uint8."""
        stride = self.config.points_stride
        rgb = prepared.rgb
        if rgb.ndim == 2:
            rgb = np.repeat(rgb[:, :, None], 3, axis=2)  # mono camera: grey points
        if rgb.shape[:2] != out_hw:
            # Nearest sampling at the output pixels: a point's colour is one source pixel's.
            rgb = cv2.resize(rgb, (out_hw[1], out_hw[0]), interpolation=cv2.INTER_NEAREST)
        return rgb[::stride, ::stride]


def _decode(view: str, msg: Image, encodings: tuple[str, ...]) -> np.ndarray:
    try:
        return image_to_numpy(msg, allowed=encodings)
    except ImageDecodeError as err:
        raise BadInput(view, "image", err.reason, str(err)) from err


def _check_info(view: str, info: CameraInfo | None, image_hw: tuple[int, int]) -> CameraInfo:
    if info is None:
        raise BadInput(view, "camera_info", "no_camera_info",
                       "no valid camera_info received yet for this camera")
    problem = camera_info_error(info)
    if problem is not None:
        raise BadInput(view, "camera_info", *problem)
    if (info.width or info.height) and (info.height, info.width) != tuple(image_hw):
        raise BadInput(view, "camera_info", "camera_info_size_mismatch",
                       f"camera_info is {info.width}x{info.height} but the image is "
                       f"{image_hw[1]}x{image_hw[0]}")
    return info


def _camera_info(info_in: CameraInfo, header, depth_hw, k: np.ndarray, p: np.ndarray) -> CameraInfo:
    info = CameraInfo()
    info.header = header
    info.height, info.width = int(depth_hw[0]), int(depth_hw[1])
    info.distortion_model = info_in.distortion_model
    info.d = list(info_in.d)
    info.r = info_in.r
    info.k = k.ravel().tolist()
    info.p = p.ravel().tolist()
    return info
