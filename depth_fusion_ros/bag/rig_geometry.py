"""Camera and LiDAR geometry of a recorded rig for `bag_to_ms2`: camera models, the MS2
calibration from tf, and LiDAR points moved into a camera (motion-compensated when odometry is
recorded). Poses `T_a_b` map frame-b points into frame a, metres.

MS2's calib.npy describes every camera relative to the left NIR camera (the hub). A rig without
NIR camera needs a stand-in: the **rectified thermal camera is the hub** here, so
R_nir2thr = I, T_nir2thr = 0, R/T_nir2rgb is the rectified RGB camera's pose relative to it
(x_rgb = R x_thr + T, T in millimetres as MS2 stores it) and K_nirL = K_thrL. Every MS2 reader
(ms2.camera_extrinsics, the loader, ms2_to_bag) then gets T_thr2rgb exactly.

Without odometry the points are not motion-compensated: a point measured dt before or after the
image is off by up to v * |dt| (vehicle speed v; 0.5 m at 10 m/s and 50 ms, the worst case of a
10 Hz LiDAR matched to the nearest scan), which `bag_to_ms2` reports as the frames' largest |dt|.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from depth_fusion_ros.bag.bag_index import BagInputError
from depth_fusion_ros.bag.sensor_decode import Cloud
from depth_fusion_ros.bag.tf_buffer import TfBuffer, TfError
from depth_fusion_ros.camera_model import CameraInfoError, CameraModel, camera_model

TIME_QUANTUM_NS = 100_000  # point times grouped to 0.1 ms (3 mm at 30 m/s) for the pose lookups


@dataclass(frozen=True)
class CameraSetup:
    """One camera as the converter uses it."""

    view: str                  # "thr" | "rgb"
    frame_id: str              # optical frame of the images
    model: CameraModel         # from the camera_info (raw K, D, R, P)
    rect_from_optical: np.ndarray  # [4, 4]: camera optical frame -> rectified projection frame

    @property
    def K(self) -> np.ndarray:
        """Rectified intrinsics (P[:, :3]): what calib.npy stores and the GT is projected with."""
        return self.model.p[:, :3]

    @property
    def hw(self) -> tuple[int, int]:
        return self.model.height, self.model.width


def camera_setup(view: str, topic: str, infos: list, frame_id: str) -> tuple[CameraSetup, int]:
    """The first usable camera_info of `infos` [(log_ns, msg)] as a CameraSetup, and how many
    unusable ones came before it; BagInputError naming `topic` if none is usable."""
    first_error = None
    for bad, (_, info) in enumerate(infos):
        try:
            model = camera_model(info)
            if model.width == 0:
                raise CameraInfoError("camera_info_size_mismatch", "width and height are 0")
        except CameraInfoError as err:
            first_error = first_error or err
            continue
        frame = frame_id or info.header.frame_id
        if not frame:
            raise BagInputError(f"the images of the {view} camera and {topic} have an empty "
                                "frame_id: the converter cannot place the camera in tf")
        rect = np.eye(4)
        rect[:3, :3] = model.r if model.needs_rectification else np.eye(3)
        # P = K' [I | t']: a stereo right camera's P[:, 3] = K' t' shifts its projection centre.
        rect[:3, 3] = np.linalg.solve(model.p[:, :3], model.p[:, 3])
        return CameraSetup(view, frame.lstrip("/"), model, rect), bad
    reason = f" (first problem: {first_error})" if first_error else ""
    raise BagInputError(f"no usable camera_info on {topic} ({len(infos)} messages){reason}; "
                        "record the camera_info of a calibrated camera")


def sensor_pose(tf: TfBuffer, base: str, frame: str, stamp_ns: int, what: str) -> np.ndarray:
    """T_base_frame at the stamp; BagInputError naming the frame pair when tf cannot give it."""
    try:
        return tf.lookup(base, frame, stamp_ns)
    except TfError as err:
        raise BagInputError(f"no transform between {base!r} and the {what} frame {frame!r} in "
                            f"/tf_static or /tf ({err}); record it (robot_state_publisher or "
                            f"static_transform_publisher) or pass --base-frame") from err


def calib_dict(thr: CameraSetup, rgb: CameraSetup, T_thr_rgb: np.ndarray) -> dict[str, np.ndarray]:
    """calib.npy with the thermal camera as hub (module docstring); translations in mm.

    Args:
        T_thr_rgb: [4, 4] pose of the RGB optical frame in the thermal optical frame (tf).
    """
    rgb_from_thr = rgb.rect_from_optical @ np.linalg.inv(T_thr_rgb) @ np.linalg.inv(
        thr.rect_from_optical)  # rectified thermal -> rectified RGB
    return {
        "K_thrL": thr.K.copy(), "K_rgbL": rgb.K.copy(), "K_nirL": thr.K.copy(),
        "R_nir2thr": np.eye(3), "T_nir2thr": np.zeros(3),
        "R_nir2rgb": rgb_from_thr[:3, :3].copy(), "T_nir2rgb": rgb_from_thr[:3, 3] * 1000.0,
    }


def points_in_camera(tf: TfBuffer, cam: CameraSetup, cam_ns: int, lidar_frame: str,
                     cloud: Cloud, fixed: str | None) -> tuple[np.ndarray, np.ndarray, int]:
    """A scan's points in the camera's rectified frame at the image stamp.

    With a `fixed` frame (odom) every point is moved with the vehicle pose at its own firing time
    and at the image stamp (tf2's time-travel lookup); without, the static extrinsics are used.
    Returns:
        (points [N, 3], LiDAR centre [3] in the same frame, largest |t_point - t_image| in ns).
    """
    if cloud.xyz.shape[0] == 0:
        return np.zeros((0, 3)), np.zeros(3), 0
    if fixed is not None:
        quantised = (cloud.time_ns + TIME_QUANTUM_NS // 2) // TIME_QUANTUM_NS * TIME_QUANTUM_NS
        times, inverse = np.unique(quantised, return_inverse=True)
        poses = tf.lookup_moving(cam.frame_id, cam_ns, lidar_frame, times, fixed)  # [U, 4, 4]
        poses = cam.rect_from_optical @ poses
        pts = np.einsum("nij,nj->ni", poses[inverse, :3, :3], cloud.xyz) + poses[inverse, :3, 3]
        centre = poses[times.size // 2, :3, 3]
    else:
        pose = cam.rect_from_optical @ tf.lookup(cam.frame_id, lidar_frame, cam_ns)
        pts = cloud.xyz @ pose[:3, :3].T + pose[:3, 3]
        centre = pose[:3, 3]
    dt = int(np.abs(cloud.time_ns - cam_ns).max()) if cloud.time_ns.size else 0
    return pts, centre, dt
