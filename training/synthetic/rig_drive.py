"""A simulated drive of a user's own rig: what `rig_bag.py` records and what checks compare with.

The rig differs from MS2 on purpose, as a user's would: thermal 640x480 and RGB 1024x576 raw
images with lens distortion (plumb_bob), a spinning LiDAR on the roof in its own slightly tilted
frame, unsynchronised stamps, and optionally a stop (the vehicle standing still for a while).
Everything is a pure function of the spec: the exact (rectified) images and depth of each camera
at any stamp, every LiDAR scan with each point's firing time, the vehicle pose and velocity, and
for any set of world points whether a camera sees them (`visible_from`), by ray casting.

Frames (REP 103/105): `odom` (the vehicle's start, x forward, y left, z up), `base_link` on the
road under the vehicle, `thermal_optical_frame`, `rgb_optical_frame`, `lidar_link`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .raycast import CameraRays, _slab, cast, cast_static, static_layer
from .render import SequenceRenderer, SequenceSpec
from .rig import CAMERA_RATE_HZ, Camera, Rig, make_rig, rotation_xyz_deg
from .rig_lidar import WORLD_FROM_ROS, LidarCaster, LidarSpec, Scan
from .scene import FIRST_BOX_ID
from .sensors import render_rgb, surface_points
from .thermal import render_thermal

ROS_FROM_WORLD = WORLD_FROM_ROS.T
FRAMES = {"thr": "thermal_optical_frame", "rgb": "rgb_optical_frame", "lidar": "lidar_link",
          "base": "base_link", "odom": "odom"}
# Raw-lens distortion (plumb_bob k1 k2 p1 p2 k3) and how much wider the rectified camera is, so
# that every raw pixel has a rendered rectified pixel behind it (like alpha = 1 rectification).
DISTORTION = {"thr": (np.array([-0.20, 0.05, 0.0005, -0.0005, 0.0]), 0.85),
              "rgb": (np.array([-0.10, 0.02, 0.0003, 0.0002, 0.0]), 0.92)}
R_BASE_LIDAR = rotation_xyz_deg(1.0, 0.0, 0.0) @ np.array(  # a slightly tilted, yawed mount
    [[np.cos(0.03), -np.sin(0.03), 0.0], [np.sin(0.03), np.cos(0.03), 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class DriveSpec:
    """What to simulate. `stop` = (start_s, duration_s) standing still; `scale` shrinks the
    cameras (tests); `seconds` of recording."""

    seed: int = 0
    kind: str = "day"
    seconds: float = 2.0
    scale: float = 1.0
    stop: tuple[float, float] | None = None
    lidar: LidarSpec = field(default_factory=LidarSpec)
    lidar_phase_s: float = 0.023
    tf_rate_hz: float = 50.0


def rig_cameras(scale: float) -> Rig:
    """The user's rig: cameras of non-MS2 sizes at MS2-like places (`rig.make_rig`)."""
    base = make_rig()

    def camera(name, like: Camera, width, height, focal) -> Camera:
        w, h, f = round(width * scale), round(height * scale), focal * scale
        k = np.array([[f, 0.0, (w - 1) / 2 + 3.1 * scale], [0.0, f, (h - 1) / 2 - 2.3 * scale],
                      [0.0, 0.0, 1.0]])
        k[:2, :2] *= DISTORTION[name][1]  # the rendered camera is the rectified one
        return Camera(name=name, height=h, width=w, K=k, R_hub_cam=like.R_hub_cam,
                      t_hub_cam_m=like.t_hub_cam_m)

    return Rig(rgb=camera("rgb", base.rgb, 1024, 576, 820.0),
               thr=camera("thr", base.thr, 640, 480, 530.0),
               hub_on_vehicle_m=base.hub_on_vehicle_m, lidar_on_vehicle_m=base.lidar_on_vehicle_m)


def raw_intrinsics(camera: Camera) -> np.ndarray:
    """K of the raw (distorted) image; `camera.K` is the rectified one (camera_info P)."""
    k = camera.K.copy()
    k[:2, :2] /= DISTORTION[camera.name][1]
    return k


