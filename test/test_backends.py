"""Backends on the real tiny model: ONNX Runtime on CPU here; TensorRT / CUDA where present."""
from __future__ import annotations

import importlib.util
import logging
import shutil

import numpy as np
import pytest

from depth_fusion_ros.backends import create_backend
from depth_fusion_ros.metadata import ModelMetadataError, load_metadata, sidecar_path
from training import build_engine
from training.export import sample_inputs

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


HAS_CUDA = _has_cuda()
needs_trt = pytest.mark.skipif(not (HAS_TENSORRT and HAS_CUDA),
                               reason="needs the tensorrt package (TensorRT 10) and a CUDA GPU")


@pytest.fixture(scope="module")
def onnx_backend(tiny_onnx_model):
    return create_backend(tiny_onnx_model, backend="onnxruntime", device="cpu", num_threads=1)


def test_onnxruntime_backend_contract(onnx_backend, tiny_onnx_model):
    md = load_metadata(tiny_onnx_model)
    assert (onnx_backend.name, onnx_backend.device, onnx_backend.precision) == (
        "onnxruntime", "cpu", "fp32")
    assert onnx_backend.views == ["thermal", "rgb"]
    line = onnx_backend.describe()
    assert "backend=onnxruntime" in line and f"model_id={md.model_id}" in line
    assert "device=cpu" in line and "precision=fp32" in line and "\n" not in line
    feeds = sample_inputs(256, 640)
    first = onnx_backend.infer(feeds["thermal"], feeds["rgb"])
    again = onnx_backend.infer(feeds["thermal"], feeds["rgb"])
    assert sorted(first) == ["rgb", "thermal"]
    for view, depth in first.items():
        assert depth.shape == (256, 640) and depth.dtype == np.float32
        assert np.isfinite(depth).all()
        assert 0.0 < float(depth.min()) and float(depth.max()) < md.max_depth_m
        np.testing.assert_array_equal(depth, again[view])  # deterministic on CPU
    assert onnx_backend.warmup(1) > 0.0


def test_wrong_input_shape_names_input_and_sidecar(onnx_backend):
    thermal = np.zeros((1, 1, 240, 640), np.float32)
    rgb = np.zeros((1, 3, 256, 640), np.float32)
    with pytest.raises(ValueError, match=r"thermal input has shape \(1, 1, 240, 640\).*"
                                         r"expects \(1, 1, 256, 640\)"):
        onnx_backend.infer(thermal, rgb)


def test_cuda_request_falls_back_to_cpu_with_warning(tiny_onnx_model, caplog):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider; no fallback to observe")
    with caplog.at_level(logging.WARNING):
        backend = create_backend(tiny_onnx_model, device="cuda", num_threads=1)
    assert backend.device == "cpu" and backend.providers == ["CPUExecutionProvider"]
    assert "falling back to CPU" in caplog.text


def test_bad_backend_extension_and_device_are_clear(tiny_onnx_model, tmp_path):
    with pytest.raises(ValueError, match="parameter backend='openvino'"):
        create_backend(tiny_onnx_model, backend="openvino")
    with pytest.raises(ValueError, match=r"model\.tflite: unknown extension '\.tflite'"):
        create_backend(tmp_path / "model.tflite")
    with pytest.raises(ValueError, match="backend='tensorrt' cannot run .*tiny.onnx"):
        create_backend(tiny_onnx_model, backend="tensorrt")
    with pytest.raises(ValueError, match="parameter device='gpu0'"):
        create_backend(tiny_onnx_model, device="gpu0")


def test_missing_sidecar_stops_backend_creation(tiny_onnx_model, tmp_path):
    copy = tmp_path / "nosidecar.onnx"
    shutil.copyfile(tiny_onnx_model, copy)
    with pytest.raises(ModelMetadataError, match="nosidecar.onnx has no metadata sidecar"):
        create_backend(copy, device="cpu")


