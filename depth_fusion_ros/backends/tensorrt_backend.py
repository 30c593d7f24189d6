"""TensorRT 10 runtime backend for `.engine` / `.plan` files built by `backends.tensorrt_build`
(`python -m training.build_engine`).

Written against the TensorRT 10 name-based tensor API (TensorRT 8.x -> 10.x Python migration
guide): `Runtime.deserialize_cuda_engine`, `num_io_tensors` / `get_tensor_name` /
`get_tensor_mode` / `get_tensor_shape` / `get_tensor_dtype`, `create_execution_context`,
`set_tensor_address` and `execute_async_v3`. Device buffers and the CUDA stream come from torch
(imported lazily, like tensorrt itself), so no pycuda / cuda-python is needed. Only TensorRT 10.x
is accepted: 11.x removed the weakly-typed builder API this project builds with.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from depth_fusion_ros.backends.base import Backend, HostStaging, cuda_index
from depth_fusion_ros.metadata import ModelMetadata, check_engine_compatible, rebuild_command

LOG = logging.getLogger(__name__)

INSTALL_HINT = (
    "the Python package 'tensorrt' (TensorRT 10) is not importable; install TensorRT 10 for this "
    "CUDA version (pip install 'tensorrt>=10,<11', or JetPack 6's). Without TensorRT, a .onnx "
    "model runs on ONNX Runtime and a .pt2 on the torch backend (node parameter backend)"
)
SUPPORTED_MAJOR = 10
# Lower-cased fragments of TensorRT / CUDA errors that mean the GPU ran out of memory.
OOM_HINTS = ("out of memory", "outofmemory", "cudaerrormemoryallocation", "insufficient",
             "could not be allocated", "failed to allocate")


class EngineLoadError(RuntimeError):
    """The engine file is unusable here: TensorRT could not deserialise it (for a reason other
    than a lack of GPU memory), or its I/O tensors do not match its sidecar. Rebuilding it can
    help; retrying the same file cannot."""


def check_tensorrt_version(version: str) -> None:
    """Accepts TensorRT 10.x only; raises ImportError saying what to install otherwise.

    9.x and older lack the name-based tensor API; 11.x removed `BuilderFlag.FP16/INT8` and
    `int8_calibrator`, which the builder uses.
    """
    major = version.split(".")[0]
    if not major.isdigit() or int(major) != SUPPORTED_MAJOR:
        raise ImportError(
            f"TensorRT {version} found; this code is written for the TensorRT 10 Python API "
            "(11.x removed BuilderFlag.FP16/INT8 and int8_calibrator, 8.x lacks the name-based "
            "tensor API): install TensorRT 10.x (pip install 'tensorrt>=10,<11')")


def import_tensorrt():
    """Imports tensorrt 10.x or raises ImportError saying what to install / use instead."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    check_tensorrt_version(trt.__version__)
    return trt


class _TensorRTLog:
    """One process-wide TensorRT logger (TensorRT keeps the first one it is given): warnings
    and errors go to Python logging, errors are also kept so a failed build can name its cause."""

    _instance = None

    @classmethod
    def get(cls, trt):
        if cls._instance is None:
            class Logger(trt.ILogger):
                def __init__(self) -> None:
                    trt.ILogger.__init__(self)  # required by the pybind base class
                    self.errors: list[str] = []

                def log(self, severity, msg) -> None:
                    level = int(severity)  # INTERNAL_ERROR 0, ERROR 1, WARNING 2, INFO 3, ...
                    if level <= int(trt.ILogger.Severity.ERROR):
                        self.errors.append(msg)
                        LOG.error("TensorRT: %s", msg)
                    elif level == int(trt.ILogger.Severity.WARNING):
                        LOG.warning("TensorRT: %s", msg)

                def take_errors(self) -> list[str]:
                    errors, self.errors = self.errors, []
                    return errors

            cls._instance = Logger()
        return cls._instance


def tensorrt_logger(trt):
    """The shared TensorRT logger (`.take_errors()` returns and clears the errors logged)."""
    return _TensorRTLog.get(trt)


def select_cuda_device(device: str) -> tuple[int, str, str]:
    """Makes "cuda[:N]" the current CUDA device of this thread and describes it.

    TensorRT builds and deserialises on the *current* device, so this comes before any builder
    or runtime call. Returns (index, GPU name, compute capability "major.minor"); the same values
    feed the engine sidecar and the compatibility check, so they compare exactly.
    Raises:
        ValueError for a bad device string or index, RuntimeError without a visible GPU.
    """
    import torch

    index = cuda_index(device)
    if not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r}: no CUDA GPU is visible to torch; TensorRT "
                           "needs one")
    if index >= torch.cuda.device_count():
        raise ValueError(f"parameter device={device!r}: only {torch.cuda.device_count()} GPU(s) "
                         "are visible")
    torch.cuda.set_device(index)  # cudaSetDevice for this thread
    major, minor = torch.cuda.get_device_capability(index)
    return index, torch.cuda.get_device_name(index), f"{major}.{minor}"


