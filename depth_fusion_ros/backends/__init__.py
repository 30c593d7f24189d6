"""Inference backends behind one interface (docs/ARCHITECTURE.md): ONNX Runtime, TensorRT, torch.

`create_backend` validates the model's sidecar (metadata.load_metadata) before any engine is
loaded, so a missing, tampered or foreign file fails fast with a message saying how to rebuild it.
Each backend module imports its heavy dependency lazily; importing this package stays cheap.
"""
from __future__ import annotations

import os

from depth_fusion_ros.backends.base import Backend
from depth_fusion_ros.metadata import format_for_path, load_metadata

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
_FORMAT_BACKEND = {"onnx": "onnxruntime", "engine": "tensorrt", "pt2": "torch"}

__all__ = ["BACKENDS", "Backend", "create_backend"]


def create_backend(
    model_path: str | os.PathLike,
    backend: str = "auto",
    device: str = "cuda",
    num_threads: int | None = None,
    *,
    allow_spinning: bool = False,
    ort_trt_cache_dir: str | os.PathLike | None = None,
) -> Backend:
    """Loads a model file with its validated sidecar into a ready-to-run backend.

    Args:
        model_path: `.onnx`, `.engine` or `.pt2` file with its `<file>.json` sidecar.
        backend: "auto" (by extension), "onnxruntime", "tensorrt" or "torch".
        device: "cpu", "cuda" or "cuda:N" (ONNX Runtime falls back to CPU with a warning, and
            the backend's `device` then says "cpu").
        num_threads: ONNX Runtime intra-op threads (default: the usable cores minus one, <= 8).
        allow_spinning: ONNX Runtime pool threads busy-wait between ops (default off, so they
            do not hold the cores the ROS executor needs).
        ort_trt_cache_dir: engine/timing cache of ONNX Runtime's TensorRT execution provider
            (default $ROS_HOME/depth_fusion/ort_trt_cache or ~/.ros/depth_fusion/ort_trt_cache).
    Raises:
        ValueError: unknown backend, unknown extension, or a backend that cannot read the file.
        ModelMetadataError: missing/malformed/tampered/foreign model or sidecar.
    """
    if backend not in BACKENDS:
        raise ValueError(f"parameter backend={backend!r}: expected one of {', '.join(BACKENDS)}")
    fmt = format_for_path(model_path)  # ValueError naming the file for an unknown extension
    chosen = _FORMAT_BACKEND[fmt] if backend == "auto" else backend
    if chosen != _FORMAT_BACKEND[fmt]:
        raise ValueError(
            f"parameter backend={backend!r} cannot run {model_path} (a {fmt} file needs "
            f"backend={_FORMAT_BACKEND[fmt]!r} or 'auto')"
        )
    metadata = load_metadata(model_path)
    if chosen == "onnxruntime":
        from depth_fusion_ros.backends.onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model_path, metadata, device, num_threads,
                                  allow_spinning=allow_spinning,
                                  trt_cache_dir=ort_trt_cache_dir)
    if chosen == "tensorrt":
        from depth_fusion_ros.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend(model_path, metadata, device)
    from depth_fusion_ros.backends.torch_backend import TorchBackend

    return TorchBackend(model_path, metadata, device)
