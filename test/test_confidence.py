"""{view}/depth/confidence and {view}/depth/colored: the pipeline's maths without DDS, then the
node over real DDS with the tiny model WITH the uncertainty head (`tiny_confidence_onnx_model`):
layout, content against a direct backend run on the same preprocessed inputs, min_confidence
masking, and the coloured depth built only while subscribed."""
from __future__ import annotations

import subprocess
import time

import cv2
import numpy as np
from sensor_msgs.msg import Image
from test_node import K_RGB, K_THERMAL, Harness, _camera_info, _node_command, _stamp_ns

from depth_fusion_ros.clouds import cloud_to_numpy
from depth_fusion_ros.pipeline import DepthPipeline, PipelineConfig
from depth_fusion_ros.ros_image import numpy_to_image
from depth_fusion_ros.viz import colorize_depth

VIEWS = ("thermal", "rgb")
NET_HW = (256, 640)


def _float_image(image: Image) -> np.ndarray:
    """32FC1 that may hold NaN (image_to_numpy rejects non-finite input images)."""
    return np.frombuffer(image.data, np.float32).reshape(image.height, image.width)


def _harness_inputs():
    """The images test_node.Harness publishes (same seed), and its camera_infos."""
    rng = np.random.default_rng(0)
    thermal = numpy_to_image(rng.integers(3000, 6000, (256, 640), dtype=np.uint16), "mono16")
    rgb = numpy_to_image(rng.integers(0, 256, (384, 1224, 3), dtype=np.uint8), "rgb8")
    thermal.header.frame_id, rgb.header.frame_id = "thermal_optical", "rgb_optical"
    infos = (_camera_info(K_THERMAL, 640, 256, "thermal_optical"),
             _camera_info(K_RGB, 1224, 384, "rgb_optical"))
    return thermal, rgb, infos


def _prepared(output_size: str = "network", **config):
    thermal, rgb, infos = _harness_inputs()
    pipeline = DepthPipeline(PipelineConfig(VIEWS, NET_HW, 0.1, 80.0, output_size, 1, **config))
    return pipeline, pipeline.prepare(thermal, rgb, *infos)


# --- pipeline maths -------------------------------------------------------------------------------
def test_confidence_layout_masking_and_nan_where_depth_is_nan():
    pipeline, prepared = _prepared(min_confidence=0.5)
    depth = np.full(NET_HW, 20.0, np.float32)
    depth[0, :10] = 200.0  # beyond max_depth_m: NaN
    conf = np.full(NET_HW, 0.9, np.float32)
    conf[1, :20] = 0.4  # below min_confidence: the depth there becomes NaN
    out = pipeline.postprocess(prepared, {"thermal": depth, "rgb": depth}, {"thermal": True},
                               {"thermal": conf})
    thermal = out["thermal"]
    assert out["rgb"].confidence is None  # no confidence map for that view: none published
    c = thermal.confidence
    assert (c.encoding, c.height, c.width, c.step) == ("32FC1", 256, 640, 2560)
    assert c.header == thermal.image.header and c.header.frame_id == "thermal_optical"
    d, values = _float_image(thermal.image), _float_image(c)
    expected_nan = np.zeros(NET_HW, bool)
    expected_nan[0, :10] = expected_nan[1, :20] = True
    np.testing.assert_array_equal(np.isnan(d), expected_nan)
    np.testing.assert_array_equal(np.isnan(values), expected_nan)
    assert np.all(values[~expected_nan] == np.float32(0.9))
    z = cloud_to_numpy(thermal.cloud)[..., 2]
    np.testing.assert_array_equal(np.isnan(z), expected_nan)  # the cloud is masked too


def test_min_confidence_zero_masks_nothing():
    pipeline, prepared = _prepared()
    depth = np.full(NET_HW, 20.0, np.float32)
    conf = np.full(NET_HW, 0.01, np.float32)
    out = pipeline.postprocess(prepared, {"thermal": depth, "rgb": depth}, {}, {"rgb": conf})
    assert np.isfinite(_float_image(out["rgb"].image)).all()
    assert np.all(_float_image(out["rgb"].confidence) == np.float32(0.01))


