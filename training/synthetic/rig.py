"""The synthetic sensor rig: an MS2-like RGB + thermal pair with the NIR camera as the hub.

MS2 (Shin et al., CVPR 2023) mounts the RGB and NIR stereo pairs behind the windscreen and the
thermal pair on the roof; `calib.npy` gives every camera relative to the left NIR camera with
translations in millimetres. We mimic that: the two rendered cameras have different intrinsics,
positions and orientations, so their images are genuinely misaligned.

World frame used by the renderer: x right, y down, z forward (the optical convention), ground at
y = 0, the vehicle driving along +z.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depth_fusion_ros.geometry import scale_intrinsics

CAMERA_RATE_HZ = 15.0  # MS2 cameras run at 15 fps


def rotation_xyz_deg(pitch_deg: float, yaw_deg: float, roll_deg: float) -> np.ndarray:
    """Rotation (camera -> parent) from pitch about x, yaw about y, roll about z, in degrees."""
    p, y, r = np.deg2rad([pitch_deg, yaw_deg, roll_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return ry @ rx @ rz


@dataclass(frozen=True)
class Camera:
    """A pinhole camera posed in the NIR hub frame.

    Attributes:
        name: MS2 folder name ("rgb" or "thr").
        height, width: image size in pixels.
        K: [3, 3] intrinsics.
        R_hub_cam: [3, 3] rotation camera -> NIR hub frame.
        t_hub_cam_m: (3,) camera centre in the NIR hub frame, metres.
    """

    name: str
    height: int
    width: int
    K: np.ndarray
    R_hub_cam: np.ndarray
    t_hub_cam_m: np.ndarray

    def rays_cam(self) -> np.ndarray:
        """Un-normalised rays K^-1 [u, v, 1] of every pixel centre, [H, W, 3] float64, z = 1,
        so a ray parameter t along them *is* the optical depth z."""
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        x = (u - self.K[0, 2]) / self.K[0, 0]
        y = (v - self.K[1, 2]) / self.K[1, 1]
        return np.stack([x, y, np.ones_like(x)], axis=-1)  # [H, W, 3]


def _intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Rig:
    """Cameras of the synthetic rig and where the hub (NIR left) and LiDAR sit on the vehicle."""

    rgb: Camera
    thr: Camera
    hub_on_vehicle_m: np.ndarray  # NIR hub position relative to the vehicle origin (on the road)
    lidar_on_vehicle_m: np.ndarray
    stereo_baseline_m: float = 0.3


def make_rig(aligned: bool = False, matched_fov: bool = False) -> Rig:
    """The default MS2-like rig: RGB 1224x384 behind the windscreen, thermal 640x256 on the roof.

    aligned: a control rig (the fusion ablation's): the RGB camera sits where the thermal camera
    is, looks the same way and has its field of view, so after both images are resized to one
    network size every pixel of one is the same ray as that pixel of the other (a beam-splitter
    rig). MS2's cameras, and the default, differ in place, pitch and field of view.
    matched_fov: half of that control: the RGB camera keeps its own place and pitch but gets the
    thermal camera's field of view (its intrinsics scaled to the RGB image size), so the two
    images show the scene at one scale and differ only by the cameras' poses.
    """
    thr = Camera(
        name="thr", height=256, width=640,
        K=_intrinsics(400.0, 400.0, 322.1, 131.7),
        # On the roof: 45 cm up, 35 cm back, 15 cm to the right, pitched down and yawed a little.
        R_hub_cam=rotation_xyz_deg(-3.5, -1.2, 0.6),
        t_hub_cam_m=np.array([0.15, -0.45, -0.35]),
    )
    # The thermal camera's field of view at the RGB image size (the node's resize rule).
    thermal_fov = scale_intrinsics(thr.K, (thr.width, thr.height), (1224, 384))
    if aligned:
        rgb = Camera(name="rgb", height=384, width=1224, K=thermal_fov,
                     R_hub_cam=thr.R_hub_cam, t_hub_cam_m=thr.t_hub_cam_m)
    else:
        rgb = Camera(
            name="rgb", height=384, width=1224,
            K=thermal_fov if matched_fov else _intrinsics(1000.0, 1000.0, 615.3, 186.4),
            # Slightly beside and below the NIR camera, pitched down 1.5 deg to see more road.
            R_hub_cam=rotation_xyz_deg(-1.5, 0.6, 0.2),
            t_hub_cam_m=np.array([-0.12, 0.04, 0.05]),
        )
    return Rig(rgb=rgb, thr=thr, hub_on_vehicle_m=np.array([0.0, -1.40, 1.20]),
               lidar_on_vehicle_m=np.array([0.0, -1.95, 0.85]))


def _nir_to_cam(camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """(R, T_mm) with x_cam = R @ x_nir + T/1000, the MS2 `R_nir2X / T_nir2X` convention."""
    R = camera.R_hub_cam.T
    return R, -R @ camera.t_hub_cam_m * 1000.0


def calib_dict(rig: Rig) -> dict[str, np.ndarray]:
    """`calib.npy` content with the real MS2 key names; translations in millimetres."""
    R_rgb, T_rgb = _nir_to_cam(rig.rgb)
    R_thr, T_thr = _nir_to_cam(rig.thr)
    k_nir = _intrinsics(1100.0, 1100.0, 640.0, 176.0)  # NIR 1280x352, not rendered
    right = np.array([-rig.stereo_baseline_m * 1000.0, 0.0, 0.0])  # x_R = x_L - baseline
    return {
        "K_rgbL": rig.rgb.K.copy(), "K_nirL": k_nir, "K_thrL": rig.thr.K.copy(),
        "R_rgbR": np.eye(3), "T_rgbR": right.copy(),
        "R_nirR": np.eye(3), "T_nirR": right.copy(),
        "R_thrR": np.eye(3), "T_thrR": right.copy(),
        "R_nir2thr": R_thr, "T_nir2thr": T_thr,
        "R_nir2rgb": R_rgb, "T_nir2rgb": T_rgb,
    }