class Drive:
    """The simulated drive of one `DriveSpec` (deterministic)."""

    def __init__(self, spec: DriveSpec) -> None:
        self.spec = spec
        frames = int(np.ceil(spec.seconds * CAMERA_RATE_HZ)) + 2
        self.renderer = SequenceRenderer(
            SequenceSpec("rig", "train", spec.kind, frames, spec.seed), rig=rig_cameras(spec.scale))
        self.rig, self.scene = self.renderer.rig, self.renderer.scene
        self.start_ns = self.renderer.start_ns
        lane = self.scene.vehicle_position(0.0)
        self.lidar = LidarCaster(self.scene, spec.lidar, R_BASE_LIDAR,
                                 lane[:2] + self.rig.lidar_on_vehicle_m[:2])
        self._raw_maps: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ motion
    def travelled_s(self, time_s):
        """Driving time behind the vehicle at `time_s` (time spent standing still removed)."""
        if self.spec.stop is None:
            return time_s
        begin, length = self.spec.stop
        return np.where(time_s < begin, time_s, np.maximum(begin, time_s - length))

    def speed_mps(self, time_s) -> np.ndarray:
        moving = self.travelled_s(np.asarray(time_s) + 1e-6) != self.travelled_s(time_s)
        return np.where(moving, self.scene.speed_mps, 0.0)

    def vehicle_world(self, time_s: float) -> np.ndarray:
        """Vehicle origin in the generator world at `time_s` since the start."""
        return self.scene.vehicle_position(0.0) + np.array(
            [0.0, 0.0, self.scene.speed_mps * float(self.travelled_s(time_s))])

    def T_odom_base(self, time_s: float) -> np.ndarray:
        pose = np.eye(4)
        pose[:3, 3] = ROS_FROM_WORLD @ (self.vehicle_world(time_s) - self.vehicle_world(0.0))
        return pose

    def T_base(self, name: str) -> np.ndarray:
        """Static pose of a sensor frame ("thr", "rgb", "lidar") in base_link."""
        pose = np.eye(4)
        if name == "lidar":
            pose[:3, :3], offset = R_BASE_LIDAR, self.rig.lidar_on_vehicle_m
        else:
            cam = getattr(self.rig, name)
            pose[:3, :3] = ROS_FROM_WORLD @ cam.R_hub_cam
            offset = self.rig.hub_on_vehicle_m + cam.t_hub_cam_m
        pose[:3, 3] = ROS_FROM_WORLD @ offset
        return pose

    def seconds_of(self, stamp_ns: int) -> float:
        return (int(stamp_ns) - self.start_ns) * 1e-9

    # ------------------------------------------------------------------ stamps
    def camera_stamps_ns(self) -> dict[str, np.ndarray]:
        stamps = self.renderer.stamps_ns()
        count = int(self.spec.seconds * CAMERA_RATE_HZ)
        return {view: s[:count] for view, s in stamps.items()}

    def scan_stamps_ns(self) -> np.ndarray:
        period = 1.0 / self.spec.lidar.rate_hz
        count = int((self.spec.seconds - self.spec.lidar_phase_s) / period)
        return self.start_ns + np.round((self.spec.lidar_phase_s + np.arange(count) * period)
                                        * 1e9).astype(np.int64)

    # ------------------------------------------------------------------ sensors
    def camera_origin(self, name: str, time_s: float) -> np.ndarray:
        cam = getattr(self.rig, name)
        return self.vehicle_world(time_s) + self.rig.hub_on_vehicle_m + cam.t_hub_cam_m

    def render(self, name: str, stamp_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """(rectified image: thr [H,W] u16 / rgb [H,W,3] u8 RGB, exact optical depth [H,W] f32
        metres, inf = sky) of camera `name` at `stamp_ns`."""
        time_s = self.seconds_of(stamp_ns)
        r = self.renderer
        rays = r.rays[name]
        hits = cast(rays, r.layers[name], self.scene, self.camera_origin(name, time_s), time_s)
        pts = surface_points(hits, rays)
        rng = np.random.default_rng([self.spec.seed, 2, int(stamp_ns) % 2**62, len(name)])
        if name == "rgb":
            image = render_rgb(self.scene, hits, rays, pts, r.light, rng, r.fixed["rgb"])
        else:
            image = render_thermal(self.scene, hits, pts, r.light, rng, r.fixed["thr"])
        return image, hits.t_m

    def distort(self, name: str, rectified: np.ndarray) -> np.ndarray:
        """The raw image the camera records: the rectified render seen through the lens model
        (each raw pixel samples the rectified image where cv2.undistortPoints puts it)."""
        if name not in self._raw_maps:
            cam = getattr(self.rig, name)
            v, u = np.mgrid[0:cam.height, 0:cam.width].astype(np.float32)
            raw = np.stack([u.ravel(), v.ravel()], axis=-1)[:, None, :]
            rect = cv2.undistortPoints(raw, raw_intrinsics(cam), DISTORTION[name][0], P=cam.K)
            rect = rect.reshape(cam.height, cam.width, 2)
            self._raw_maps[name] = (rect[..., 0].copy(), rect[..., 1].copy())
        map_x, map_y = self._raw_maps[name]
        return cv2.remap(rectified, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def rectified_coverage(self, name: str) -> np.ndarray:
        """[H, W] bool: rectified pixels that have a raw pixel behind them (the rest of a
        rectified image, and its GT, is empty)."""
        cam = getattr(self.rig, name)
        map_x, map_y = cv2.initUndistortRectifyMap(raw_intrinsics(cam), DISTORTION[name][0],
                                                   np.eye(3), cam.K, (cam.width, cam.height),
                                                   cv2.CV_32FC1)
        return (map_x >= 0) & (map_x <= cam.width - 1) & (map_y >= 0) & (map_y <= cam.height - 1)

    def scan(self, stamp_ns: int) -> Scan:
        """The scan whose first column fires at `stamp_ns`."""
        rng = np.random.default_rng([self.spec.seed, 3, int(stamp_ns) % 2**62])
        lidar_origin = self.rig.lidar_on_vehicle_m
        return self.lidar.cast(lambda t: self.vehicle_world(t) + lidar_origin,
                               self.seconds_of(stamp_ns), rng)

    def visible_from(self, name: str, stamp_ns: int, world: np.ndarray,
                     boxes_at_ns: int | None = None, margin: float = 1e-3) -> np.ndarray:
        """[N] bool: camera `name` at `stamp_ns` sees the world points [N, 3] (nothing nearer on
        the segment from its centre). Moving boxes are where they are at `boxes_at_ns` (default
        the camera's stamp): the LiDAR's firing time isolates the parallax occlusion that a
        filter can remove from the displacement of objects that moved in between. A point counts
        as hidden when the surface in front is nearer by more than `margin` of its distance."""
        time_s = self.seconds_of(stamp_ns)
        origin = self.camera_origin(name, time_s)
        box_s = time_s if boxes_at_ns is None else self.seconds_of(boxes_at_ns)
        delta = world - origin
        dist = np.linalg.norm(delta, axis=1)
        d = delta / dist[:, None]
        comps = tuple(np.ascontiguousarray(d[None, :, i], np.float32) for i in range(3))
        safe = tuple(np.where(np.abs(c) < 1e-9, np.float32(1e-9), c) for c in comps)
        rays = CameraRays(camera=None, R_world_cam=np.eye(3), d=comps,
                          inv=tuple((1.0 / c).astype(np.float32) for c in safe))
        hits = cast_static(static_layer(rays, self.scene, origin), self.scene, origin)
        boxes = self.scene.boxes
        for i in range(len(boxes.velocity_mps)):
            shift = np.array([0.0, 0.0, boxes.velocity_mps[i] * box_s], np.float32)
            _slab(rays, hits, FIRST_BOX_ID + i, boxes.min_m[i] + shift, boxes.max_m[i] + shift,
                  (slice(None), slice(None)))
        return hits.t_m[0] >= dist - np.maximum(0.02, margin * dist)
