"""torch backend for `.pt2` ExportedPrograms (`python -m training.export --format pt2`).

For machines with CUDA but no TensorRT. torch is imported lazily here and nowhere else in the
runtime package. The program is loaded with `torch.export.load(path).module()`: a plain
`nn.Module` that needs no training code.
"""
from __future__ import annotations

import os

import numpy as np

from depth_fusion_ros.backends.base import Backend
from depth_fusion_ros.metadata import ModelMetadata


class TorchBackend(Backend):
    """Runs an ExportedProgram on CPU or CUDA; fp16 autocast when the sidecar says fp16."""

    name = "torch"

    def __init__(self, model_path: str | os.PathLike, metadata: ModelMetadata, device: str = "cpu"):
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError(
                f"parameter device={device!r}: torch sees no CUDA GPU; use device:=cpu"
            )
        if device != "cpu" and not device.startswith("cuda"):
            raise ValueError(f"parameter device={device!r}: expected 'cpu', 'cuda' or 'cuda:N'")
        self._torch = torch
        self._torch_device = torch.device(device)
        if self._torch_device.type == "cuda" and self._torch_device.index is None:
            self._torch_device = torch.device("cuda", torch.cuda.current_device())
        precision = metadata.precision
        if precision == "fp16" and self._torch_device.type == "cpu":
            precision = "fp32"  # CPU half kernels are slow or missing; run the fp32 weights
        super().__init__(metadata, str(self._torch_device), precision)
        if metadata.extra.get("packaging") == "aoti":
            # AOTInductor package (training.export --aoti): compiled for one GPU, no graph to move.
            self.module = torch._inductor.aoti_load_package(str(model_path))
        else:
            program = torch.export.load(str(model_path))
            self.module = program.module().to(self._torch_device)
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
