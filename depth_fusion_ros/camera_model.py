"""Camera models from CameraInfo fields, read the way image_geometry reads them (no rclpy here).

The rules (image_geometry's PinholeCameraModel::fromCameraInfo and initRectificationMaps,
ros-perception/vision_opencv, which depth_image_proc and RViz consumers follow):
- The geometry of a rectified image is P: fx = P[0,0], fy = P[1,1], cx = P[0,2], cy = P[1,2]
  (Tx = P[0,3] for the right camera of a stereo pair). An all-zero P is an uncalibrated
  monocular camera: P = [K | 0].
- D is the raw image's distortion. Any non-zero coefficient means the image is raw and needs
  rectification (plumb_bob / rational_polynomial: cv2.initUndistortRectifyMap with K, D, R and
  P[:3, :3]; equidistant: cv2.fisheye); all zero (or empty) means the image is rectified already.
- width/height are the full (calibration) resolution. A camera that bins or crops says so in
  binning_x/y (0 = 1) and roi (all zero = the full image); the image that arrives is
  roi.width / binning_x by roi.height / binning_y, and K and P are adjusted to it: principal
  point minus the ROI offset, then row 0 (fx, cx, Tx) divided by binning_x and row 1 by
  binning_y. Rectification maps for such an image are built from the adjusted matrices.
Geometry that cannot be right (non-finite values, a focal length absurd for the image size) is
refused with a CameraInfoError whose `reason` is a diagnostics counter key.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# distortion model -> accepted numbers of coefficients (what OpenCV's models take)
DISTORTION_MODELS: dict[str, tuple[int, ...]] = {
    "plumb_bob": (4, 5, 8, 12, 14),
    "rational_polynomial": (4, 5, 8, 12, 14),
    "equidistant": (4,),
}
# Focal length per image side (the larger of width and height). 0.01 is a field of view of
# ~179 degrees, 100 one of ~0.6 degrees: anything outside is a broken calibration, and
# fx = 1e-300 would otherwise turn every point into inf.
FOCAL_PER_SIZE = (0.01, 100.0)
# The principal point may lie outside the image (shifted rectified cameras), not far outside.
PRINCIPAL_POINT_MARGIN = 10.0  # image sizes
ROTATION_TOLERANCE = 1e-3


class CameraInfoError(ValueError):
    """A CameraInfo that cannot describe the image; `reason` is a diagnostics counter key."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, eq=False)
class CameraModel:
    """One camera_info as it applies to the image that arrives (after ROI and binning).

    Attributes:
        width, height: the image's size in pixels.
        k: [3, 3] raw camera matrix, adjusted for ROI and binning.
        p: [3, 4] projection of the rectified image, adjusted; [K | 0] where P was all zero.
        d: [n] distortion coefficients; r: [3, 3] rectification rotation.
        distortion_model: as in the message.
        needs_rectification: the node rectifies the image (D non-zero and rectification on).
        key: hashable identity of all of the above, for caches.
    """

    width: int
    height: int
    k: np.ndarray
    p: np.ndarray
    d: np.ndarray
    r: np.ndarray
    distortion_model: str
    needs_rectification: bool
    key: tuple


def pixel_map(scale_x: float, scale_y: float, offset_x: float = 0.0,
              offset_y: float = 0.0) -> np.ndarray:
    """[3, 3] A with u' = scale_x * u + offset_x, v' = scale_y * v + offset_y; K' = A K, P' = A P.

    Any change of pixel coordinates of that form (crop, binning, resize) maps K and P by one
    left multiplication; P's Tx (row 0, column 3) scales with fx, Ty with fy.
    """
    return np.array([[scale_x, 0.0, offset_x], [0.0, scale_y, offset_y], [0.0, 0.0, 1.0]])


