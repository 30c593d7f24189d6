"""Inference backends behind one interface (docs/ARCHITECTURE.md): ONNX Runtime, TensorRT, torch.

`create_backend` validates the model's sidecar (metadata.load_metadata) before any engine is
loaded, so a missing, tampered or foreign file fails fast with a message saying how to rebuild it.
An ONNX model with backend="tensorrt" goes through the per-machine engine cache
(`engine_cache.cached_engine`): built on the first start, loaded afterwards.
Each backend module imports its heavy dependency lazily; importing this package stays cheap.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Callable

from depth_fusion_ros.backends.base import Backend
from depth_fusion_ros.metadata import PRECISIONS, format_for_path, load_metadata

LOG = logging.getLogger(__name__)

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
_FORMAT_BACKEND = {"onnx": "onnxruntime", "engine": "tensorrt", "pt2": "torch"}

__all__ = ["BACKENDS", "Backend", "backend_details", "create_backend"]


def create_backend(
    model_path: str | os.PathLike,
    backend: str = "auto",
    device: str = "cuda",
    num_threads: int | None = None,
    *,
    allow_spinning: bool = False,
    ort_trt_cache_dir: str | os.PathLike | None = None,
    precision: str | None = None,
    engine_cache_dir: str | os.PathLike | None = None,
    workspace_gb: float = 4.0,
    calib_data: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> Backend:
    """Loads a model file with its validated sidecar into a ready-to-run backend.

    Args:
        model_path: `.onnx`, `.engine`/`.plan` or `.pt2` file with its `<file>.json` sidecar.
        backend: "auto" (by extension), "onnxruntime", "tensorrt" or "torch". "tensorrt" also
            takes an `.onnx` model: its engine comes from the engine cache (built on a miss).
        device: "cpu", "cuda" or "cuda:N" (ONNX Runtime falls back to CPU with a warning, and
            the backend's `device` then says "cpu").
        num_threads: ONNX Runtime intra-op threads (default: the usable cores, <= 8).
        allow_spinning: ONNX Runtime pool threads busy-wait between ops (default off, so they
            do not hold the cores the ROS executor needs).
        ort_trt_cache_dir: engine/timing cache of ONNX Runtime's TensorRT execution provider
            (default $ROS_HOME/depth_fusion/ort_trt_cache or ~/.ros/depth_fusion/ort_trt_cache).
        precision: precision of engines built here: the tensorrt engine of an `.onnx` (default
            fp16), and ONNX Runtime's TensorRT provider (fp16 unless "fp32"; it has no int8
            calibration). A `.engine` or `.pt2` runs the precision its sidecar records.
        engine_cache_dir: the TensorRT engine cache (default `default_engine_cache_dir()`:
            $ROS_HOME/depth_fusion/engines or ~/.ros/depth_fusion/engines).
        workspace_gb, calib_data: builder workspace and int8 calibration frames (MS2 root) of an
            engine built from an `.onnx`; both are part of the cache key.
        log: progress lines of an engine build or cache wait (default: this module's logger).
    Returns:
        the backend; its `engine_cache` attribute is the `engine_cache.CacheOutcome` of an engine
        obtained from the cache, else None.
    Raises:
        ValueError: unknown backend or precision, unknown extension, a backend that cannot read
            the file, an unwritable engine cache folder.
        ModelMetadataError: missing/malformed/tampered/foreign model or sidecar.
        ImportError / RuntimeError / EngineBuildError: see `engine_cache.cached_engine`.
    """
    if backend not in BACKENDS:
        raise ValueError(f"parameter backend={backend!r}: expected one of {', '.join(BACKENDS)}")
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"parameter precision={precision!r}: expected one of "
                         f"{', '.join(PRECISIONS)}")
    fmt = format_for_path(model_path)  # ValueError naming the file for an unknown extension
    chosen = _FORMAT_BACKEND[fmt] if backend == "auto" else backend
    if chosen != _FORMAT_BACKEND[fmt] and not (chosen == "tensorrt" and fmt == "onnx"):
        raise ValueError(
            f"parameter backend={backend!r} cannot run {model_path} (a {fmt} file needs "
            f"backend={_FORMAT_BACKEND[fmt]!r} or 'auto')"
        )
    metadata = load_metadata(model_path)
    log = log or (lambda message: LOG.info("%s", message))
    outcome = None
    if chosen == "onnxruntime":
        from depth_fusion_ros.backends.onnxruntime_backend import OnnxRuntimeBackend

        if precision == "int8":
            log("precision int8 applies to engines built with backend tensorrt; ONNX Runtime's "
                "TensorRT provider (if present) builds fp16")
        made = OnnxRuntimeBackend(model_path, metadata, device, num_threads,
                                  allow_spinning=allow_spinning,
                                  trt_cache_dir=ort_trt_cache_dir,
                                  trt_fp16=precision != "fp32")
    elif chosen == "tensorrt":
        from depth_fusion_ros.backends.tensorrt_backend import TensorRTBackend

        if device == "cpu":
            raise ValueError(f"parameter device={device!r}: the tensorrt backend needs "
                             "'cuda[:N]'")
        if fmt == "onnx":
            outcome, made = _cached_tensorrt(model_path, metadata, device, precision or "fp16",
                                             engine_cache_dir, workspace_gb, calib_data, log)
        else:
            made = TensorRTBackend(model_path, metadata, device)
    else:
        from depth_fusion_ros.backends.torch_backend import TorchBackend

        made = TorchBackend(model_path, metadata, device)
    made.engine_cache = outcome
    return made


def _cached_tensorrt(onnx_path, metadata, device, precision, cache_dir, workspace_gb,
                     calib_data, log):
    """(cache outcome, TensorRTBackend) of an ONNX model's engine from the engine cache. An entry
    found complete in the cache whose engine TensorRT cannot load (`EngineLoadError`: not
    deserialisable for a reason other than GPU memory, or I/O unlike its sidecar) is discarded
    and built again, once; other failures (out of GPU memory, CUDA errors) are raised as they
    are and leave the entry alone."""
    from depth_fusion_ros.backends.engine_cache import cached_engine, discard_entry
    from depth_fusion_ros.backends.tensorrt_backend import EngineLoadError, TensorRTBackend

    def load(outcome):
        if outcome.status == "hit":
            hint = (f"it is an engine-cache entry: delete {outcome.entry.engine} and its .json "
                    "to build it again")
        else:  # built here or by another process a moment ago: rebuilding will not help
            hint = ("it was just built on this machine: check the TensorRT installation and "
                    "its log")
        return TensorRTBackend(outcome.entry.engine, outcome.metadata, device, rebuild_hint=hint)

    def lookup():
        return cached_engine(onnx_path, metadata, device=device, precision=precision,
                             cache_dir=cache_dir, workspace_gb=workspace_gb,
                             calib_data=calib_data, log=log)

    outcome = lookup()
    try:
        return outcome, load(outcome)
    except EngineLoadError as exc:
        if outcome.status != "hit":  # just built (here or by the process we waited for)
            raise
        log(f"cached engine {outcome.entry.engine} does not load ({exc}); building it again")
        discard_entry(outcome.entry, outcome.metadata.model_sha256, log)
    outcome = lookup()
    return outcome, load(outcome)


def backend_details(backend: Backend) -> dict[str, str]:
    """Diagnostics key/values of how the backend runs, beyond name, device and precision:
    the engine cache outcome and engine file of a cached TensorRT engine, ONNX Runtime's
    intra-op threads and spinning as its session really has them."""
    details: dict[str, str] = {}
    outcome = getattr(backend, "engine_cache", None)
    if outcome is not None:
        details["engine_cache"] = outcome.status
        details["engine_file"] = str(outcome.entry.engine)
    session = getattr(backend, "session", None)
    if backend.name == "onnxruntime" and session is not None:
        options = session.get_session_options()
        spinning = options.get_session_config_entry("session.intra_op.allow_spinning")
        details["ort_threads"] = str(options.intra_op_num_threads)
        details["ort_allow_spinning"] = str(spinning == "1").lower()
    return details
