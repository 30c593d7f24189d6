"""Two simulated real cameras through the real node, checked against image_geometry's definitions.

The rig: a 640x512 thermal camera with an equidistant (fisheye) lens, binned 2x2 (a 320x256
image), sending 16-bit PNG on thermal/image_raw/compressed; a 1936x1216 RGB camera with a
plumb_bob lens, stereo-rectified (R != I, P != K with a Tx), sending a 1920x1080 ROI as JPEG on
rgb/image_raw/compressed. Neither has MS2's size or aspect ratio. Each image carries markers at
the raw pixels where known rays land (projected with OpenCV's own lens models, then ROI and
binning as image_geometry applies them).

Checked on what the node publishes, with definitions written here from image_geometry
(PinholeCameraModel::fromCameraInfo) and depth_image_proc (convertDepth), not from the package:
- camera_info: the rectified image's (D = 0, R = I, no binning/ROI, K = P[:, :3]) and P equal to
  P adjusted for ROI and binning, then scaled with the half-pixel rule to the published size;
- the cloud equals the back-projection of the published depth with the published camera_info
  (what depth_image_proc would build from our outputs) within 1 mm at 10 m;
- the markers appear in the cloud's intensity / colour where the published P projects their rays
  (rectification, P, ROI, binning and resize all right, to 0.15 px; the c * s resize rule
  misses by 0.3-0.5 px here, an unrectified image by 4-17 px).
The compressed transport is also fed bad data (wrong bit depth, wrong channel count, truncated
PNG, an unsupported codec): each is dropped and counted, and valid data still works after it.
"""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, CompressedImage, RegionOfInterest
from test_node import (
    RELIABLE,
    VIEWS,
    Harness,
    _publish_until_output,
    _stamp_ns,
    _wait_for_counts,
    image_to_numpy_nan,
)

from depth_fusion_ros.clouds import cloud_to_numpy, unpack_rgb

R_RGB = cv2.Rodrigues(np.array([0.01, -0.02, 0.005]))[0]  # stereo rectification rotation
CAMERAS = {
    "thermal": dict(size=(640, 512), binning=(2, 2), roi=(0, 0, 0, 0), model="equidistant",
                    d=[0.05, -0.01, 0.002, -0.0005], r=np.eye(3),
                    k=[500.0, 0, 322.0, 0, 505.0, 250.0, 0, 0, 1],
                    p=[480.0, 0, 318.0, 0, 0, 480.0, 258.0, 0, 0, 0, 1, 0]),
    "rgb": dict(size=(1936, 1216), binning=(0, 0), roi=(8, 68, 1920, 1080), model="plumb_bob",
                d=[-0.30, 0.10, 0.001, -0.002, -0.015], r=R_RGB,
                k=[1000.0, 0, 968.0, 0, 1000.0, 608.0, 0, 0, 1],
                p=[950.0, 0, 940.0, -285.0, 0, 950.0, 620.0, 0, 0, 0, 1, 0]),
}
IMAGE_HW = {"thermal": (256, 320), "rgb": (1080, 1920)}
# Marker rays in each camera's own (raw) frame.
MARKERS = {"thermal": np.array([[0.25, -0.15, 1.0], [-0.35, 0.2, 1.0]]),
           "rgb": np.array([[0.35, -0.12, 1.0], [-0.4, 0.18, 1.0]])}


def _image_pixels(view: str) -> np.ndarray:
    """[N, 2] pixels of the markers in the image the camera sends (after ROI and binning)."""
    cam = CAMERAS[view]
    k, d, zero = np.reshape(cam["k"], (3, 3)), np.array(cam["d"]), np.zeros(3)
    rays = MARKERS[view].reshape(-1, 1, 3)
    if cam["model"] == "equidistant":
        full, _ = cv2.fisheye.projectPoints(rays, zero, zero, k, d)
    else:
        full, _ = cv2.projectPoints(rays, zero, zero, k, d)
    binning = np.maximum(cam["binning"], 1)
    return (full.reshape(-1, 2) - cam["roi"][:2]) / binning  # image_geometry's convention


