"""The backend interface every inference engine implements (docs/ARCHITECTURE.md, "Backend interface").

A backend owns one model file plus its validated sidecar and turns normalised network inputs into
metric depth maps. Shape checks and output naming live here once, so the ONNX Runtime, TensorRT
and torch modules only implement `_run`.
"""
from __future__ import annotations

import abc
import time

import numpy as np

from depth_fusion_ros.metadata import ModelMetadata


def cuda_index(device: str) -> int:
    """GPU index of a "cuda" / "cuda:N" device string ("cuda" means GPU 0, as in ONNX Runtime).

    Raises:
        ValueError naming the `device` parameter for anything else (callers handle "cpu" first).
    """
    if device == "cuda":
        return 0
    prefix, _, index = device.partition(":")
    if prefix != "cuda" or not index.isdigit():
        raise ValueError(f"parameter device={device!r}: expected 'cpu', 'cuda' or 'cuda:N'")
    return int(index)


class HostStaging:
    """Reusable host tensors for a torch-managed device's input and output copies.

    On CUDA they are page-locked (pinned), so `device_tensor.copy_(staged, non_blocking=True)`
    and `staged.copy_(device_tensor, non_blocking=True)` are asynchronous on the backend's stream
    and a frame needs one synchronisation; from pageable memory every copy would block. On the CPU
    the same code runs with ordinary tensors (pin=False), so it is what the CPU tests exercise.
    A staged tensor is reused by the next call: copy results out (np.array) after synchronising.
    torch is passed in, so importing this module does not import it.
    """

    def __init__(self, torch, pin: bool):
        self._torch, self.pin = torch, bool(pin)
        self._tensors: dict[str, object] = {}

    def get(self, name: str, shape, dtype):
        """The host tensor `name` of this shape and torch dtype (allocated on first use)."""
        tensor = self._tensors.get(name)
        if tensor is None or tuple(tensor.shape) != tuple(shape) or tensor.dtype != dtype:
            tensor = self._torch.empty(tuple(shape), dtype=dtype, pin_memory=self.pin)
            self._tensors[name] = tensor
        return tensor

    def stage(self, name: str, array: np.ndarray, dtype):
        """`array` copied (and cast, e.g. float32 -> float16) into the host tensor `name`."""
        tensor = self.get(name, array.shape, dtype)
        np.copyto(tensor.numpy(), array, casting="same_kind")
        return tensor


class Backend(abc.ABC):
    """Runs one exported DMCF-SIDE model.

    Attributes:
        metadata: validated sidecar of the model file.
        name: "onnxruntime" | "tensorrt" | "torch".
        device: where it runs, e.g. "cpu", "cuda:0".
        precision: "fp32" | "fp16" | "int8".
    """

    name: str = "base"

    def __init__(self, metadata: ModelMetadata, device: str, precision: str) -> None:
        self.metadata = metadata
        self.device = device
        self.precision = precision

    @property
    def views(self) -> list[str]:
        """Views this model outputs ("thermal", "rgb")."""
        return self.metadata.views

    def check_inputs(self, thermal: np.ndarray, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """Validates inputs against the sidecar; returns {input name: contiguous float32 array}.

        Args:
            thermal: [1, 1, H, W] float32 normalised.
            rgb: [1, 3, H, W] float32 normalised.
        Raises:
            ValueError naming the input, the expected and the received shape.
        """
        arrays = {"thermal": thermal, "rgb": rgb}
        feeds = {}
        for spec in self.metadata.inputs:
            array = arrays[spec.view]
            if array is None:
                raise ValueError(f"model {self.metadata.model_file} needs the {spec.view} input")
            if tuple(array.shape) != tuple(spec.shape):
                raise ValueError(
                    f"{spec.view} input has shape {tuple(array.shape)}, but model "
                    f"{self.metadata.model_file} expects {tuple(spec.shape)} (see its sidecar); "
                    "preprocess to the sidecar's input_size first"
                )
            feeds[spec.name] = np.ascontiguousarray(array, dtype=np.float32)
        return feeds

    def infer(self, thermal: np.ndarray, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """thermal [1,1,H,W] f32, rgb [1,3,H,W] f32 (normalised) -> {view: [H, W] f32 metres}.

        Only the views the model outputs are returned.
        """
        return self.infer_outputs(thermal, rgb)["depth"]

    def infer_outputs(self, thermal: np.ndarray,
                      rgb: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
        """Like `infer`, every output: {"depth": {view: [H, W] m}, "confidence": {view: [H, W]}}
        ("confidence" empty for a model without the uncertainty head)."""
        feeds = self.check_inputs(thermal, rgb)
        raw = self._run(feeds)  # {output name: [1, 1, H, W]}
        outputs: dict[str, dict[str, np.ndarray]] = {"depth": {}, "confidence": {}}
        for spec in self.metadata.outputs:
            out = np.asarray(raw[spec.name], dtype=np.float32)
            outputs[spec.kind][spec.view] = out.reshape(out.shape[-2:])  # [H, W]
        return outputs

    @abc.abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Runs the model on {input name: array}; returns {output name: array [1, 1, H, W]}."""

    def warmup(self, iterations: int = 2) -> float:
        """Runs `iterations` inferences on zero inputs (lazy allocations, autotuning).

        Returns:
            the wall time of the last iteration in milliseconds (0.0 if iterations == 0).
        """
        height, width = self.metadata.height, self.metadata.width
        thermal = np.zeros((1, 1, height, width), np.float32)
        rgb = np.zeros((1, 3, height, width), np.float32)
        last_ms = 0.0
        for _ in range(iterations):
            start = time.perf_counter()
            self.infer(thermal, rgb)
            last_ms = (time.perf_counter() - start) * 1e3
        return last_ms

    def describe(self) -> str:
        """One line for the start-up log: backend, device, precision, model id, size, views."""
        md = self.metadata
        return (
            f"backend={self.name} device={self.device} precision={self.precision} "
            f"model_id={md.model_id} input={md.height}x{md.width} views={','.join(self.views)}"
        )

    def close(self) -> None:
        """Releases engine resources; backends holding GPU memory extend this."""
        self.closed = True