def camera_model(info, image_hw: tuple[int, int] | None = None, *,
                 rectify: bool = True) -> CameraModel:
    """Validated, ROI/binning-adjusted model of a sensor_msgs/CameraInfo (or any object with
    its fields).

    Args:
        info: the camera info.
        image_hw: (height, width) of the image it is used with; None checks what can be checked
            without it (the subscription callback).
        rectify: whether a raw image with distortion is rectified; False means the image is
            rectified already (e.g. image_proc's image_rect next to the raw camera_info), so D
            and R are not used.
    Raises:
        CameraInfoError with reason zero_K | bad_K | bad_P | bad_D | bad_R | bad_binning |
        bad_roi | unsupported_distortion_model | camera_info_size_mismatch.
    """
    full_wh, binning, roi = _geometry_of_image(info, image_hw)
    size_wh = None if roi is None else (roi[2] // binning[0], roi[3] // binning[1])
    if image_hw is not None and size_wh != (image_hw[1], image_hw[0]):
        raise CameraInfoError(
            "camera_info_size_mismatch",
            f"camera_info describes a {size_wh[0]}x{size_wh[1]} image (size {full_wh[0]}x"
            f"{full_wh[1]}, ROI {roi[2]}x{roi[3]}+{roi[0]}+{roi[1]}, binning {binning[0]}x"
            f"{binning[1]}) but the image is {image_hw[1]}x{image_hw[0]}")
    side = max(full_wh) if any(full_wh) else None
    k = _checked_matrix("K", info.k, (3, 3), side, "bad_K")
    p = np.asarray(info.p, dtype=np.float64).reshape(3, 4)
    if np.isfinite(p).all() and not p[:2].any():  # all zero (or only P[2, 2] set): uncalibrated
        p = np.hstack([k, np.zeros((3, 1))])
    p = _checked_matrix("P", p, (3, 4), side, "bad_P")
    d, r, model, distorted = _distortion(info, rectify)
    if roi is not None:  # ROI offset in full-resolution pixels first, then binning
        adjust = pixel_map(1.0 / binning[0], 1.0 / binning[1], -roi[0] / binning[0],
                           -roi[1] / binning[1])
        k, p = adjust @ k, adjust @ p
    width, height = size_wh if size_wh is not None else (0, 0)
    key = (width, height, k.tobytes(), p.tobytes(), d.tobytes(), r.tobytes(), model, distorted)
    return CameraModel(width, height, k, p, d, r, model, distorted, key)


def _geometry_of_image(info, image_hw: tuple[int, int] | None):
    """(full (w, h), binning (x, y), roi (x, y, w, h) or None while the size is unknown)."""
    full_wh = (int(info.width), int(info.height))
    binning = (int(info.binning_x) or 1, int(info.binning_y) or 1)
    roi = _roi(info.roi, full_wh)
    if roi is None and image_hw is not None:
        if any(full_wh):
            raise CameraInfoError("camera_info_size_mismatch",
                                  f"camera_info size {full_wh[0]}x{full_wh[1]} is incomplete")
        # A size-less camera_info (width = height = 0) describes whatever image arrives.
        full_wh = (image_hw[1] * binning[0], image_hw[0] * binning[1])
        roi = (0, 0, *full_wh)
    if roi is not None and (binning[0] > roi[2] or binning[1] > roi[3]):
        raise CameraInfoError("bad_binning", f"binning {binning[0]}x{binning[1]} leaves no pixel "
                              f"of the {roi[2]}x{roi[3]} image")
    return full_wh, binning, roi


def _roi(roi, full_wh: tuple[int, int]) -> tuple[int, int, int, int] | None:
    """(x, y, width, height) of the image inside the full resolution; None if unknown."""
    x, y, w, h = int(roi.x_offset), int(roi.y_offset), int(roi.width), int(roi.height)
    if not (x or y or w or h):
        return (0, 0, *full_wh) if all(full_wh) else None
    if w == 0 or h == 0:
        raise CameraInfoError("bad_roi", f"roi {w}x{h}+{x}+{y} has a zero size "
                              "(all-zero means the full image)")
    if all(full_wh) and (x + w > full_wh[0] or y + h > full_wh[1]):
        raise CameraInfoError("bad_roi", f"roi {w}x{h}+{x}+{y} does not fit in the "
                              f"{full_wh[0]}x{full_wh[1]} image")
    return x, y, w, h


def _checked_matrix(name: str, values, shape: tuple[int, int], side: int | None,
                    reason: str) -> np.ndarray:
    """K or P as float64, refused unless finite, calibrated and of a plausible focal length."""
    m = np.asarray(values, dtype=np.float64).reshape(shape)
    if not np.isfinite(m).all():
        raise CameraInfoError(reason, f"{name} contains NaN or inf")
    if not m.any():
        raise CameraInfoError("zero_K", f"{name} is all zero (uncalibrated camera): calibrate it")
    last_row = [0.0, 0.0, 1.0, 0.0][:shape[1]]
    if not np.allclose(m[2], last_row, atol=1e-9):
        raise CameraInfoError(reason, f"{name}'s third row is {m[2].tolist()}, not {last_row}")
    fx, fy, cx, cy = m[0, 0], m[1, 1], m[0, 2], m[1, 2]
    if fx <= 0.0 or fy <= 0.0:
        raise CameraInfoError(reason, f"{name}: fx={fx} and fy={fy} must be > 0")
    if side is not None:
        low, high = FOCAL_PER_SIZE[0] * side, FOCAL_PER_SIZE[1] * side
        if not (low <= fx <= high and low <= fy <= high):
            raise CameraInfoError(reason, f"{name}: fx={fx:g}, fy={fy:g} outside [{low:g}, "
                                  f"{high:g}] px for a {side} px image: check the calibration")
        margin = PRINCIPAL_POINT_MARGIN * side
        if max(abs(cx), abs(cy)) > margin:
            raise CameraInfoError(reason, f"{name}: principal point ({cx:g}, {cy:g}) is more "
                                  f"than {margin:g} px from the image")
    return m


def _distortion(info, rectify: bool) -> tuple[np.ndarray, np.ndarray, str, bool]:
    """(D, R, model, needs_rectification), D and R checked only when they will be used."""
    model = str(info.distortion_model)
    d = np.asarray(info.d, dtype=np.float64).ravel()
    r = np.asarray(info.r, dtype=np.float64).reshape(3, 3)
    if not rectify:
        return d, r, model, False
    if not np.isfinite(d).all():
        raise CameraInfoError("bad_D", "D contains NaN or inf")
    if not d.any():
        return d, r, model, False  # rectified already (D all zero or empty)
    if model not in DISTORTION_MODELS:
        raise CameraInfoError("unsupported_distortion_model",
                              f"distortion_model '{model}' with non-zero D cannot be rectified "
                              f"(supported: {list(DISTORTION_MODELS)}); rectify it upstream and "
                              f"set rectify off for this camera")
    if d.size not in DISTORTION_MODELS[model]:
        raise CameraInfoError("bad_D", f"{model} needs {DISTORTION_MODELS[model]} coefficients, "
                              f"D has {d.size}")
    if not np.isfinite(r).all():
        raise CameraInfoError("bad_R", "R contains NaN or inf")
    if not r.any():
        r = np.eye(3)  # uncalibrated convention, like an all-zero P: no rectifying rotation
    if not np.allclose(r @ r.T, np.eye(3), atol=ROTATION_TOLERANCE) or np.linalg.det(r) < 0:
        raise CameraInfoError("bad_R", f"R is not a rotation: {r.ravel().tolist()}")
    return d, r, model, True


def rectification_maps(model: CameraModel) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps (fixed-point CV_16SC2, as image_geometry) from the image to its rectified
    version, built from the ROI/binning-adjusted K and P as initRectificationMaps does."""
    size = (model.width, model.height)
    new_k = np.ascontiguousarray(model.p[:, :3])
    if model.distortion_model == "equidistant":
        return cv2.fisheye.initUndistortRectifyMap(model.k, model.d, model.r, new_k, size,
                                                   cv2.CV_16SC2)
    return cv2.initUndistortRectifyMap(model.k, model.d, model.r, new_k, size, cv2.CV_16SC2)


class Rectifier:
    """Rectifies each camera's images with maps cached per camera, rebuilt only on change.

    Pixels of the rectified image whose ray leaves the raw image are filled from the nearest
    edge (BORDER_REPLICATE) rather than black: a black wedge would drag the thermal 1st
    percentile to zero and change the normalisation of the whole frame. They carry no
    measurement, so `invalid_mask` says where they are and the depth there is published NaN.
    """

    def __init__(self):
        self._maps: dict[str, tuple[tuple, np.ndarray, np.ndarray, np.ndarray]] = {}
        self._masks: dict[tuple, tuple[tuple, np.ndarray]] = {}
        self.builds = 0  # how often maps were (re)built; tests check the cache works

    def _entry(self, camera: str, model: CameraModel):
        cached = self._maps.get(camera)
        if cached is None or cached[0] != model.key:
            map1, map2 = rectification_maps(model)
            ones = np.full((model.height, model.width), 255, np.uint8)
            covered = cv2.remap(ones, map1, map2, cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            cached = (model.key, map1, map2, covered < 255)  # [H, W] bool: no source pixel
            self._maps[camera] = cached
            self.builds += 1
        return cached

    def rectify(self, camera: str, image: np.ndarray, model: CameraModel) -> np.ndarray:
        """[H, W] or [H, W, C] raw image -> the rectified image of the same size and dtype."""
        _, map1, map2, _ = self._entry(camera, model)
        return cv2.remap(image, map1, map2, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def invalid_mask(self, camera: str, model: CameraModel,
                     out_hw: tuple[int, int]) -> np.ndarray:
        """[h, w] bool, True where the rectified image had no source pixel, at size out_hw."""
        key, _, _, invalid = self._entry(camera, model)
        cached = self._masks.get((camera, out_hw))
        if cached is None or cached[0] != key:
            resized = invalid
            if invalid.shape != tuple(out_hw):
                resized = cv2.resize(invalid.view(np.uint8), (out_hw[1], out_hw[0]),
                                     interpolation=cv2.INTER_NEAREST).astype(bool)
            cached = (key, resized)
            self._masks[(camera, out_hw)] = cached
        return cached[1]