def _frames() -> dict[str, np.ndarray]:
    """The raw images: thermal [256, 320] u16 counts with hot spots, RGB [1080, 1920, 3] with
    red spots on grey (Gaussian spots, so centroids are sub-pixel)."""
    frames = {}
    for view, sigma in (("thermal", 1.5), ("rgb", 6.0)):
        v, u = np.mgrid[0:IMAGE_HW[view][0], 0:IMAGE_HW[view][1]]
        spots = sum(np.exp(-((u - x) ** 2 + (v - y) ** 2) / (2 * sigma**2))
                    for x, y in _image_pixels(view))
        frames[view] = spots
    thermal = 3000.0 + 3000.0 * frames["thermal"]
    thermal[236:] = 6000.0  # a hot band (8 % of the image): the 99th percentile is 6000 counts,
    # so the normalised spots keep their Gaussian profile instead of saturating
    frames["thermal"] = thermal.round().astype(np.uint16)
    red = np.stack([120 + 135 * frames["rgb"], 120 - 120 * frames["rgb"],
                    120 - 120 * frames["rgb"]], axis=-1)
    frames["rgb"] = np.clip(red, 0, 255).round().astype(np.uint8)
    return frames


def _camera_info(view: str) -> CameraInfo:
    cam = CAMERAS[view]
    info = CameraInfo(width=cam["size"][0], height=cam["size"][1], distortion_model=cam["model"],
                      d=list(cam["d"]), k=list(cam["k"]), p=list(cam["p"]),
                      r=[float(x) for x in np.ravel(cam["r"])],
                      binning_x=cam["binning"][0], binning_y=cam["binning"][1])
    info.roi = RegionOfInterest(x_offset=cam["roi"][0], y_offset=cam["roi"][1],
                                width=cam["roi"][2], height=cam["roi"][3])
    info.header.frame_id = f"{view}_optical"
    return info


def _compressed(frames: dict[str, np.ndarray]) -> dict[str, CompressedImage]:
    """As compressed_image_transport publishes them: 16-bit PNG, and JPEG of the bgr8 image."""
    ok_t, png = cv2.imencode(".png", frames["thermal"])
    ok_r, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(frames["rgb"][..., ::-1]),
                              [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok_t and ok_r
    msgs = {"thermal": CompressedImage(format="mono16; png compressed ", data=png.tobytes()),
            "rgb": CompressedImage(format="rgb8; jpeg compressed bgr8", data=jpeg.tobytes())}
    for view, msg in msgs.items():
        msg.header.frame_id = f"{view}_optical"
    return msgs


def image_geometry_intrinsics(info: CameraInfo) -> tuple[float, float, float, float]:
    """fx, fy, cx, cy as image_geometry's PinholeCameraModel gives them (from P, after ROI and
    binning), which is what depth_image_proc uses."""
    p = np.reshape(np.asarray(info.p, dtype=np.float64), (3, 4)).copy()
    bx, by = info.binning_x or 1, info.binning_y or 1
    p[0, 2] -= info.roi.x_offset
    p[1, 2] -= info.roi.y_offset
    p[0, [0, 2, 3]] /= bx
    p[1, [1, 2, 3]] /= by
    return p[0, 0], p[1, 1], p[0, 2], p[1, 2]


def depth_image_proc_cloud(depth: np.ndarray, info: CameraInfo) -> np.ndarray:
    """[H, W, 3] float64 xyz of a 32FC1 depth image as depth_image_proc's convertDepth makes it."""
    fx, fy, cx, cy = image_geometry_intrinsics(info)
    v, u = np.mgrid[0:depth.shape[0], 0:depth.shape[1]]
    z = depth.astype(np.float64)
    return np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z], axis=-1)


