"""Intrinsics scaling, cached rays and packed clouds against hand-computed pinhole points."""
from __future__ import annotations

import cv2
import numpy as np
from sensor_msgs.msg import PointField

from depth_fusion_ros.clouds import (
    cloud_to_numpy,
    empty_cloud,
    make_cloud,
    pack_rgb,
    xyz_intensity_points,
    xyz_rgb_points,
)
from depth_fusion_ros.geometry import (
    RayCache,
    compute_rays,
    depth_to_xyz,
    mask_depth_range,
    scale_intrinsics,
)

K = np.array([[100.0, 0.0, 2.0], [0.0, 50.0, 1.0], [0.0, 0.0, 1.0]])


def test_known_depth_gives_hand_computed_points():
    depth = np.array([[2.0, 4.0, 1.0, 8.0], [2.0, 2.0, 2.0, 2.0], [10.0, 1.0, 1.0, 1.0]],
                     np.float32)  # [3, 4]
    xyz = depth_to_xyz(depth, compute_rays(K, 4, 3), stride=1)
    # pixel (u=0, v=0), z=2: x = (0-2)/100*2 = -0.04, y = (0-1)/50*2 = -0.04
    np.testing.assert_allclose(xyz[0, 0], [-0.04, -0.04, 2.0], rtol=1e-6)
    # pixel (u=3, v=0), z=8: x = (3-2)/100*8 = 0.08, y = -1/50*8 = -0.16
    np.testing.assert_allclose(xyz[0, 3], [0.08, -0.16, 8.0], rtol=1e-6)
    # principal point (u=2, v=1) lies on the optical axis
    np.testing.assert_allclose(xyz[1, 2], [0.0, 0.0, 2.0], atol=1e-7)
    # pixel (u=0, v=2), z=10: x = -0.2, y = (2-1)/50*10 = 0.2
    np.testing.assert_allclose(xyz[2, 0], [-0.2, 0.2, 10.0], rtol=1e-6)
    strided = depth_to_xyz(depth, compute_rays(K, 4, 3, stride=2), stride=2)  # [2, 2, 3]
    assert strided.shape == (2, 2, 3)
    np.testing.assert_allclose(strided[1, 1], xyz[2, 2], rtol=1e-6)


def test_scale_intrinsics_for_aspect_change_uses_half_pixel_centres():
    k_rgb = np.array([[800.0, 0, 612.0], [0, 790.0, 192.0], [0, 0, 1]])
    scaled = scale_intrinsics(k_rgb, (1224, 384), (640, 256))
    sx, sy = 640 / 1224, 256 / 384
    np.testing.assert_allclose(scaled[0], [800 * sx, 0, (612 + 0.5) * sx - 0.5])
    np.testing.assert_allclose(scaled[1], [0, 790 * sy, (192 + 0.5) * sy - 0.5])
    np.testing.assert_allclose(scaled[2], [0, 0, 1])
    # c * s (image_proc's resize, and this function before) was 0.24 px / 0.17 px too large
    np.testing.assert_allclose(612 * sx - scaled[0, 2], 0.2386, atol=1e-4)
    np.testing.assert_allclose(192 * sy - scaled[1, 2], 0.1667, atol=1e-4)
    p = np.hstack([k_rgb, [[-80.0], [0], [0]]])  # a stereo P: Tx = -fx * baseline scales with fx
    scaled_p = scale_intrinsics(p, (1224, 384), (640, 256))
    np.testing.assert_allclose(scaled_p[0, 3], -80 * sx)
    np.testing.assert_allclose(scaled_p[:, :3], scaled)
    np.testing.assert_allclose(scaled_p[2], [0, 0, 1, 0])


