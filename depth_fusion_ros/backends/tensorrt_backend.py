"""TensorRT 10 runtime backend for `.engine` files built by `python -m training.build_engine`.

Written against the TensorRT 10 name-based tensor API (TensorRT 8.x -> 10.x Python migration
guide): `Runtime.deserialize_cuda_engine`, `num_io_tensors` / `get_tensor_name` /
`get_tensor_mode` / `get_tensor_shape` / `get_tensor_dtype`, `create_execution_context`,
`set_tensor_address` and `execute_async_v3`. Device buffers and the CUDA stream come from torch
(imported lazily, like tensorrt itself), so no pycuda / cuda-python is needed.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from depth_fusion_ros.backends.base import Backend
from depth_fusion_ros.metadata import ModelMetadata, check_engine_compatible

INSTALL_HINT = (
    "the Python package 'tensorrt' (TensorRT 10) is not importable; install TensorRT 10 for this "
    "CUDA version, or use backend:=onnxruntime / backend:=torch with a .onnx / .pt2 model"
)


def import_tensorrt():
    """Imports tensorrt or raises ImportError saying what to install / use instead."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    if int(trt.__version__.split(".")[0]) < 10:
        raise ImportError(f"TensorRT {trt.__version__} found; this code needs TensorRT 10")
    return trt


def cuda_device_info(device: str) -> tuple[int, str, str]:
    """(index, GPU name, compute capability "major.minor") of a "cuda[:N]" device, via torch.

    The same function feeds `training.build_engine`'s sidecar, so the values compare exactly.
    """
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r}: no CUDA GPU is visible to torch; TensorRT needs one")
    index = torch.device(device).index or 0
    major, minor = torch.cuda.get_device_capability(index)
    return index, torch.cuda.get_device_name(index), f"{major}.{minor}"


def _torch_dtype(trt, dtype):
    """TensorRT I/O dtype -> torch dtype (only the ones an exported DMCF-SIDE engine uses)."""
    import torch

    table = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
    if dtype not in table:
        raise ValueError(f"engine I/O dtype {dtype} is not supported (expected FLOAT or HALF)")
    return table[dtype]


class TensorRTBackend(Backend):
    """Runs a serialised TensorRT engine on one GPU with static I/O buffers."""

    name = "tensorrt"

    def __init__(self, model_path: str | os.PathLike, metadata: ModelMetadata, device: str = "cuda"):
        trt = import_tensorrt()
        import torch

        if not device.startswith("cuda"):
            raise ValueError(f"parameter device={device!r}: the tensorrt backend needs 'cuda[:N]'")
        index, gpu_name, capability = cuda_device_info(device)
        # Check the sidecar first: deserialising a foreign engine fails with an opaque error.
        check_engine_compatible(metadata, trt.__version__, gpu_name, capability, model_path)
        super().__init__(metadata, f"cuda:{index}", metadata.precision)
        self._torch = torch
        self._torch_device = torch.device(self.device)
        torch.cuda.set_device(self._torch_device)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(Path(model_path).read_bytes())
        if self.engine is None:
            raise RuntimeError(
                f"TensorRT could not deserialise {model_path} (see the TensorRT log above); "
                f"rebuild it with python -m training.build_engine --out {model_path}"
            )
        self.context = self.engine.create_execution_context()
        self._stream = torch.cuda.Stream(device=self._torch_device)
        self._buffers = self._allocate(trt)

    def _allocate(self, trt) -> dict:
        """One static device buffer per I/O tensor, bound once with set_tensor_address."""
        torch = self._torch
        buffers = {}
        expected = {spec.name: spec for spec in self.metadata.inputs + self.metadata.outputs}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            if name not in expected or tuple(expected[name].shape) != shape:
                raise ValueError(
                    f"engine tensor {name!r} {shape} does not match its sidecar "
                    f"({sorted(expected)}); rebuild the engine from the current ONNX"
                )
            dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(name))
            buffer = torch.empty(shape, dtype=dtype, device=self._torch_device)
            self.context.set_tensor_address(name, buffer.data_ptr())
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            buffers[name] = (buffer, is_input)
        return buffers

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        with torch.cuda.stream(self._stream):
            for name, array in feeds.items():
                buffer, _ = self._buffers[name]
                buffer.copy_(torch.from_numpy(array), non_blocking=False)
            if not self.context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(f"TensorRT execute_async_v3 failed for {self.metadata.model_file}")
            outputs = {
                name: buffer.float().cpu()
                for name, (buffer, is_input) in self._buffers.items()
                if not is_input
            }
        self._stream.synchronize()
        return {name: tensor.numpy() for name, tensor in outputs.items()}

    def close(self) -> None:
        self._buffers = {}
        self.context = None
        self.engine = None