def expected_p(view: str, out_wh: tuple[int, int]) -> np.ndarray:
    """The published P, derived here: ROI offset, binning, then the half-pixel resize rule."""
    cam = CAMERAS[view]
    p = np.reshape(np.asarray(cam["p"], dtype=np.float64), (3, 4)).copy()
    bx, by = np.maximum(cam["binning"], 1)
    p[0, 2] -= cam["roi"][0]
    p[1, 2] -= cam["roi"][1]
    p[0] /= bx
    p[1] /= by
    in_h, in_w = IMAGE_HW[view]
    sx, sy = out_wh[0] / in_w, out_wh[1] / in_h
    p[0, [0, 3]] *= sx
    p[1, [1, 3]] *= sy
    p[0, 2] = (p[0, 2] + 0.5) * sx - 0.5
    p[1, 2] = (p[1, 2] + 0.5) * sy - 0.5
    return p


def _marker_centroids(view: str, points: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """Centroid of each marker in the cloud's 4th field, searched around its expected place."""
    if view == "thermal":
        weight = np.clip(points[..., 3], 0.0, 1.0)  # spot: Gaussian up to 1, background: 0
    else:
        colours = unpack_rgb(np.ascontiguousarray(points[..., 3])).astype(np.float64)
        weight = np.clip(colours[..., 0] - colours[..., 1] - 40.0, 0.0, None)  # redness
    rows, cols = np.mgrid[0:weight.shape[0], 0:weight.shape[1]]
    found = []
    for x, y in expected:
        window = (np.abs(cols - x) < 30) & (np.abs(rows - y) < 20)
        w = np.where(window, weight, 0.0)
        assert w.sum() > 0, f"{view}: no marker near ({x:.1f}, {y:.1f})"
        found.append([(w * cols).sum() / w.sum(), (w * rows).sum() / w.sum()])
    return np.array(found)


def _png_message(array: np.ndarray, fmt: str, stamp_ns: int = 0) -> CompressedImage:
    ok, data = cv2.imencode(".png", array)
    assert ok
    msg = CompressedImage(format=fmt, data=data.tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return msg


def use_compressed_transport(h: Harness) -> None:
    """Publish images on <view>/image_raw/compressed (the node's compressed subscriptions)."""
    for view in VIEWS:
        del h.pub[f"{view}/image_raw"]  # wait_ready waits for the compressed ones instead
        h.pub[f"{view}/image_raw/compressed"] = h.node.create_publisher(
            CompressedImage, f"{view}/image_raw/compressed", RELIABLE)


@pytest.fixture
def harnesses(tiny_onnx_model, tmp_path):
    """make(cls, namespace, **params): a node process + test node, closed after the test."""
    made = []

    def make(cls, namespace: str, **params) -> Harness:
        made.append(cls(tiny_onnx_model, tmp_path, namespace, **params))
        return made[-1]

    yield make
    for harness in made:
        harness.close()


def test_compressed_inputs_bad_data_is_counted_and_valid_data_works(harnesses):
    h = harnesses(Harness, "comp", input_qos="reliable", publish_points=False,
                  thermal_transport="compressed", rgb_transport="compressed",
                  diagnostics_period_s=0.2)
    use_compressed_transport(h)
    h.wait_ready()
    h.publish_infos()
    rng = np.random.default_rng(7)
    counts = rng.integers(3000, 6000, (256, 640), dtype=np.uint16)
    rgb = rng.integers(0, 256, (384, 1224, 3), dtype=np.uint8)
    ok, jpeg = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]))
    assert ok

    def rgb_msg(stamp_ns):
        msg = CompressedImage(format="rgb8; jpeg compressed bgr8", data=jpeg.tobytes())
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        return msg

    thermal_topic, rgb_topic = "thermal/image_raw/compressed", "rgb/image_raw/compressed"
    bad = [  # (message, reason); each forms a pair with a good RGB image and is decoded
        (_png_message(counts.astype(np.uint8), "mono16; png compressed "), "wrong_bit_depth"),
        (_png_message(np.zeros((256, 640, 3), np.uint8), "mono16; png compressed "),
         "wrong_channels"),
        (_png_message(counts, "mono16; png compressed "), "undecodable"),  # data cut below
        (_png_message(counts, "16UC1; compressedDepth rvl"), "unsupported_format"),
    ]
    bad[2][0].data = bytes(bad[2][0].data)[:100]
    expected = {}
    for i, (msg, reason) in enumerate(bad):
        stamp_ns = time.time_ns() + i
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        h.pub[thermal_topic].publish(msg)
        h.pub[rgb_topic].publish(rgb_msg(stamp_ns))
        expected[f"bad:/comp/{thermal_topic}:{reason}"] = "1"
        _wait_for_counts(h, expected)  # one at a time: a waiting pair could be replaced
    assert not h.received["thermal/depth/image"]

    def publish(stamp_ns):
        h.pub[thermal_topic].publish(_png_message(counts, "mono16; png compressed ", stamp_ns))
        h.pub[rgb_topic].publish(rgb_msg(stamp_ns))

    _publish_until_output(h, publish)
    depth = image_to_numpy_nan(h.received["rgb/depth/image"][-1][1])
    assert depth.shape == (256, 640) and np.isfinite(depth).mean() > 0.99
    assert h.proc.poll() is None
    log = h.log_path.read_text()
    assert f"dropped message on /comp/{thermal_topic} (wrong_bit_depth)" in log


