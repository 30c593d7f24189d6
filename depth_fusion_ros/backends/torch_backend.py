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

import logging
import os

import numpy as np

from depth_fusion_ros.backends.base import Backend, cuda_index
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

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        # The exported forward takes the sidecar's inputs positionally, in sidecar order.
        args = [
            torch.from_numpy(feeds[spec.name]).to(self._torch_device)
            for spec in self.metadata.inputs
        ]
        use_fp16 = self.precision == "fp16"
        with torch.inference_mode(), torch.autocast(
            self._torch_device.type, dtype=torch.float16, enabled=use_fp16
        ):
            outputs = self.module(*args)
        if isinstance(outputs, dict):
            values = [outputs[name] for name in self._output_names]
        else:
            values = list(outputs) if isinstance(outputs, tuple | list) else [outputs]
        return {
            name: value.float().cpu().numpy()
            for name, value in zip(self._output_names, values, strict=True)
        }
