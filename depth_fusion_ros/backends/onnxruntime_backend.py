"""ONNX Runtime backend: CPU everywhere, CUDA / TensorRT execution providers where installed."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from depth_fusion_ros.backends.base import Backend
from depth_fusion_ros.metadata import ModelMetadata

LOG = logging.getLogger(__name__)


def _device_index(device: str) -> int:
    """"cuda" -> 0, "cuda:1" -> 1; raises ValueError naming the parameter otherwise."""
    if device == "cuda":
        return 0
    prefix, _, index = device.partition(":")
    if prefix != "cuda" or not index.isdigit():
        raise ValueError(f"parameter device={device!r}: expected 'cpu', 'cuda' or 'cuda:N'")
    return int(index)


def select_providers(device: str, available: list[str]) -> tuple[list, str]:
    """Execution providers for a device, in ORT priority order, and the device actually used.

    "cpu" -> CPU only. "cuda[:N]" -> TensorRT EP (if present), CUDA EP (if present), then CPU as
    ORT's own fallback for unsupported nodes; with neither GPU provider, CPU with a warning.
    """
    if device == "cpu":
        return ["CPUExecutionProvider"], "cpu"
    index = _device_index(device)
    providers: list = []
    if "TensorrtExecutionProvider" in available:
        providers.append(("TensorrtExecutionProvider", {"device_id": index}))
    if "CUDAExecutionProvider" in available:
        providers.append(("CUDAExecutionProvider", {"device_id": index}))
    if not providers:
        LOG.warning(
            "device=%s requested but this onnxruntime has no CUDA/TensorRT execution provider "
            "(available: %s); falling back to CPU. Install onnxruntime-gpu for GPU inference.",
            device,
            ", ".join(available),
        )
        return ["CPUExecutionProvider"], "cpu"
    return providers + ["CPUExecutionProvider"], f"cuda:{index}"


def default_num_threads() -> int:
    """Intra-op threads: the cores this process may use (ORT's default ignores CPU affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class OnnxRuntimeBackend(Backend):
    """Runs a `.onnx` model with ONNX Runtime; input/output names come from the sidecar."""

    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | os.PathLike,
        metadata: ModelMetadata,
        device: str = "cpu",
        num_threads: int | None = None,
    ) -> None:
        import onnxruntime as ort  # heavy import; only when this backend is chosen

        providers, used_device = select_providers(device, ort.get_available_providers())
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or default_num_threads()
        options.inter_op_num_threads = 1  # the graph is a single chain; parallel ops gain nothing
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(model_path), options, providers=providers)
        super().__init__(metadata, used_device, metadata.precision)
        self._check_names(Path(model_path))
        self._output_names = [spec.name for spec in metadata.outputs]

    def _check_names(self, model_path: Path) -> None:
        """The graph must have exactly the inputs/outputs its sidecar lists (same names, shapes)."""
        graph_inputs = {node.name: node.shape for node in self.session.get_inputs()}
        graph_outputs = {node.name for node in self.session.get_outputs()}
        for spec in self.metadata.inputs:
            if spec.name not in graph_inputs:
                raise ValueError(
                    f"model {model_path}: sidecar input {spec.name!r} is not a graph input "
                    f"(graph has {sorted(graph_inputs)}); re-export the model"
                )
            if list(graph_inputs[spec.name]) != list(spec.shape):
                raise ValueError(
                    f"model {model_path}: input {spec.name!r} has shape {graph_inputs[spec.name]} "
                    f"in the graph but {spec.shape} in the sidecar; re-export the model"
                )
        missing = [spec.name for spec in self.metadata.outputs if spec.name not in graph_outputs]
        if missing:
            raise ValueError(f"model {model_path}: sidecar outputs {missing} are not graph outputs")

    @property
    def providers(self) -> list[str]:
        """Providers the session actually uses (first one runs most nodes)."""
        return self.session.get_providers()

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.session.run(self._output_names, feeds)
        return dict(zip(self._output_names, results, strict=True))

    def describe(self) -> str:
        return f"{super().describe()} providers={','.join(self.providers)}"