def test_remapped_base_topic_moves_its_compressed_depth_topic(harnesses):
    # image_transport's naming: thermal/image_raw remapped to a driver's topic, the
    # compressedDepth transport then lives at <that topic>/compressedDepth
    h = harnesses(Harness, "remap", input_qos="reliable", publish_points=False,
                  thermal_transport="compressedDepth",
                  remaps={"thermal/image_raw": "/lwir/image"})
    del h.pub["thermal/image_raw"]
    h.pub["thermal/image_raw/compressedDepth"] = h.node.create_publisher(
        CompressedImage, "/lwir/image/compressedDepth", RELIABLE)
    h.wait_ready()
    assert h.node.count_publishers("/remap/thermal/image_raw/compressedDepth") == 0
    assert h.node.count_subscribers("/lwir/image/compressedDepth") == 1
    h.publish_infos()
    counts = np.random.default_rng(3).integers(3000, 6000, (256, 640), dtype=np.uint16)
    ok, png = cv2.imencode(".png", counts)
    assert ok
    header = bytes(12)  # compressed_depth_image_transport's ConfigHeader (unused for 16UC1)

    def publish(stamp_ns):
        msg = CompressedImage(format="16UC1; compressedDepth png", data=header + png.tobytes())
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        msg.header.frame_id = "thermal_optical"
        h.pub["thermal/image_raw/compressedDepth"].publish(msg)
        h.rgb.header.stamp = msg.header.stamp
        h.pub["rgb/image_raw"].publish(h.rgb)

    _publish_until_output(h, publish)
    depth = image_to_numpy_nan(h.received["thermal/depth/image"][-1][1])
    assert depth.shape == (256, 640) and np.isfinite(depth).mean() > 0.99


def test_rectify_parameters_reach_the_pipeline(harnesses):
    # thermal_rectify false: the image is rectified already, its D (even of a lens model the
    # node could not undo) is not used; rgb_rectify true: pincushion D is undone, and the corners
    # of the rectified image that no raw pixel covers are NaN
    h = harnesses(Harness, "rectify", input_qos="reliable", publish_points=False,
                  thermal_rectify=False, rgb_rectify=True)
    h.infos["thermal"].distortion_model, h.infos["thermal"].d = "custom_lens", [0.2]
    h.infos["rgb"].d = [0.3, 0.0, 0.0, 0.0, 0.0]
    h.wait_ready()
    h.publish_infos()

    def publish(stamp_ns):
        h.publish_infos()
        h.publish_pair(stamp_ns)

    _publish_until_output(h, publish)
    thermal = image_to_numpy_nan(h.received["thermal/depth/image"][-1][1])
    rgb = image_to_numpy_nan(h.received["rgb/depth/image"][-1][1])
    assert np.isfinite(thermal).mean() > 0.99  # nothing rectified away
    assert np.isnan(rgb[:8, :8]).all() and np.isnan(rgb[-8:, -8:]).all()  # corners: no pixel
    assert np.isfinite(rgb[100:156, 250:390]).all()  # the centre: rectified pixels
    info = h.received["rgb/depth/camera_info"][-1][1]
    assert not any(info.d) and info.distortion_model == "plumb_bob"  # the rectified image's


