"""Backends on the real tiny model: ONNX Runtime on CPU here; TensorRT / CUDA where present."""
from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from depth_fusion_ros.backends import create_backend
from depth_fusion_ros.backends.accuracy import sample_inputs
from depth_fusion_ros.backends.base import cuda_index
from depth_fusion_ros.backends.onnxruntime_backend import (
    CPU_EP,
    CUDA_EP,
    TRT_EP,
    default_num_threads,
    default_ort_trt_cache_dir,
    device_from_providers,
    provider_attempts,
)
from depth_fusion_ros.backends.tensorrt_backend import check_engine_io, check_tensorrt_version
from depth_fusion_ros.metadata import ModelMetadataError, load_metadata


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


HAS_CUDA = _has_cuda()


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
    with pytest.raises(ValueError, match="backend='torch' cannot run .*tiny.onnx"):
        create_backend(tiny_onnx_model, backend="torch")  # (tensorrt builds an engine from it)
    with pytest.raises(ValueError, match="parameter device='gpu0'"):
        create_backend(tiny_onnx_model, device="gpu0")


def test_missing_sidecar_stops_backend_creation(tiny_onnx_model, tmp_path):
    copy = tmp_path / "nosidecar.onnx"
    shutil.copyfile(tiny_onnx_model, copy)
    with pytest.raises(ModelMetadataError, match="nosidecar.onnx has no metadata sidecar"):
        create_backend(copy, device="cpu")


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


# ---- ONNX Runtime: threads, spinning, providers and the device it really runs on -------------

def test_onnxruntime_threads_and_spinning_are_session_options(onnx_backend, tiny_onnx_model):
    options = onnx_backend.session.get_session_options()
    assert options.intra_op_num_threads == 1  # the fixture's num_threads
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    spinning = create_backend(tiny_onnx_model, device="cpu", num_threads=2, allow_spinning=True)
    options = spinning.session.get_session_options()
    assert options.intra_op_num_threads == 2
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    with pytest.raises(ValueError, match="parameter num_threads=0"):
        create_backend(tiny_onnx_model, device="cpu", num_threads=0)


def test_default_threads_follow_the_usable_cores(monkeypatch):
    import os

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert default_num_threads() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)))
    assert default_num_threads() == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert default_num_threads() == 8
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert default_num_threads() == 1


def test_ort_tensorrt_cache_dir_follows_ros_home(tmp_path):
    assert default_ort_trt_cache_dir({"ROS_HOME": str(tmp_path)}) == (
        tmp_path / "depth_fusion" / "ort_trt_cache")
    assert default_ort_trt_cache_dir({"HOME": "/home/robot"}) == (
        Path("/home/robot/.ros/depth_fusion/ort_trt_cache"))


