"""Pinhole geometry for the published depth: intrinsics scaling, cached rays, depth -> xyz.

The intrinsics here are those of the rectified image (P, see camera_model.py).

Optical frame convention (REP 103/105): z forward, x right, y down; depth is metres along z
(REP 118), so a pixel (u, v) with depth z is at x = (u - cx) / fx * z, y = (v - cy) / fy * z.
The per-pixel factors (u - cx) / fx and (v - cy) / fy depend only on the intrinsics, image size
and stride, so they are computed once per camera_info and reused (the idea behind
depth_image_proc's cached range vectors); per frame there are only two multiplies per point.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def scale_intrinsics(k: np.ndarray, src_wh: tuple[int, int], dst_wh: tuple[int, int]) -> np.ndarray:
    """Intrinsics of an image resized from src_wh to dst_wh (aspect may change) with cv2.resize.

    cv2.resize maps pixel centres: source u = (u' + 0.5) / s - 0.5 with s = dst_w / src_w, so a
    point at u in the source is at u' = (u + 0.5) * s - 0.5. Hence per axis f' = f * s and
    c' = (c + 0.5) * s - 0.5 (DESIGN.md section 2), and P's Tx scales with fx (Ty with fy).
    image_proc's resize node scales c' = c * s instead, which is 0.5 * (1 - s) px too large
    (+0.24 px in u and +0.17 px in v for 1224x384 -> 640x256): published intrinsics must match
    the published pixels, and these come from a centre-aligned resize.

    Args:
        k: [3, 3] camera matrix; or [3, 4] projection matrix P (third row [0, 0, 1, 0]).
    Returns:
        Same shape, float64.
    """
    scale_x, scale_y = dst_wh[0] / src_wh[0], dst_wh[1] / src_wh[1]
    resize = np.array([[scale_x, 0.0, 0.5 * (scale_x - 1.0)],
                       [0.0, scale_y, 0.5 * (scale_y - 1.0)],
                       [0.0, 0.0, 1.0]])  # u' = s * u + (s - 1) / 2 in homogeneous pixels
    return resize @ np.asarray(k, dtype=np.float64)


@dataclass(frozen=True)
class Rays:
    """Per-pixel (u - cx) / fx and (v - cy) / fy on the strided grid."""

    x_per_z: np.ndarray  # [h, w] float32, h = ceil(H / stride)
    y_per_z: np.ndarray  # [h, w] float32


def compute_rays(k: np.ndarray, width: int, height: int, stride: int = 1) -> Rays:
    """Ray factors for pixels (u, v) = (i * stride, j * stride) of a width x height image.

    Args:
        k: [3, 3] intrinsics of the (rectified) depth image, i.e. P[:, :3]: fx = k[0, 0],
            fy = k[1, 1], cx = k[0, 2], cy = k[1, 2], as depth_image_proc reads them.
    """
    k = np.asarray(k, dtype=np.float64)[:3, :3]
    fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
    u = (np.arange(0, width, stride, dtype=np.float64) - cx) / fx  # [w]
    v = (np.arange(0, height, stride, dtype=np.float64) - cy) / fy  # [h]
    # C order explicitly: astype's default keeps a broadcast's layout, which came out
    # column-major here and made every per-frame multiply with the row-major depth 2-3x slower.
    x_per_z = np.broadcast_to(u[None, :], (v.size, u.size)).astype(np.float32, order="C")
    y_per_z = np.broadcast_to(v[:, None], (v.size, u.size)).astype(np.float32, order="C")
    return Rays(x_per_z, y_per_z)


class RayCache:
    """Remembers the rays of the last intrinsics/size/stride per camera; recomputes on change."""

    def __init__(self):
        self._entries: dict[str, tuple[tuple, Rays]] = {}
        self.computations = 0  # how often rays were (re)built; tests check the cache works

    def get(self, camera: str, k: np.ndarray, width: int, height: int, stride: int) -> Rays:
        key = (tuple(np.asarray(k, dtype=np.float64)[:3, :3].ravel()), width, height, stride)
        cached = self._entries.get(camera)
        if cached is not None and cached[0] == key:
            return cached[1]
        rays = compute_rays(k, width, height, stride)
        self._entries[camera] = (key, rays)
        self.computations += 1
        return rays


def mask_depth_range(depth_m: np.ndarray, min_m: float, max_m: float) -> np.ndarray:
    """NaN where depth is outside [min_m, max_m] or not finite; in place on a float32 array."""
    with np.errstate(invalid="ignore"):
        invalid = ~((depth_m >= min_m) & (depth_m <= max_m))
    depth_m[invalid] = np.nan
    return depth_m


def xyz_planes(depth_m: np.ndarray, rays: Rays,
               stride: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, y, z of the organised point grid of a z-depth image, as contiguous planes.

    Args:
        depth_m: [H, W] float32 metres (NaN = invalid, propagates to x, y, z).
        rays: from compute_rays/RayCache for this image's K, size and stride.
        stride: keep every stride-th row and column.
    Returns:
        (x, y, z), each [h, w] float32 in the camera's optical frame (z forward, x right, y down).
    """
    z = np.ascontiguousarray(depth_m[::stride, ::stride])  # [h, w]
    if z.shape != rays.x_per_z.shape:
        raise ValueError(f"depth grid {z.shape} does not match rays {rays.x_per_z.shape}")
    return rays.x_per_z * z, rays.y_per_z * z, z


def depth_to_xyz(depth_m: np.ndarray, rays: Rays, stride: int = 1) -> np.ndarray:
    """Organised [h, w, 3] float32 (x, y, z) grid of a z-depth image (see xyz_planes)."""
    return np.stack(xyz_planes(depth_m, rays, stride), axis=-1)  # [h, w, 3]