@pytest.mark.skipif(HAS_TENSORRT, reason="checks the message shown when tensorrt is missing")
def test_engine_without_tensorrt_says_what_to_install(tiny_onnx_model, tmp_path, capsys):
    code = build_engine.main(["--onnx", str(tiny_onnx_model), "--out", str(tmp_path / "m.engine")])
    assert code == 3
    assert "'tensorrt' (TensorRT 10) is not importable" in capsys.readouterr().err
    assert not (tmp_path / "m.engine").exists() and not sidecar_path(tmp_path / "m.engine").exists()


def test_build_engine_help_prints_trtexec(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_engine.parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "trtexec --onnx=model.onnx --saveEngine=model.engine" in out
    assert "--memPoolSize=workspace:" in out and "--sidecar-only" in out


@needs_trt
@pytest.mark.parametrize("precision, tolerance_m", [("fp32", 1e-2), ("fp16", 0.5)])
def test_tensorrt_engine_matches_onnxruntime(tiny_onnx_model, onnx_backend, tmp_path,
                                             precision, tolerance_m):
    engine = tmp_path / f"tiny_{precision}.engine"
    assert build_engine.main(["--onnx", str(tiny_onnx_model), "--out", str(engine),
                              "--precision", precision, "--workspace-gb", "1",
                              "--timing-cache", str(tmp_path / "timing.cache")]) == 0
    md = load_metadata(engine)
    assert md.format == "engine" and md.precision == precision
    assert md.tensorrt["source_onnx_sha256"] == load_metadata(tiny_onnx_model).model_sha256
    backend = create_backend(engine, device="cuda")
    assert backend.name == "tensorrt" and backend.device.startswith("cuda")
    feeds = sample_inputs(256, 640)
    expected = onnx_backend.infer(feeds["thermal"], feeds["rgb"])
    depth = backend.infer(feeds["thermal"], feeds["rgb"])
    for view in ("thermal", "rgb"):
        assert float(np.max(np.abs(depth[view] - expected[view]))) < tolerance_m
    assert (tmp_path / "timing.cache").stat().st_size > 0


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU for the torch backend on cuda")
def test_torch_backend_on_cuda(tiny_onnx_model, onnx_backend, tmp_path):
    from training.export import export_checkpoint

    out = export_checkpoint(tiny_onnx_model.parent / "tiny_fusion.pt", tmp_path / "t.pt2",
                            fmt="pt2")
    backend = create_backend(out, device="cuda")
    feeds = sample_inputs(256, 640)
    depth = backend.infer(feeds["thermal"], feeds["rgb"])
    expected = onnx_backend.infer(feeds["thermal"], feeds["rgb"])
    assert backend.device.startswith("cuda")
    assert float(np.max(np.abs(depth["thermal"] - expected["thermal"]))) < 1e-2


def test_int8_calibration_frames_use_shared_preprocessing(tmp_path):
    """The calibrator's input stream: real MS2-layout frames through the shared preprocessing."""
    from depth_fusion_ros import ms2
    from depth_fusion_ros.preprocess import preprocess_rgb, preprocess_thermal
    from training.synthetic.__main__ import main as synthetic_main

    root = tmp_path / "ms2"
    assert synthetic_main(["--out", str(root), "--sequences", "1", "--frames", "3"]) == 0
    batches = list(build_engine.calibration_batches(root, "train", 2, 64, 128))
    assert len(batches) == 2
    seq = ms2.read_split(root, "train")[0]
    frame = ms2.list_frames(root, seq)[0]
    thermal, rgb = batches[0]
    assert thermal.shape == (1, 1, 64, 128) and rgb.shape == (1, 3, 64, 128)
    assert thermal.dtype == np.float32 and rgb.dtype == np.float32
    expected = preprocess_thermal(ms2.read_thermal(root, seq, frame), (64, 128))
    np.testing.assert_array_equal(thermal[0], expected)
    np.testing.assert_array_equal(rgb[0], preprocess_rgb(ms2.read_rgb(root, seq, frame), (64, 128)))
    assert -2.1 < float(thermal.min()) < float(thermal.max()) < 2.5  # (0 - 0.45)/0.225 .. (1-.45)/.225