def test_provider_attempts_keep_device_id_and_cache_tensorrt_engines(tmp_path):
    attempts = provider_attempts("cuda:1", [TRT_EP, CUDA_EP, CPU_EP], tmp_path, trt_fp16=True)
    assert [[p[0] if isinstance(p, tuple) else p for p in a] for a in attempts] == [
        [TRT_EP, CUDA_EP, CPU_EP], [CUDA_EP, CPU_EP], [CPU_EP]]
    trt_options = attempts[0][0][1]
    assert trt_options == {
        "device_id": 1, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(tmp_path), "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(tmp_path)}
    assert attempts[0][1] == (CUDA_EP, {"device_id": 1}) == attempts[1][0]
    assert provider_attempts("cuda", [CUDA_EP, CPU_EP], tmp_path) == [
        [(CUDA_EP, {"device_id": 0}), CPU_EP], [CPU_EP]]
    assert provider_attempts("cpu", [TRT_EP, CUDA_EP, CPU_EP], tmp_path) == [[CPU_EP]]
    assert provider_attempts("cuda:0", [CPU_EP], tmp_path) == [[CPU_EP]]
    with pytest.raises(ValueError, match="parameter device='gpu0'"):
        provider_attempts("gpu0", [CUDA_EP, CPU_EP], tmp_path)


def test_device_comes_from_the_providers_the_session_really_has():
    requested = [TRT_EP, CUDA_EP, CPU_EP]
    assert device_from_providers(requested, requested, 1) == ("cuda:1", None)
    device, warning = device_from_providers(requested, [CUDA_EP, CPU_EP], 1)
    assert device == "cuda:1" and "did not enable TensorrtExecutionProvider" in warning
    device, warning = device_from_providers(requested, [CPU_EP], 1)  # GPU libraries failed to load
    assert device == "cpu"
    assert "TensorrtExecutionProvider, CUDAExecutionProvider" in warning
    assert "running on cpu" in warning
    assert device_from_providers([CPU_EP], [CPU_EP], None) == ("cpu", None)


def test_cuda_index_parses_device_strings():
    assert (cuda_index("cuda"), cuda_index("cuda:0"), cuda_index("cuda:3")) == (0, 0, 3)
    for bad in ("cpu", "gpu", "cuda:", "cuda:x", "cuda:-1"):
        with pytest.raises(ValueError, match=f"parameter device={bad!r}"):
            cuda_index(bad)


# ---- torch backend: a .pt2 exported on one device runs on another ---------------------------

@pytest.fixture(scope="module")
def small_pt2(tmp_path_factory):
    """The tiny network at 64x128 exported on the CPU to .pt2 (torch.export) + sidecar."""
    from model_fixtures import make_tiny_checkpoint

    from training.export import export_checkpoint

    out_dir = tmp_path_factory.mktemp("small_pt2")
    ckpt = make_tiny_checkpoint(out_dir, height=64, width=128)
    return export_checkpoint(ckpt, out_dir / "small.pt2", fmt="pt2")


def test_cpu_exported_pt2_moves_to_another_device(small_pt2):
    """torch.export bakes the export device into the graph (arange(device=cpu), device asserts);
    `.module().to(dev)` alone fails on any other device. The meta device stands in for CUDA."""
    import torch

    from depth_fusion_ros.backends.torch_backend import load_exported_program

    plain = torch.export.load(str(small_pt2)).module().to("meta")
    meta_inputs = (torch.zeros(1, 1, 64, 128, device="meta"),
                   torch.zeros(1, 3, 64, 128, device="meta"))
    with pytest.raises(RuntimeError, match="device"):
        plain(*meta_inputs)  # the defect: weights moved, graph still on the CPU
    module = load_exported_program(small_pt2, "meta")
    baked = {str(node.kwargs["device"]) for node in module.graph.nodes if "device" in node.kwargs}
    assert baked == {"meta"}
    outputs = module(*meta_inputs)
    assert [(tuple(o.shape), o.device.type) for o in outputs] == [((1, 1, 64, 128), "meta")] * 2


def test_host_staging_reuses_its_tensors_and_casts():
    import torch

    from depth_fusion_ros.backends.base import HostStaging

    staging = HostStaging(torch, pin=False)  # pinned on CUDA; the same code otherwise
    first = staging.stage("x", np.full((1, 3, 4, 5), 1.5, np.float32), torch.float32)
    again = staging.stage("x", np.full((1, 3, 4, 5), 2.5, np.float32), torch.float32)
    assert again is first and float(first[0, 0, 0, 0]) == 2.5  # one buffer per name
    half = staging.stage("x", np.full((1, 3, 4, 5), 0.1, np.float32), torch.float16)
    assert half is not first and half.dtype == torch.float16  # an engine's HALF input
    assert float(half[0, 0, 0, 0]) == pytest.approx(0.1, abs=1e-4)
    assert staging.get("y", (2, 2), torch.float32).shape == (2, 2)
    with pytest.raises(TypeError):  # a float array cannot be cast into an integer buffer
        staging.stage("z", np.ones((2, 2), np.float32), torch.int32)


def test_torch_backend_outputs_outlive_the_next_frame(small_pt2):
    """The node infers frame N+1 while N is published (pipelined): a backend's outputs must not
    be its reused staging tensors."""
    from depth_fusion_ros.backends.torch_backend import TorchBackend

    backend = TorchBackend(small_pt2, load_metadata(small_pt2), "cpu")
    feeds = sample_inputs(64, 128)
    first = backend.infer(feeds["thermal"], feeds["rgb"])
    kept = {view: depth.copy() for view, depth in first.items()}
    second = backend.infer(-feeds["thermal"], np.zeros_like(feeds["rgb"]))
    for view, depth in first.items():
        np.testing.assert_array_equal(depth, kept[view])  # untouched by the second frame
        assert not np.shares_memory(depth, second[view])
        assert not np.array_equal(depth, second[view])


def test_aoti_package_is_refused_on_cpu(small_pt2):
    from depth_fusion_ros.backends.torch_backend import TorchBackend

    md = dataclasses.replace(load_metadata(small_pt2),
                             extra={"packaging": "aoti", "gpu_name": "NVIDIA L4"})
    with pytest.raises(ValueError, match=r"AOTInductor package compiled for CUDA \(NVIDIA L4\)"
                                         r".*device:=cuda"):
        TorchBackend(small_pt2, md, "cpu")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (AOTInductor packages are CUDA-only)")
def test_aoti_package_loads_on_the_requested_gpu(tiny_onnx_model, onnx_backend, tmp_path):
    import torch

    from training.export import export_checkpoint

    out = export_checkpoint(tiny_onnx_model.parent / "tiny_fusion.pt", tmp_path / "a.pt2",
                            fmt="pt2", aoti=True)
    last = torch.cuda.device_count() - 1
    backend = create_backend(out, device=f"cuda:{last}")
    assert backend.device == f"cuda:{last}" and backend.precision == "fp32"
    feeds = sample_inputs(256, 640)
    depth = backend.infer(feeds["thermal"], feeds["rgb"])
    expected = onnx_backend.infer(feeds["thermal"], feeds["rgb"])
    assert float(np.max(np.abs(depth["rgb"] - expected["rgb"]))) < 1e-2


# ---- TensorRT runtime checks that need no GPU ------------------------------------------------

def test_tensorrt_version_must_be_10():
    check_tensorrt_version("10.3.0")
    check_tensorrt_version("10.13.2.6")
    for version in ("11.0.0", "8.6.1", "9.3.0", "garbage"):
        with pytest.raises(ImportError, match=f"TensorRT {version} found.*install TensorRT 10.x"):
            check_tensorrt_version(version)


def test_engine_io_is_checked_in_both_directions(tiny_onnx_model):
    md = load_metadata(tiny_onnx_model)
    good = {"thermal": (True, (1, 1, 256, 640)), "rgb": (True, (1, 3, 256, 640)),
            "depth_thermal": (False, (1, 1, 256, 640)), "depth_rgb": (False, (1, 1, 256, 640))}
    check_engine_io(good, md, "m.engine")
    missing_output = {k: v for k, v in good.items() if k != "depth_rgb"}
    with pytest.raises(ValueError, match="sidecar output 'depth_rgb' is not an engine tensor"):
        check_engine_io(missing_output, md, "m.engine")
    extra = {**good, "depth_nir": (False, (1, 1, 256, 640))}
    with pytest.raises(ValueError, match="engine tensor 'depth_nir' is not in the sidecar"):
        check_engine_io(extra, md, "m.engine")
    wrong = {**good, "rgb": (True, (1, 3, 128, 640)), "depth_thermal": (True, (1, 1, 256, 640))}
    with pytest.raises(ValueError) as err:
        check_engine_io(wrong, md, "m.engine")
    message = str(err.value)
    assert "input 'rgb' has shape (1, 3, 128, 640) in the engine but (1, 3, 256, 640)" in message
    assert "sidecar output 'depth_thermal' is an engine input" in message
    assert "engine m.engine does not match its sidecar" in message
    assert "python -m training.build_engine --onnx m.onnx --out m.engine" in message
    with pytest.raises(ValueError) as err:  # an engine-cache entry says what to do instead
        check_engine_io(wrong, md, "cache/fp16-x.engine", "it is an engine-cache entry: delete it")
    assert str(err.value).endswith("; it is an engine-cache entry: delete it")
    assert "training.build_engine" not in str(err.value)