def check_engine_io(engine_io: dict[str, tuple[bool, tuple[int, ...]]], md: ModelMetadata,
                    engine_label: str, rebuild_hint: str | None = None) -> None:
    """Both directions: every sidecar input/output is an engine input/output of the same shape,
    and every engine I/O tensor is in the sidecar.

    Args:
        engine_io: {tensor name: (is_input, shape)} of the engine.
        engine_label: the file named in the message.
        rebuild_hint: what to do about it (default: the command that rebuilds the engine).
    Raises:
        ValueError listing every mismatch and the rebuild hint.
    """
    problems = []
    for kind, specs, want_input in (("input", md.inputs, True), ("output", md.outputs, False)):
        for spec in specs:
            if spec.name not in engine_io:
                problems.append(f"sidecar {kind} {spec.name!r} is not an engine tensor")
                continue
            is_input, shape = engine_io[spec.name]
            if is_input != want_input:
                problems.append(f"sidecar {kind} {spec.name!r} is an engine "
                                f"{'input' if is_input else 'output'}")
            if tuple(shape) != tuple(spec.shape):
                problems.append(f"{kind} {spec.name!r} has shape {tuple(shape)} in the engine but "
                                f"{tuple(spec.shape)} in the sidecar")
    known = {spec.name for spec in md.inputs + md.outputs}
    for name in sorted(set(engine_io) - known):
        problems.append(f"engine tensor {name!r} is not in the sidecar")
    if problems:
        hint = rebuild_hint or f"rebuild it from the current ONNX with: {rebuild_command(engine_label)}"
        raise ValueError(f"engine {engine_label} does not match its sidecar: {'; '.join(problems)};"
                         f" {hint}")


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

    def __init__(self, model_path: str | os.PathLike, metadata: ModelMetadata,
                 device: str = "cuda", rebuild_hint: str | None = None) -> None:
        """rebuild_hint: what the error messages tell the user to do about a bad engine
        (default: the `training.build_engine` command; an engine-cache entry says to delete it).
        """
        trt = import_tensorrt()
        if device == "cpu":
            raise ValueError(f"parameter device={device!r}: the tensorrt backend needs 'cuda[:N]'")
        index, gpu_name, capability = select_cuda_device(device)
        # Check the sidecar first: deserialising a foreign engine fails with an opaque error.
        check_engine_compatible(metadata, trt.__version__, gpu_name, capability, model_path)
        self._load(trt, Path(model_path).read_bytes(), metadata, index, str(model_path),
                   rebuild_hint)

    @classmethod
    def from_serialized(cls, serialized, metadata: ModelMetadata, device: str) -> TensorRTBackend:
        """A backend for an engine just built in memory on this GPU (the builder's accuracy
        check); `metadata` is the sidecar it will get. No compatibility check: it is not foreign.
        """
        trt = import_tensorrt()
        index, _, _ = select_cuda_device(device)
        backend = cls.__new__(cls)
        backend._load(trt, serialized, metadata, index, metadata.model_file)
        return backend

    def _load(self, trt, serialized, metadata: ModelMetadata, index: int, label: str,
              rebuild_hint: str | None = None) -> None:
        import torch

        hint = rebuild_hint or f"rebuild it with: {rebuild_command(label)}"
        super().__init__(metadata, f"cuda:{index}", metadata.precision)
        self._torch = torch
        self._torch_device = torch.device("cuda", index)
        logger = tensorrt_logger(trt)
        self._runtime = trt.Runtime(logger)
        logger.take_errors()
        self.engine = self._runtime.deserialize_cuda_engine(serialized)
        if self.engine is None:
            errors = logger.take_errors()
            said = f" TensorRT said: {' | '.join(errors[-3:])}" if errors else ""
            if any(h in " ".join(errors).lower() for h in OOM_HINTS):
                raise RuntimeError(f"not enough GPU memory to load {label}: close other GPU "
                                   f"processes or use a smaller model.{said}")
            raise EngineLoadError(f"TensorRT could not deserialise {label}; {hint}.{said}")
        engine_io = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            engine_io[name] = (is_input, tuple(self.engine.get_tensor_shape(name)))
        try:
            check_engine_io(engine_io, metadata, label, hint)
        except ValueError as err:
            raise EngineLoadError(str(err)) from err
        self.context = self.engine.create_execution_context()
        self._stream = torch.cuda.Stream(device=self._torch_device)
        self._buffers = self._allocate(trt, engine_io)
        self._staging = HostStaging(torch, pin=True)

    def _allocate(self, trt, engine_io: dict) -> dict:
        """One static device buffer per I/O tensor, bound once with set_tensor_address."""
        torch = self._torch
        buffers = {}
        for name, (is_input, shape) in engine_io.items():
            dtype = _torch_dtype(trt, self.engine.get_tensor_dtype(name))
            buffer = torch.empty(shape, dtype=dtype, device=self._torch_device)
            if not self.context.set_tensor_address(name, buffer.data_ptr()):
                raise RuntimeError(f"TensorRT refused the device buffer of tensor {name!r} of "
                                   f"{self.metadata.model_file} (set_tensor_address)")
            buffers[name] = (buffer, is_input)
        return buffers

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Pinned host staging in the engine's I/O dtypes, asynchronous copies and the engine on
        the backend's stream, one synchronisation per frame."""
        torch = self._torch
        host = {}
        with torch.cuda.device(self._torch_device), torch.cuda.stream(self._stream):
            for name, array in feeds.items():
                buffer, _ = self._buffers[name]
                buffer.copy_(self._staging.stage(name, array, buffer.dtype), non_blocking=True)
            if not self.context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError(
                    f"TensorRT execute_async_v3 failed for {self.metadata.model_file}")
            for name, (buffer, is_input) in self._buffers.items():
                if not is_input:
                    host[name] = self._staging.get(name, buffer.shape, buffer.dtype)
                    host[name].copy_(buffer, non_blocking=True)
        self._stream.synchronize()
        # Copies (float16 outputs cast): the staging tensors are reused by the next frame.
        return {name: np.array(tensor.numpy(), dtype=np.float32) for name, tensor in host.items()}

    def close(self) -> None:
        self._buffers = {}
        self.context = None
        self.engine = None
        super().close()
