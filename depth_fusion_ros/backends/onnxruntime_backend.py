"""ONNX Runtime backend: CPU everywhere, CUDA / TensorRT execution providers where installed.

Threads: `num_threads` intra-op threads (default `default_num_threads()`: the usable cores, at
most 8) with spinning off (`session.intra_op.allow_spinning` = "0"): idle pool threads sleep, so
the ROS executor and the preprocessing get the cores between ops. ONNX Runtime's own defaults
ignore CPU affinity and keep pool threads busy-waiting between ops.

Device: the reported device is the one the session really runs on, from `session.get_providers()`.
A CUDA / TensorRT provider whose libraries fail to load is only a warning inside ONNX Runtime, and
its Python fallback retries *without* provider options (so on GPU 0); that fallback is disabled and
this module retries itself, keeping `device_id`, and logs every step down.

TensorRT execution provider: engine and timing caches in `trt_cache_dir` (default
`default_ort_trt_cache_dir()`: $ROS_HOME/depth_fusion/ort_trt_cache, else
~/.ros/depth_fusion/ort_trt_cache) and fp16 unless `trt_fp16=False`, so only the first start pays
the engine build (minutes for Swin models). For a checked, per-machine engine use the tensorrt
backend with a `.engine` built by `python -m training.build_engine`.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from depth_fusion_ros.backends.base import Backend, cuda_index
from depth_fusion_ros.metadata import ModelMetadata

LOG = logging.getLogger(__name__)

TRT_EP = "TensorrtExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"


def default_num_threads() -> int:
    """Intra-op threads: the cores this process may use, at most 8 (a batch-1 network gains
    little beyond that). With spinning off this beat leaving a core to the executor on the 2-core
    test machine: the demo model at 30 Hz processed 100 % of the pairs with 2 threads, 82-86 %
    with 1 (its 37 ms single-thread inference is longer than the frame period)."""
    try:
        usable = len(os.sched_getaffinity(0))  # ORT's own default ignores CPU affinity
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    return max(1, min(usable, 8))


def default_ort_trt_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """$ROS_HOME/depth_fusion/ort_trt_cache, else ~/.ros/depth_fusion/ort_trt_cache (ROS's home)."""
    env = os.environ if env is None else env
    ros_home = env.get("ROS_HOME")
    home = Path(env.get("HOME") or Path.home())
    base = Path(ros_home).expanduser() if ros_home else home / ".ros"
    return base / "depth_fusion" / "ort_trt_cache"


def tensorrt_provider_options(index: int, cache_dir: Path, fp16: bool) -> dict:
    """TensorRT EP options: GPU, fp16, persistent engine and timing caches (ORT option names)."""
    return {
        "device_id": index,
        "trt_fp16_enable": fp16,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
    }


def provider_attempts(device: str, available: list[str], trt_cache_dir: Path,
                      trt_fp16: bool = True) -> list[list]:
    """Provider lists to try in order, each ending with the CPU provider.

    "cpu" -> [[CPU]]. "cuda[:N]" -> TensorRT + CUDA + CPU (those installed), then CUDA + CPU, then
    CPU alone: each later list is the fallback if creating a session with the previous one fails.
    Every GPU provider carries `device_id` N. Raises ValueError naming a bad `device`.
    """
    if device == "cpu":
        return [[CPU_EP]]
    index = cuda_index(device)
    cuda = (CUDA_EP, {"device_id": index})
    attempts = []
    if TRT_EP in available:
        trt = (TRT_EP, tensorrt_provider_options(index, trt_cache_dir, trt_fp16))
        attempts.append([trt, cuda, CPU_EP] if CUDA_EP in available else [trt, CPU_EP])
    if CUDA_EP in available:
        attempts.append([cuda, CPU_EP])
    return attempts + [[CPU_EP]]


def _names(providers: list) -> list[str]:
    return [p[0] if isinstance(p, tuple) else p for p in providers]


def device_from_providers(requested: list[str], actual: list[str],
                          index: int | None) -> tuple[str, str | None]:
    """The device a session runs on, from the providers it really has, and a warning if any
    requested provider is missing (None when it got all of them).

    Args:
        requested: provider names asked for; actual: `session.get_providers()`;
        index: the GPU index asked for (None for "cpu").
    """
    on_gpu = index is not None and (TRT_EP in actual or CUDA_EP in actual)
    device = f"cuda:{index}" if on_gpu else "cpu"
    missing = [name for name in requested if name not in actual]
    if not missing:
        return device, None
    return device, (
        f"ONNX Runtime did not enable {', '.join(missing)} (session providers: "
        f"{', '.join(actual)}); running on {device}. Check the CUDA / cuDNN / TensorRT libraries "
        "that onnxruntime-gpu needs (its log above names the one that failed to load)"
    )


class OnnxRuntimeBackend(Backend):
    """Runs a `.onnx` model with ONNX Runtime; input/output names come from the sidecar.

    Args:
        model_path, metadata: the model and its validated sidecar.
        device: "cpu", "cuda" or "cuda:N"; without a usable GPU provider it runs on the CPU
            and says so (warning, `device` = "cpu").
        num_threads: intra-op threads (None: `default_num_threads()`).
        allow_spinning: let idle intra-op threads busy-wait (lower latency, but they hold their
            cores; off by default so the ROS executor is not starved).
        trt_cache_dir: TensorRT EP engine/timing cache folder (None: `default_ort_trt_cache_dir()`).
        trt_fp16: let the TensorRT EP build fp16 engines.
    """

    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | os.PathLike,
        metadata: ModelMetadata,
        device: str = "cpu",
        num_threads: int | None = None,
        *,
        allow_spinning: bool = False,
        trt_cache_dir: str | os.PathLike | None = None,
        trt_fp16: bool = True,
    ) -> None:
        import onnxruntime as ort  # heavy import; only when this backend is chosen

        if num_threads is not None and num_threads < 1:
            raise ValueError(f"parameter num_threads={num_threads}: expected >= 1 (or unset)")
        cache_dir = Path(trt_cache_dir) if trt_cache_dir else default_ort_trt_cache_dir()
        available = ort.get_available_providers()
        attempts = provider_attempts(device, available, cache_dir, trt_fp16)
        if device != "cpu" and len(attempts) == 1:
            LOG.warning(
                "device=%s requested but this onnxruntime has no CUDA/TensorRT execution provider "
                "(available: %s); falling back to CPU. Install onnxruntime-gpu for GPU inference.",
                device, ", ".join(available))
        if TRT_EP in _names(attempts[0]):
            cache_dir.mkdir(parents=True, exist_ok=True)
        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or default_num_threads()
        options.inter_op_num_threads = 1  # the graph is a single chain; parallel ops gain nothing
        spin = "1" if allow_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = self._create_session(ort, model_path, options, attempts)
        index = None if device == "cpu" else cuda_index(device)
        used_device, warning = device_from_providers(
            _names(attempts[0]), self.session.get_providers(), index)
        if warning and device != "cpu" and len(attempts) > 1:
            LOG.warning("model %s: %s", model_path, warning)
        on_trt = TRT_EP in self.session.get_providers()
        precision = "fp16" if on_trt and trt_fp16 else metadata.precision
        super().__init__(metadata, used_device, precision)
        self._check_names(Path(model_path))
        self._output_names = [spec.name for spec in metadata.outputs]

    @staticmethod
    def _create_session(ort, model_path, options, attempts: list[list]):
        """First provider list that creates a session; ORT's option-dropping fallback is off."""
        for i, providers in enumerate(attempts):
            try:
                return ort.InferenceSession(str(model_path), options, providers=providers,
                                            enable_fallback=0)
            except (RuntimeError, ValueError) as exc:
                if i == len(attempts) - 1:
                    raise
                LOG.warning("model %s: ONNX Runtime could not create a session with %s (%s); "
                            "retrying with %s", model_path, ", ".join(_names(providers)),
                            str(exc).splitlines()[0][:300], ", ".join(_names(attempts[i + 1])))
        raise AssertionError("unreachable: attempts always ends with the CPU provider")

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