def test_scaled_intrinsics_match_the_pixels_cv2_resize_makes():
    # A blob at a known place; after cv2.resize (what preprocessing does) its centre is where the
    # scaled intrinsics put the same ray, to a few hundredths of a pixel.
    k = np.array([[800.0, 0, 612.0], [0, 790.0, 192.0], [0, 0, 1]])
    ray = np.array([0.3, -0.1, 1.0])
    u0, v0 = (k @ ray)[:2]
    v, u = np.mgrid[0:384, 0:1224]
    image = np.exp(-((u - u0) ** 2 + (v - v0) ** 2) / (2 * 6.0**2)).astype(np.float32)
    small = cv2.resize(image, (640, 256), interpolation=cv2.INTER_LINEAR)
    vs, us = np.mgrid[0:256, 0:640]
    centre = [(small * us).sum() / small.sum(), (small * vs).sum() / small.sum()]
    expected = (scale_intrinsics(k, (1224, 384), (640, 256)) @ ray)[:2]
    np.testing.assert_allclose(centre, expected, atol=0.03)
    naive = [u0 * 640 / 1224, v0 * 256 / 384]  # the c * s rule misses by about 0.2 px
    assert abs(centre[0] - naive[0]) > 0.2 and abs(centre[1] - naive[1]) > 0.15


def test_range_mask():
    depth = np.array([0.05, 1.0, 80.0, 81.0, np.inf], np.float32)
    mask_depth_range(depth, 0.1, 80.0)
    assert np.isnan(depth[[0, 3, 4]]).all() and list(depth[1:3]) == [1.0, 80.0]


def test_ray_cache_recomputes_only_on_change():
    cache = RayCache()
    first = cache.get("thermal", K, 4, 3, 1)
    assert cache.get("thermal", K.copy(), 4, 3, 1) is first and cache.computations == 1
    cache.get("thermal", K * 2, 4, 3, 1)
    cache.get("thermal", K * 2, 4, 3, 2)
    assert cache.computations == 3


def test_cloud_layout_and_rgb_packing():
    depth = np.full((3, 4), 2.0, np.float32)
    depth[0, 0] = np.nan
    rays = compute_rays(K, 4, 3)
    intensity = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)
    msg = make_cloud(xyz_intensity_points(depth, rays, 1, intensity), "intensity")
    assert [f.name for f in msg.fields] == ["x", "y", "z", "intensity"]
    assert [f.offset for f in msg.fields] == [0, 4, 8, 12]
    assert all(f.datatype == PointField.FLOAT32 and f.count == 1 for f in msg.fields)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (3, 4, 16, 64)
    assert msg.is_dense is False and len(msg.data) == 3 * 64
    points = cloud_to_numpy(msg)
    assert np.isnan(points[0, 0, :3]).all()
    np.testing.assert_allclose(points[1, 2], [0.0, 0.0, 2.0, intensity[1, 2]], atol=1e-7)

    rgb = np.zeros((3, 4, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 0x12, 0x34, 0x56
    assert pack_rgb(rgb).view(np.uint32)[0, 0] == 0x00123456
    cloud, view = empty_cloud(3, 4, "rgb")
    xyz_rgb_points(depth, rays, 1, rgb, out=view)
    packed = cloud_to_numpy(cloud)[..., 3].copy().view(np.uint32)
    assert (packed == 0x00123456).all() and cloud.fields[3].name == "rgb"


def test_unpack_rgb_inverts_pack_rgb():
    from depth_fusion_ros.clouds import pack_rgb, unpack_rgb

    rgb = np.random.default_rng(3).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    packed = pack_rgb(rgb)
    assert packed.dtype == np.float32 and packed.shape == (4, 5)
    assert int(packed[0, 0:1].view(np.uint32)[0]) == (int(rgb[0, 0, 0]) << 16) | (int(rgb[0, 0, 1]) << 8) | int(rgb[0, 0, 2])
    np.testing.assert_array_equal(unpack_rgb(packed), rgb)


def test_rays_are_row_major():
    """The per-frame multiplies with the row-major depth need C-ordered ray factors."""
    rays = compute_rays(K, 64, 48, stride=2)
    assert rays.x_per_z.flags["C_CONTIGUOUS"] and rays.y_per_z.flags["C_CONTIGUOUS"]