class RigHarness(Harness):
    """Harness publishing the rig's compressed images and camera_infos."""

    def __init__(self, model, tmp_path, namespace, **params):
        super().__init__(model, tmp_path, namespace, thermal_transport="compressed",
                         rgb_transport="compressed", input_qos="reliable", **params)
        use_compressed_transport(self)
        self.infos = {view: _camera_info(view) for view in VIEWS}
        self.images = _compressed(_frames())

    def publish_pair(self, stamp_ns: int) -> None:
        for view, msg in self.images.items():
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
            self.pub[f"{view}/image_raw/compressed"].publish(msg)


def _outputs_of_one_pair(h: RigHarness) -> dict[str, tuple]:
    """Publish until both views have image, camera_info and cloud of one stamp."""
    def matched(view):
        stamps = [{_stamp_ns(m.header): m for _, m in h.received[f"{view}/depth/{t}"]}
                  for t in ("image", "camera_info", "points")]
        common = set(stamps[0]) & set(stamps[1]) & set(stamps[2])
        return tuple(s[max(common)] for s in stamps) if common else None

    def ready() -> bool:
        if not all(matched(v) for v in VIEWS):
            h.publish_infos()
            h.publish_pair(time.time_ns())
            h.spin_until(lambda: False, 0.7)
        return all(matched(v) for v in VIEWS)

    assert h.spin_until(ready, 90.0), (h.log_path.read_text(),
                                       {k: len(v) for k, v in h.received.items()})
    return {view: matched(view) for view in VIEWS}


@pytest.mark.parametrize("output_size,stride", [("network", 1), ("camera", 2)])
def test_rig_of_real_cameras_through_the_node(harnesses, output_size, stride):
    h = harnesses(RigHarness, f"rig_{output_size}", output_size=output_size,
                  points_stride=stride, max_rate_hz=4.0)
    h.wait_ready()
    outputs = _outputs_of_one_pair(h)
    assert h.proc.poll() is None
    for view, (image, info, cloud) in outputs.items():
        out_h, out_w = (256, 640) if output_size == "network" else IMAGE_HW[view]
        assert (image.width, image.height, info.width, info.height) == (out_w, out_h) * 2
        assert info.header.frame_id == image.header.frame_id == f"{view}_optical"
        # the rectified image's camera_info: no distortion, no rotation, no binning or ROI
        assert list(info.d) == [0.0] * 5 and list(info.r) == list(np.eye(3).ravel())
        assert (info.binning_x, info.binning_y, info.roi.width, info.roi.x_offset) == (0,) * 4
        p = np.reshape(info.p, (3, 4))
        np.testing.assert_allclose(p, expected_p(view, (out_w, out_h)), rtol=1e-12, atol=1e-9)
        np.testing.assert_array_equal(np.reshape(info.k, (3, 3)), p[:, :3])
        depth = image_to_numpy_nan(image)
        assert np.isfinite(depth).mean() > 0.9
        # our cloud == depth_image_proc's cloud of our depth + camera_info (1 mm at 10 m)
        points = cloud_to_numpy(cloud)  # [h, w, 4]
        reference = depth_image_proc_cloud(depth, info)[::stride, ::stride]
        assert points.shape[:2] == reference.shape[:2]
        np.testing.assert_array_equal(np.isnan(points[..., :3]), np.isnan(reference))
        valid = np.isfinite(reference[..., 2])
        error = np.abs(points[..., :3][valid] - reference[valid])
        assert (error <= 1e-4 * reference[valid][:, 2:3] + 1e-6).all(), error.max()
        # markers where the published P projects their rays (rectified frame: R @ ray)
        rays_rect = MARKERS[view] @ np.asarray(CAMERAS[view]["r"]).T
        uvw = rays_rect @ p[:, :3].T
        expected_uv = uvw[:, :2] / uvw[:, 2:] / stride  # on the strided grid
        found = _marker_centroids(view, points, expected_uv)
        np.testing.assert_allclose(found, expected_uv, atol=0.15, err_msg=view)