def test_camera_output_size_resizes_confidence_like_the_depth():
    pipeline, prepared = _prepared("camera")
    rng = np.random.default_rng(5)
    depth = rng.uniform(5.0, 60.0, NET_HW).astype(np.float32)
    conf = rng.uniform(0.2, 1.0, NET_HW).astype(np.float32)
    out = pipeline.postprocess(prepared, {"thermal": depth, "rgb": depth}, {}, {"rgb": conf})
    rgb = out["rgb"]
    assert (rgb.confidence.width, rgb.confidence.height) == (1224, 384)
    assert (rgb.image.width, rgb.image.height) == (1224, 384)
    expected = cv2.resize(conf, (1224, 384), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(_float_image(rgb.confidence), expected)


def test_colored_equals_viz_colour_map_and_is_built_only_on_request():
    pipeline, prepared = _prepared(colored_range_m=(5.0, 85.0))
    depth = np.full(NET_HW, 33.0, np.float32)
    depth[:, :100], depth[:, 100:200], depth[:, 200:300] = 10.0, 79.0, 0.05  # 0.05 m: NaN
    out = pipeline.postprocess(prepared, {"thermal": depth, "rgb": depth}, {}, None,
                               {"thermal": True})
    assert out["rgb"].colored is None  # not requested (no subscriber): not built
    colored = out["thermal"].colored
    assert (colored.encoding, colored.height, colored.width, colored.step) == (
        "rgb8", 256, 640, 1920)
    assert colored.header == out["thermal"].image.header
    pixels = np.frombuffer(colored.data, np.uint8).reshape(256, 640, 3)
    published = _float_image(out["thermal"].image)
    np.testing.assert_array_equal(pixels, colorize_depth(published, 85.0, min_depth_m=5.0,
                                                         scale_bar=False))
    # known depths on TURBO over [5, 85] m: level = round((d - 5) / 80 * 255), NaN black
    turbo = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_TURBO)
    for column, depth_m in ((0, 10.0), (150, 79.0), (400, 33.0)):
        level = round((depth_m - 5.0) / 80.0 * 255.0)  # 15.9, 235.9, 89.25: far from .5
        np.testing.assert_array_equal(pixels[:, column], np.tile(turbo[level, 0, ::-1], (256, 1)))
    assert (pixels[:, 200:300] == 0).all()


# --- the node over DDS ----------------------------------------------------------------------------
def _direct_run(model) -> dict:
    """What the node computes for the harness' pair, run here: the same pipeline preprocessing,
    then the backend itself."""
    from depth_fusion_ros.backends import create_backend

    _, prepared = _prepared()
    backend = create_backend(model, "onnxruntime", "cpu")
    return backend.infer_outputs(prepared.thermal_input, prepared.rgb_input)


def _publish_until(h: Harness, done, timeout_s: float = 60.0) -> None:
    def step() -> bool:
        if not done():
            h.publish_infos()
            h.publish_pair(time.time_ns())
            h.spin_until(lambda: False, 0.4)
        return done()

    assert h.spin_until(step, timeout_s), h.log_path.read_text()


def _by_stamp(h: Harness, topic: str) -> dict[int, object]:
    return {_stamp_ns(m.header): m for _, m in h.received[topic]}


def test_node_publishes_confidence_masks_and_colours_on_demand(tiny_confidence_onnx_model,
                                                              tmp_path):
    direct = _direct_run(tiny_confidence_onnx_model)
    conf_t = direct["confidence"]["thermal"]
    assert 0.0 < conf_t.min() and conf_t.max() <= 1.0
    min_confidence = float(np.median(conf_t))  # masks about half the thermal pixels
    # stale_timeout_s long: on a loaded machine a late image must not put the node in
    # single-camera mode here (that is test_degraded_node's), so every output is a fused pair's
    h = Harness(tiny_confidence_onnx_model, tmp_path, "conf", input_qos="reliable",
                min_confidence=min_confidence, diagnostics_period_s=0.25, stale_timeout_s=60.0)
    try:
        thermal, rgb, _ = _harness_inputs()
        assert bytes(h.thermal.data) == bytes(thermal.data) and bytes(h.rgb.data) == bytes(rgb.data)
        for view in VIEWS:
            h._collect(f"{view}/depth/confidence", Image)
        h.wait_ready()

        def complete(outputs=("image", "points", "confidence")) -> bool:
            return all(set.intersection(*(set(_by_stamp(h, f"{v}/depth/{o}")) for o in outputs))
                       for v in VIEWS)

        _publish_until(h, complete)
        for view in VIEWS:
            _check_view(h, view, direct, min_confidence)
        # nobody subscribes to the coloured depth yet: it is not built
        assert h.spin_until(lambda: h.diagnostics and int(h.diag_values().get(
            "pairs_processed", 0)) >= 1, 5.0)
        assert h.diag_values()["colored_published"] == "0"
        values = h.diag_values()
        assert (values["processed_thermal_only"], values["processed_rgb_only"]) == ("0", "0")
        for view in VIEWS:
            h._collect(f"{view}/depth/colored", Image)
        _publish_until(h, lambda: complete(("image", "colored")))
        for view in VIEWS:
            _check_colored(h, view)
        assert h.spin_until(lambda: int(h.diag_values().get("colored_published", 0)) >= 2, 5.0)
    finally:
        h.close()
    assert "no {view}/depth/confidence" not in h.log_path.read_text()


