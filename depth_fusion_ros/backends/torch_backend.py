"""torch backend for `.pt2` files from `python -m training.export --format pt2 [--aoti]`.

For machines with CUDA but no TensorRT. torch is imported lazily here and nowhere else in the
runtime package. Two kinds of `.pt2`:

- an ExportedProgram (`torch.export`): a graph plus weights that needs no training code. Export
  bakes the export device into the graph (`arange(device=cpu)`, device asserts), so moving the
  weights with `.module().to(dev)` is not enough: `load_exported_program` rewrites the graph with
  `torch.export.passes.move_to_device_pass` first.
- an AOTInductor package (sidecar `extra.packaging == "aoti"`): compiled CUDA kernels, fp32,
  loaded on the requested GPU with `device_index`; it cannot run on the CPU.
"""
from __future__ import annotations

import contextlib
import logging
import os

import numpy as np

from depth_fusion_ros.backends.base import Backend, HostStaging, cuda_index
from depth_fusion_ros.metadata import ModelMetadata

LOG = logging.getLogger(__name__)


def load_exported_program(model_path: str | os.PathLike, device):
    """Loads a `torch.export` `.pt2` as a module whose graph and weights live on `device`.

    Args:
        device: a torch.device or string ("cpu", "cuda:1", "meta", ...).
    Returns:
        the program's `nn.Module` (positional sidecar inputs -> tuple of depth outputs).
    """
    import torch
    from torch.export.passes import move_to_device_pass

    program = torch.export.load(str(model_path))
    return move_to_device_pass(program, torch.device(device)).module()


class TorchBackend(Backend):
    """Runs a `.pt2` on CPU or CUDA; fp16 autocast on CUDA when the sidecar says fp16."""

    name = "torch"

    def __init__(self, model_path: str | os.PathLike, metadata: ModelMetadata, device: str = "cpu"):
        import torch

        if device != "cpu":
            index = cuda_index(device)  # ValueError naming the parameter unless cpu / cuda[:N]
            if not torch.cuda.is_available():
                raise RuntimeError(
                    f"parameter device={device!r}: torch sees no CUDA GPU; use device:=cpu")
            if index >= torch.cuda.device_count():
                raise ValueError(f"parameter device={device!r}: torch sees only "
                                 f"{torch.cuda.device_count()} GPU(s)")
        aoti = metadata.extra.get("packaging") == "aoti"
        if aoti and device == "cpu":
            raise ValueError(
                f"model {model_path} is an AOTInductor package compiled for CUDA "
                f"({metadata.extra.get('gpu_name', 'a GPU')}); run it with device:=cuda[:N], or "
                "export a plain .pt2 (training.export --format pt2 without --aoti) for the CPU")
        self._torch = torch
        self._torch_device = torch.device(device)
        if self._torch_device.type == "cuda" and self._torch_device.index is None:
            self._torch_device = torch.device("cuda", torch.cuda.current_device())
        precision = metadata.precision
        if precision == "fp16" and self._torch_device.type == "cpu":
            precision = "fp32"  # CPU half kernels are slow or missing; run the fp32 weights
        if aoti and precision != "fp32":
            LOG.warning("model %s: AOTInductor packages run the fp32 kernels they were compiled "
                        "with, not %s as the sidecar says", model_path, precision)
            precision = "fp32"
        super().__init__(metadata, str(self._torch_device), precision)
        if aoti:
            self.module = torch._inductor.aoti_load_package(
                str(model_path), device_index=self._torch_device.index)
        else:
            self.module = load_exported_program(model_path, self._torch_device)
        self._output_names = [spec.name for spec in metadata.outputs]
        cuda = self._torch_device.type == "cuda"
        self._stream = torch.cuda.Stream(device=self._torch_device) if cuda else None
        self._staging = HostStaging(torch, pin=cuda)

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Inputs staged in (pinned on CUDA) host tensors, copied without blocking on the
        backend's stream, outputs copied back the same way, one synchronisation per frame."""
        torch = self._torch
        with self._on_stream():
            # The exported forward takes the sidecar's inputs positionally, in sidecar order.
            args = [self._staging.stage(spec.name, feeds[spec.name], torch.float32)
                    .to(self._torch_device, non_blocking=True) for spec in self.metadata.inputs]
            use_fp16 = self.precision == "fp16"
            with torch.inference_mode(), torch.autocast(
                self._torch_device.type, dtype=torch.float16, enabled=use_fp16
            ):
                outputs = self.module(*args)
            if isinstance(outputs, dict):
                values = [outputs[name] for name in self._output_names]
            else:
                values = list(outputs) if isinstance(outputs, tuple | list) else [outputs]
            host = {}
            for name, value in zip(self._output_names, values, strict=True):
                value = value.float()  # on the device: the copy back moves float32
                host[name] = self._staging.get(name, value.shape, torch.float32)
                host[name].copy_(value, non_blocking=True)
        if self._stream is not None:
            self._stream.synchronize()
        return {name: np.array(tensor.numpy()) for name, tensor in host.items()}  # copies

    @contextlib.contextmanager
    def _on_stream(self):
        """The backend's CUDA stream (and device) as current; nothing on the CPU."""
        if self._stream is None:
            yield
            return
        with self._torch.cuda.device(self._torch_device), self._torch.cuda.stream(self._stream):
            yield
