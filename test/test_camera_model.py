"""Camera models from CameraInfo: P as the rectified geometry, ROI/binning as image_geometry
applies them, validation reasons, and rectification maps checked against OpenCV's projection."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, RegionOfInterest

from depth_fusion_ros.camera_model import CameraInfoError, Rectifier, camera_model

K = [800.0, 0.0, 960.0, 0.0, 790.0, 600.0, 0.0, 0.0, 1.0]
# A stereo-rectified right camera: its own fx/cx and Tx = -fx * baseline (0.3 m).
P = [700.0, 0.0, 950.0, -210.0, 0.0, 700.0, 610.0, 0.0, 0.0, 0.0, 1.0, 0.0]
R_SMALL = cv2.Rodrigues(np.array([0.01, -0.02, 0.005]))[0]


def _info(k=K, p=P, d=(0.0,) * 5, r=None, model="plumb_bob", size=(1936, 1216),
          binning=(0, 0), roi=(0, 0, 0, 0)) -> CameraInfo:
    info = CameraInfo(width=size[0], height=size[1], distortion_model=model,
                      k=list(k), p=list(p), d=list(d), binning_x=binning[0], binning_y=binning[1])
    info.r = list(np.eye(3).ravel() if r is None else np.asarray(r).ravel())
    info.roi = RegionOfInterest(x_offset=roi[0], y_offset=roi[1], width=roi[2], height=roi[3])
    return info


def test_geometry_is_p_and_all_zero_p_means_k():
    model = camera_model(_info(), (1216, 1936))
    np.testing.assert_array_equal(model.p, np.reshape(P, (3, 4)))
    np.testing.assert_array_equal(model.k, np.reshape(K, (3, 3)))
    assert not model.needs_rectification  # D all zero: rectified already
    for p in ([0.0] * 12, [0.0] * 10 + [1.0, 0.0]):  # uncalibrated: [K | 0]
        expected = np.hstack([np.reshape(K, (3, 3)), np.zeros((3, 1))])
        np.testing.assert_array_equal(camera_model(_info(p=p)).p, expected)


def test_roi_then_binning_adjust_k_and_p_like_image_geometry():
    # 1920x1080 ROI at (8, 68) of a 1936x1216 sensor, binned 2x2: a 960x540 image.
    info = _info(binning=(2, 2), roi=(8, 68, 1920, 1080))
    model = camera_model(info, (540, 960))
    assert (model.width, model.height) == (960, 540)
    np.testing.assert_allclose(model.k, [[400.0, 0, (960 - 8) / 2], [0, 395.0, (600 - 68) / 2],
                                         [0, 0, 1]])
    np.testing.assert_allclose(model.p, [[350.0, 0, (950 - 8) / 2, -105.0],
                                         [0, 350.0, (610 - 68) / 2, 0], [0, 0, 1, 0]])
    with pytest.raises(CameraInfoError) as err:  # the unbinned size no longer matches
        camera_model(info, (1080, 1920))
    assert err.value.reason == "camera_info_size_mismatch" and "960x540" in str(err.value)
    # binning alone (today's "binned image is a size mismatch" case): 968x608
    binned = camera_model(_info(binning=(2, 2)), (608, 968))
    np.testing.assert_allclose(binned.p[0], [350.0, 0, 475.0, -105.0])
    # a size-less camera_info takes the image's size
    assert camera_model(_info(size=(0, 0)), (1216, 1936)).width == 1936


@pytest.mark.parametrize("change,reason", [
    ({"k": [1e-300, 0, 960, 0, 1e-300, 600, 0, 0, 1]}, "bad_K"),
    ({"k": [800, 0, np.inf, 0, 790, 600, 0, 0, 1]}, "bad_K"),
    ({"k": [0.0] * 9}, "zero_K"),
    ({"k": [-800, 0, 960, 0, 790, 600, 0, 0, 1]}, "bad_K"),
    ({"k": [800, 0, 1e7, 0, 790, 600, 0, 0, 1]}, "bad_K"),
    ({"k": [800, 0, 960, 0, 790, 600, 0, 0, 0]}, "bad_K"),
    ({"p": [np.nan] + P[1:]}, "bad_P"),
    ({"p": [1e9] + P[1:]}, "bad_P"),
    ({"p": [1e-300, 0, 950, 0, 0, 1e-300, 610, 0, 0, 0, 1, 0]}, "bad_P"),
    ({"d": [np.nan, 0, 0, 0, 0]}, "bad_D"),
    ({"d": [0.1, 0.0, 0.0]}, "bad_D"),
    ({"d": [0.1, 0.0, 0.0, 0.0], "model": "equidistant", "r": np.diag([1.0, 1.0, 2.0])}, "bad_R"),
    ({"d": [0.1, 0.0, 0.0, 0.0, 0.0], "model": "kannala_brandt"}, "unsupported_distortion_model"),
    ({"roi": (100, 0, 1900, 1216)}, "bad_roi"),
    ({"roi": (10, 10, 0, 100)}, "bad_roi"),
    ({"binning": (4000, 1)}, "bad_binning"),
])
def test_geometry_that_cannot_be_right_is_refused(change, reason):
    with pytest.raises(CameraInfoError) as err:
        camera_model(_info(**change))
    assert err.value.reason == reason, str(err.value)


def test_distortion_is_not_checked_when_rectification_is_off():
    info = _info(d=[0.1, 0.0, 0.0, 0.0, 0.0], model="kannala_brandt")
    model = camera_model(info, rectify=False)
    assert not model.needs_rectification
    assert camera_model(_info(d=[0.1, 0, 0, 0, 0], r=[0.0] * 9)).needs_rectification  # R 0 = I


CASES = {  # distortion model -> (D, K of the full sensor)
    "plumb_bob": ([-0.30, 0.10, 0.001, -0.002, -0.015], K),
    "rational_polynomial": ([-0.25, 0.08, 0.001, 0.001, 0.0, 0.02, 0.01, 0.003], K),
    "equidistant": ([0.05, -0.01, 0.002, -0.0005], [500.0, 0, 960, 0, 500.0, 600, 0, 0, 1]),
}


def _raw_pixel(model: str, d, k, ray_raw: np.ndarray) -> np.ndarray:
    """Where the full-resolution raw camera sees a ray of its own frame: [N, 2]."""
    pts = ray_raw.reshape(-1, 1, 3)
    zero = np.zeros(3)
    if model == "equidistant":
        uv, _ = cv2.fisheye.projectPoints(pts, zero, zero, np.reshape(k, (3, 3)), np.array(d))
    else:
        uv, _ = cv2.projectPoints(pts, zero, zero, np.reshape(k, (3, 3)), np.array(d))
    return uv.reshape(-1, 2)


@pytest.mark.parametrize("dist_model", sorted(CASES))
def test_rectification_maps_follow_k_d_r_p_with_roi_and_binning(dist_model):
    d, k = CASES[dist_model]
    roi, binning = (16, 8, 1904, 1200), (2, 2)  # a 952x600 image
    info = _info(k=k, d=d, r=R_SMALL, model=dist_model, binning=binning, roi=roi)
    model = camera_model(info, (600, 952))
    assert model.needs_rectification
    rect = Rectifier()
    rect.rectify("cam", np.zeros((600, 952), np.uint16), model)
    map1, map2 = rect._maps["cam"][1:3]
    map_x, map_y = cv2.convertMaps(map1, map2, cv2.CV_32FC1)
    # Rectified pixels on a grid -> their rays through the *adjusted* P (rectified frame) ->
    # raw camera frame (R^T) -> full-resolution raw pixel -> ROI and binning (image_geometry).
    u_r, v_r = np.meshgrid(np.arange(100, 900, 97), np.arange(60, 560, 83))
    p = model.p
    rays_rect = np.stack([(u_r - p[0, 2]) / p[0, 0], (v_r - p[1, 2]) / p[1, 1],
                          np.ones_like(u_r, dtype=float)], axis=-1).reshape(-1, 3)
    raw_full = _raw_pixel(dist_model, d, k, rays_rect @ R_SMALL)  # R^T applied to row vectors
    raw_image = (raw_full - [roi[0], roi[1]]) / binning
    got = np.stack([map_x[v_r, u_r].ravel(), map_y[v_r, u_r].ravel()], axis=-1)
    np.testing.assert_allclose(got, raw_image, atol=0.05)  # fixed-point maps: 1/32 px


def test_rectifier_moves_a_dot_to_its_rectified_place_and_caches_maps():
    d = [-0.30, 0.10, 0.0, 0.0, 0.0]
    p = [780.0, 0, 950.0, 0, 0, 780.0, 610.0, 0, 0, 0, 1, 0]
    model = camera_model(_info(d=d, p=p, size=(1936, 1216)), (1216, 1936))
    target = np.array([1500.0, 300.0])  # rectified pixel of the dot
    ray = np.array([(target[0] - 950.0) / 780.0, (target[1] - 610.0) / 780.0, 1.0])
    raw_uv = _raw_pixel("plumb_bob", d, K, ray[None])[0]
    v, u = np.mgrid[0:1216, 0:1936]
    raw = (4000 + 2000 * np.exp(-((u - raw_uv[0]) ** 2 + (v - raw_uv[1]) ** 2) / 8.0)).astype(
        np.uint16)
    rect = Rectifier()
    out = rect.rectify("thermal", raw, model)
    assert out.dtype == np.uint16 and out.shape == raw.shape
    weights = np.clip(out.astype(float) - 4000.0, 0, None)
    weights[weights < 500] = 0  # the blob's core
    centroid = [(weights * u).sum() / weights.sum(), (weights * v).sum() / weights.sum()]
    np.testing.assert_allclose(centroid, target, atol=0.25)
    rect.rectify("thermal", raw, model)
    assert rect.builds == 1  # cached while the camera_info is the same
    assert not rect.invalid_mask("thermal", model, (256, 640)).any()  # barrel: all covered
    pincushion = camera_model(_info(d=[0.1, 0, 0, 0, 0], p=p), (1216, 1936))
    rect.rectify("thermal", raw, pincushion)
    assert rect.builds == 2  # rebuilt for the new camera_info
    invalid = rect.invalid_mask("thermal", pincushion, (256, 640))  # at the network size
    # rectified corners see rays the raw image does not have; the centre is covered
    assert invalid.shape == (256, 640) and invalid[0, 0] and invalid[-1, -1]
    assert not invalid[128, 320]


def test_pipeline_publishes_p_geometry_and_rectified_camera_info():
    """P != K, D = 0 (a stereo-rectified camera): published intrinsics and rays come from P.

    With K (the old rule) the cloud of this camera differs from depth_image_proc's by metres at
    80 m; with rectification off a raw-looking D is ignored and the image is used as it is.
    """
    from depth_fusion_ros.clouds import cloud_to_numpy
    from depth_fusion_ros.pipeline import DepthPipeline, PipelineConfig
    from depth_fusion_ros.ros_image import numpy_to_image

    rng = np.random.default_rng(3)
    thermal = numpy_to_image(rng.integers(3000, 6000, (608, 968), dtype=np.uint16), "mono16")
    rgb = numpy_to_image(rng.integers(0, 256, (1216, 1936, 3), dtype=np.uint8), "rgb8")
    infos = {"thermal": _info(binning=(2, 2)),  # 968x608, binned, P != K
             "rgb": _info(d=[-0.3, 0.1, 0, 0, 0], model="kannala_brandt")}  # rectified already
    pipeline = DepthPipeline(PipelineConfig(("thermal", "rgb"), (256, 640), 0.1, 80.0, "network",
                                            1, rectify=("thermal",)))
    prepared = pipeline.prepare(thermal, rgb, infos["thermal"], infos["rgb"])
    assert pipeline.rectifier.builds == 0  # D = 0 (thermal) and rectify off (rgb)
    depth = np.full((256, 640), 80.0, np.float32)
    out = pipeline.postprocess(prepared, {"thermal": depth, "rgb": depth},
                               {"thermal": True, "rgb": True})
    for view, (in_w, in_h), binning in (("thermal", (968, 608), 2), ("rgb", (1936, 1216), 1)):
        info = out[view].info
        sx, sy = 640 / in_w, 256 / in_h
        fx, cx = P[0] / binning * sx, (P[2] / binning + 0.5) * sx - 0.5
        fy, cy = P[5] / binning * sy, (P[6] / binning + 0.5) * sy - 0.5
        np.testing.assert_allclose(np.reshape(info.p, (3, 4)),
                                   [[fx, 0, cx, P[3] / binning * sx], [0, fy, cy, 0], [0, 0, 1, 0]])
        np.testing.assert_array_equal(np.reshape(info.k, (3, 3)), np.reshape(info.p, (3, 4))[:, :3])
        assert list(info.d) == [0.0] * 5 and info.distortion_model == "plumb_bob"
        points = cloud_to_numpy(out[view].cloud)
        np.testing.assert_allclose(points[200, 600, :3], [(600 - cx) / fx * 80, (200 - cy) / fy * 80,
                                                          80], rtol=1e-5)