def _check_view(h: Harness, view: str, direct: dict, min_confidence: float) -> None:
    """Layout and content of one view's confidence, depth and cloud of one pair."""
    confs, images = _by_stamp(h, f"{view}/depth/confidence"), _by_stamp(h, f"{view}/depth/image")
    clouds = _by_stamp(h, f"{view}/depth/points")
    stamp = min(set(confs) & set(images) & set(clouds))
    conf_msg, image = confs[stamp], images[stamp]
    assert (conf_msg.encoding, conf_msg.width, conf_msg.height, conf_msg.step) == (
        "32FC1", image.width, image.height, image.step)
    assert conf_msg.header == image.header and conf_msg.header.frame_id == f"{view}_optical"
    conf, depth = _float_image(conf_msg), _float_image(image)
    expected_conf = direct["confidence"][view]
    expected_depth = direct["depth"][view]
    np.testing.assert_array_equal(np.isnan(conf), np.isnan(depth))  # NaN where the depth is
    valid = np.isfinite(depth)
    np.testing.assert_allclose(conf[valid], expected_conf[valid], atol=1e-4)
    np.testing.assert_allclose(depth[valid], expected_depth[valid], atol=1e-3)
    # masked exactly where the direct run's confidence is below min_confidence (or the depth
    # leaves [0.1, 80] m); pixels within 1e-5 of the threshold may go either way across threads
    masked = (expected_conf < min_confidence) | (expected_depth < 0.1) | (expected_depth > 80.0)
    sure = np.abs(expected_conf - min_confidence) > 1e-5
    np.testing.assert_array_equal(~valid[sure], masked[sure])
    if view == "thermal":
        assert 0.3 < masked.mean() < 0.7
    z = cloud_to_numpy(clouds[stamp])[..., 2]
    np.testing.assert_array_equal(np.isnan(z), ~valid)


def _check_colored(h: Harness, view: str) -> None:
    colored_by, images = _by_stamp(h, f"{view}/depth/colored"), _by_stamp(h, f"{view}/depth/image")
    stamp = max(set(colored_by) & set(images))
    colored, image = colored_by[stamp], images[stamp]
    assert (colored.encoding, colored.width, colored.height, colored.step) == (
        "rgb8", image.width, image.height, 3 * image.width)
    assert colored.header == image.header
    pixels = np.frombuffer(colored.data, np.uint8).reshape(colored.height, colored.width, 3)
    np.testing.assert_array_equal(pixels, colorize_depth(_float_image(image), 80.0,
                                                         min_depth_m=0.0, scale_bar=False))
    assert (pixels[np.isnan(_float_image(image))] == 0).all()


def test_min_confidence_with_a_model_without_confidence_stops_startup(tiny_onnx_model):
    result = subprocess.run(_node_command() + [
        "--ros-args", "-p", f"model_path:={tiny_onnx_model}", "-p", "device:=cpu",
        "-p", "warmup_iterations:=0", "-p", "min_confidence:=0.5"],
        capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert (f"cannot start: parameter 'min_confidence' = 0.5 needs confidence outputs, but model "
            f"{tiny_onnx_model} has none for ['thermal', 'rgb']") in output
    assert "Traceback" not in output
