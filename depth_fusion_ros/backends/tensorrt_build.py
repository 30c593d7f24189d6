"""The TensorRT 10 engine builder, shared by `python -m training.build_engine` and (later) the
node's build-on-first-start. tensorrt and torch are imported only when a build runs.

`build_engine(onnx, engine, precision=..., device=...)`:
1. validates the request (ONNX sidecar, `.engine`/`.plan` name, precision, int8 data) and makes
   `device` the current CUDA device *before* any TensorRT call (TensorRT builds on the current
   device; the int8 calibrator's buffers live there too);
2. parses the ONNX with `OnnxParser.parse_from_file` (resolves external weight files), sets the
   workspace pool, precision flags (fp32: TF32 off; fp16/int8: LayerNorm and Softmax layers pinned
   to fp32 under OBEY_PRECISION_CONSTRAINTS), the int8 entropy calibrator and the timing cache
   (`ignore_mismatch=True` as in NVIDIA's samples, and logged whether it was used);
3. runs the new engine against ONNX Runtime fp32 on `accuracy.sample_inputs` (and on real MS2
   frames when `calib_data` is given, never the int8 calibration frames) and refuses it above
   `accuracy.ACCURACY_LIMITS` (depth) or `accuracy.CONFIDENCE_LIMITS` (confidence outputs);
   ONNX Runtime and a writable output folder are checked before the build, not after it;
4. writes the engine, then its sidecar (with the accuracy figures), then the timing cache, each
   atomically: a failure while saving the cache never loses a build of minutes.
Every failure is an `EngineBuildError` whose message names the cause.
"""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import importlib.util
import logging
import os
from collections.abc import Callable
from pathlib import Path

from depth_fusion_ros.backends.accuracy import AccuracyReport, compare_outputs, sample_inputs
from depth_fusion_ros.backends.tensorrt_backend import OOM_HINTS
from depth_fusion_ros.fileio import atomic_write_bytes
from depth_fusion_ros.metadata import (
    PRECISIONS,
    ModelMetadata,
    format_for_path,
    load_metadata,
    sidecar_path,
    write_metadata,
)

LOG = logging.getLogger(__name__)

FP32_LAYER_TYPES = ("NORMALIZATION", "SOFTMAX")  # trt.LayerType names kept fp32 in fp16/int8


class EngineBuildError(RuntimeError):
    """The engine could not be built, checked or written; the message names the cause."""


class EngineAccuracyError(EngineBuildError):
    """The engine was built but differs from ONNX Runtime fp32 beyond the precision's limits."""

    def __init__(self, message: str, report: AccuracyReport) -> None:
        super().__init__(message)
        self.report = report


def explain_build_failure(onnx_path: str | os.PathLike, errors: list[str],
                          workspace_gb: float | None,
                          workspace_option: str = "--workspace-gb") -> str:
    """A message naming the likely cause of a failed build from TensorRT's error lines.
    workspace_option: how the user sets the workspace (the node: its parameter)."""
    text = " ".join(errors).lower()
    if any(hint in text for hint in OOM_HINTS):
        cause = (f"the GPU ran out of memory: close other GPU processes, or lower "
                 f"{workspace_option}" + (f" (now {workspace_gb:g})" if workspace_gb else ""))
    elif "calibrat" in text:
        cause = ("int8 calibration failed: check the calibration frames, delete the calibration "
                 "cache, or build fp16")
    elif "could not find any implementation" in text or "unsupported" in text:
        precision_option = ("parameter precision" if workspace_option.startswith("parameter")
                            else "--precision")
        cause = ("a layer has no TensorRT implementation for this precision, GPU or workspace: "
                 f"raise {workspace_option}, try {precision_option} fp32, or a newer TensorRT "
                 "10.x")
    else:
        cause = "see TensorRT's errors"
    said = f" TensorRT said: {' | '.join(errors[-5:])}" if errors else (
        " TensorRT logged no error; rerun with a verbose TensorRT log")
    return f"TensorRT failed to build an engine from {onnx_path}: {cause}.{said}"


def fp32_layer_indices(type_names: list[str]) -> list[int]:
    """Indices of the layers to keep in fp32 in a reduced-precision build (LayerNorm, Softmax:
    their reductions overflow or lose the attention weights in fp16)."""
    return [i for i, name in enumerate(type_names) if name in FP32_LAYER_TYPES]


def engine_metadata(source: ModelMetadata, engine_path: Path, engine_sha256: str, *,
                    precision: str, trt_version: str, gpu_name: str, compute_capability: str,
                    workspace_gb: float | None, build: dict) -> ModelMetadata:
    """The engine sidecar: the ONNX sidecar plus TensorRT version, GPU, precision and hashes
    (DESIGN.md section 4); `build` adds how it was built (timing cache, fp32 layers, ...)."""
    prefix = source.model_id.rsplit("-", 1)[0]
    return dataclasses.replace(
        source,
        format="engine",
        model_file=engine_path.name,
        model_sha256=engine_sha256,
        model_id=f"{prefix}-{precision}-{engine_sha256[:12]}",
        precision=precision,
        created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        tensorrt={
            "version": trt_version,
            "gpu_name": gpu_name,
            "compute_capability": compute_capability,
            "source_onnx_sha256": source.model_sha256,
            "workspace_gb": workspace_gb,
            **build,
        },
    )


def check_request(source: ModelMetadata, engine_path: Path, precision: str,
                  calib_data: str | os.PathLike | None = None, workspace_gb: float | None = None,
                  building: bool = True) -> None:
    """Argument checks that need neither TensorRT nor a GPU; ValueError naming the argument.
    `building` False: only describing an existing engine (no calibration data needed)."""
    try:
        fmt = format_for_path(engine_path)
    except ValueError:
        fmt = None
    if fmt != "engine":
        raise ValueError(f"engine file {engine_path}: an engine file must end in .engine or .plan")
    if source.format != "onnx":
        raise ValueError(f"engines are built from an ONNX model, not a {source.format!r} file")
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if building and precision == "int8" and calib_data is None:
        raise ValueError("precision int8 needs calibration data (--calib-data MS2_ROOT, real "
                         "frames)")
    if workspace_gb is not None and not workspace_gb > 0:
        raise ValueError(f"workspace {workspace_gb} GB: expected a positive size")


def check_build_prerequisites(engine_path: Path) -> None:
    """What a build needs besides TensorRT, checked before minutes of building: ONNX Runtime
    (the accuracy check's fp32 reference) and a writable folder for the engine.
    Raises:
        ImportError naming the package; ValueError naming the folder.
    """
    if importlib.util.find_spec("onnxruntime") is None:
        raise ImportError("'onnxruntime' is not importable: every engine is checked against ONNX "
                          "Runtime fp32 (CPU) after the build; pip install onnxruntime")
    folder = engine_path.parent  # Path("m.engine").parent is Path(".")
    if not folder.is_dir():
        raise ValueError(f"engine file {engine_path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"engine file {engine_path}: folder {folder} is not writable")


def _pin_fp32_layers(trt, network) -> int:
    """Pins LayerNorm / Softmax layers (inputs' math and outputs) to fp32; returns their count."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    type_names = [layer.type.name for layer in layers]
    pinned = fp32_layer_indices(type_names)
    for i in pinned:
        layer = layers[i]
        if type_names[i] == "NORMALIZATION":
            # get_layer returns the ILayer base; re-class it to reach the normalisation's own
            # compute precision (Polygraphy's idiom), so the mean/variance reductions are fp32 too.
            layer.__class__ = trt.INormalizationLayer
            layer.compute_precision = trt.float32
        layer.precision = trt.float32
        for out in range(layer.num_outputs):
            layer.set_output_type(out, trt.float32)
    if "NORMALIZATION" not in type_names and "REDUCE" in type_names:
        LOG.warning("no LayerNormalization layer in the network but reductions: if LayerNorm "
                    "was exported decomposed (opset < 17) its fp16 reductions may overflow; "
                    "export with --opset 17 or later")
    return len(pinned)


def _use_timing_cache(trt, config, path: Path | None) -> dict:
    """Loads the timing cache file into `config` (a fresh one if absent, unreadable or refused)."""
    if path is None:
        return {"used": False}
    try:
        blob = path.read_bytes() if path.is_file() else b""
    except OSError as exc:
        LOG.warning("timing cache %s is unreadable (%s); building without it", path, exc)
        blob = b""
    used = False
    if blob:
        try:
            cache = config.create_timing_cache(blob)
            # ignore_mismatch=True loads a cache written on another GPU too (as NVIDIA's samples
            # do) instead of refusing it. NvInfer.h warns that timings from a device with other
            # properties can lead to slower or, rarely, wrong tactic choices: the node's engine
            # cache keeps one timing cache per GPU, so only a --timing-cache given by hand can be
            # foreign, and every engine still passes the accuracy check before it is written.
            used = cache is not None and bool(config.set_timing_cache(cache, ignore_mismatch=True))
        except (RuntimeError, TypeError, ValueError) as exc:
            LOG.warning("timing cache %s is unreadable (%s)", path, exc)
    if used:
        LOG.info("timing cache %s: loaded %d bytes", path, len(blob))
    else:
        if blob:
            LOG.warning("timing cache %s (%d bytes) was not used; building without it, it will "
                        "be replaced", path, len(blob))
        config.set_timing_cache(config.create_timing_cache(b""), ignore_mismatch=True)
    return {"path": str(path), "used": used, "loaded_bytes": len(blob) if used else 0}


def _progress_monitor(trt, progress: Callable[[str], None]):
    """Forwards TensorRT's top-level build phases to `progress` (TensorRT 10 IProgressMonitor)."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)

        def phase_start(self, phase_name, parent_phase, num_steps) -> None:
            if parent_phase is None:
                progress(f"TensorRT: {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name, step) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name) -> None:
            pass

    return Monitor()


def _build_serialized(trt, onnx_path: Path, *, precision: str, workspace_gb: float,
                      calibrator, timing_cache: Path | None, progress,
                      workspace_option: str = "--workspace-gb") -> tuple:
    """Parses and builds; returns (serialized engine, build info dict, timing cache bytes|None)."""
    from depth_fusion_ros.backends.tensorrt_backend import tensorrt_logger

    logger = tensorrt_logger(trt)
    logger.take_errors()
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)  # must outlive the build (it owns the weights)
    if not parser.parse_from_file(str(onnx_path)):  # resolves external data next to the file
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path} ({len(errors)} "
                               f"error(s)): {' | '.join(errors) or 'no detail'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    info: dict = {"fp32_layers": 0}
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # "fp32" means fp32 (the accuracy limit assumes it)
    else:
        config.set_flag(trt.BuilderFlag.FP16)  # int8 layers fall back to fp16, not fp32
        info["fp32_layers"] = _pin_fp32_layers(trt, network)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
    info["timing_cache"] = _use_timing_cache(trt, config, timing_cache)
    if progress is not None:
        config.progress_monitor = _progress_monitor(trt, progress)
    serialized = builder.build_serialized_network(network, config)
    errors = logger.take_errors()
    if calibrator is not None and calibrator.error is not None:
        raise EngineBuildError(f"int8 calibration failed while reading frames: "
                               f"{type(calibrator.error).__name__}: {calibrator.error}")
    if serialized is None:
        raise EngineBuildError(explain_build_failure(onnx_path, errors, workspace_gb,
                                                     workspace_option))
    timing_blob = None
    if timing_cache is not None and config.get_timing_cache() is not None:
        timing_blob = bytes(memoryview(config.get_timing_cache().serialize()))
    return serialized, info, timing_blob


def check_engine_accuracy(serialized, md: ModelMetadata, onnx_path: Path, source: ModelMetadata,
                          device: str, frames: list) -> AccuracyReport:
    """Runs the in-memory engine and ONNX Runtime fp32 (CPU) on the sample inputs plus `frames`
    ([(thermal [1,1,H,W], rgb [1,3,H,W])]) and compares every output: the depth maps and, for
    models with the uncertainty head, the confidence maps."""
    from depth_fusion_ros.backends.onnxruntime_backend import OnnxRuntimeBackend
    from depth_fusion_ros.backends.tensorrt_backend import TensorRTBackend

    sample = sample_inputs(source.height, source.width)
    inputs = [(sample["thermal"], sample["rgb"]), *frames]
    reference = OnnxRuntimeBackend(onnx_path, source, "cpu", num_threads=os.cpu_count() or 1)
    engine = TensorRTBackend.from_serialized(serialized, md, device)
    try:
        pairs = [(reference.infer_outputs(t, r), engine.infer_outputs(t, r)) for t, r in inputs]
    finally:
        engine.close()
    return compare_outputs(pairs, md.precision, label=md.model_file)


def _accuracy_frames(calib_data, calib_split: str, n_frames: int, source: ModelMetadata,
                     calib_frames: int = 0) -> list:
    """Real frames for the accuracy check: between the calibration picks and never one of the
    `calib_frames` calibration frames (int8 is not judged on its own data)."""
    if calib_data is None or n_frames <= 0:
        return []
    from depth_fusion_ros.backends.tensorrt_calibration import calibration_batches

    frames = list(calibration_batches(calib_data, calib_split, n_frames, source.height,
                                      source.width, phase=0.5,
                                      exclude_calibration=calib_frames))
    if len(frames) < n_frames:
        LOG.warning("accuracy check: %d of %d real frames (split %r of %s has no more frames "
                    "outside the %d calibration frames)", len(frames), n_frames, calib_split,
                    calib_data, calib_frames)
    return frames


def _int8_calibrator(trt, source: ModelMetadata, calib_data, calib_split: str,
                     calib_frames: int, cache: Path, index: int):
    """The entropy calibrator over `calib_frames` real frames, buffers on GPU `index`."""
    from depth_fusion_ros.backends.tensorrt_calibration import (
        calibration_batches,
        calibration_identity,
        make_calibrator,
    )

    batches = calibration_batches(calib_data, calib_split, calib_frames, source.height,
                                  source.width)
    names = {spec.view: spec.name for spec in source.inputs}
    identity = calibration_identity(source.model_sha256, calib_data, calib_split, calib_frames)
    return make_calibrator(trt, batches, names, cache, identity, index)


def _write_timing_cache(path: Path | None, blob: bytes | None) -> None:
    if path is None or not blob:
        return
    try:
        atomic_write_bytes(path, blob)
    except OSError as exc:  # the engine is already safe; only the next build gets slower
        LOG.warning("could not write timing cache %s: %s", path, exc)


def _checked_metadata(trt, serialized, source, onnx_path, engine_path, *, precision, index,
                      gpu_name, capability, workspace_gb, build, frames, say,
                      refused: str) -> ModelMetadata:
    """Sidecar for `serialized` with its accuracy figures; raises EngineAccuracyError (message
    ending with `refused`) above the limits and EngineBuildError when the engine cannot run."""
    sha = hashlib.sha256(memoryview(serialized)).hexdigest()
    md = engine_metadata(source, engine_path, sha, precision=precision,
                         trt_version=trt.__version__, gpu_name=gpu_name,
                         compute_capability=capability, workspace_gb=workspace_gb, build=build)
    say(f"checking {engine_path.name} against ONNX Runtime fp32 on {1 + len(frames)} input(s)")
    try:
        report = check_engine_accuracy(serialized, md, onnx_path, source, f"cuda:{index}", frames)
    except (RuntimeError, ValueError, MemoryError) as exc:
        raise EngineBuildError(f"the engine built from {onnx_path} could not be run for the "
                               f"accuracy check: {type(exc).__name__}: {exc}") from exc
    md.tensorrt["accuracy"] = report.to_dict()
    say(report.message)
    if not report.passed:
        advice = {"fp32": "report it with the ONNX file: fp32 engines must match",
                  "fp16": "build with --precision fp32, or check the export's opset (>= 17)",
                  "int8": "calibrate on more or other frames (--calib-frames, --calib-split; "
                          "the calibration cache is redone for them), or build fp16"}[precision]
        raise EngineAccuracyError(f"{report.message}. {refused}; {advice}", report)
    return md


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, *,
                 precision: str = "fp16", device: str = "cuda:0", workspace_gb: float = 4.0,
                 calib_data: str | os.PathLike | None = None, calib_split: str = "train",
                 calib_frames: int = 200, calib_cache: str | os.PathLike | None = None,
                 accuracy_frames: int = 8, timing_cache: str | os.PathLike | None = None,
                 progress: Callable[[str], None] | None = None,
                 workspace_option: str = "--workspace-gb") -> ModelMetadata:
    """Builds, checks and writes a TensorRT engine (+ sidecar) from an exported ONNX model.

    Args:
        onnx_path: `.onnx` with its sidecar; engine_path: `.engine` or `.plan` to write.
        precision: "fp32" | "fp16" | "int8"; device: "cuda" / "cuda:N", the GPU to build for.
        workspace_gb: builder workspace pool limit.
        calib_data: MS2 root: int8 calibration frames (required for int8) and `accuracy_frames`
            real frames for the accuracy check (any precision).
        calib_split, calib_frames: split and number of frames to calibrate on.
        calib_cache: calibration cache (default `<engine>.calib`), keyed by the ONNX sha256.
        timing_cache: TensorRT timing cache file to load and update (None: none).
        progress: called with one-line progress messages (default: logged at INFO).
        workspace_option: what failure messages call the workspace setting (the node passes
            "parameter engine_workspace_gb").
    Returns:
        the sidecar written next to the engine (`tensorrt.accuracy` holds the check's figures).
    Raises:
        ModelMetadataError (ONNX or sidecar), ValueError (arguments), ImportError (no TensorRT
        10), RuntimeError (no GPU), EngineBuildError / EngineAccuracyError (build, check).
    """
    from depth_fusion_ros.backends.tensorrt_backend import import_tensorrt, select_cuda_device

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    timing_cache = Path(timing_cache) if timing_cache is not None else None
    say = progress or (lambda message: LOG.info("%s", message))
    source = load_metadata(onnx_path)
    check_request(source, engine_path, precision, calib_data, workspace_gb)
    check_build_prerequisites(engine_path)
    calib_n = calib_frames if precision == "int8" else 0
    frames = _accuracy_frames(calib_data, calib_split, accuracy_frames, source,
                              calib_n)  # read now: a bad data root fails before the build
    trt = import_tensorrt()
    index, gpu_name, capability = select_cuda_device(device)  # before any TensorRT call
    cache = Path(calib_cache) if calib_cache else Path(f"{engine_path}.calib")
    calibrator = None
    if precision == "int8":
        calibrator = _int8_calibrator(trt, source, calib_data, calib_split, calib_frames, cache,
                                      index)
    say(f"building {precision} engine from {onnx_path} on cuda:{index} ({gpu_name}); minutes "
        "for Swin models")
    try:
        serialized, build, timing_blob = _build_serialized(
            trt, onnx_path, precision=precision, workspace_gb=workspace_gb,
            calibrator=calibrator, timing_cache=timing_cache, progress=progress,
            workspace_option=workspace_option)
    except EngineBuildError:
        raise
    except (RuntimeError, MemoryError, TypeError, ValueError) as exc:  # e.g. CUDA OOM, bad graph
        from depth_fusion_ros.backends.tensorrt_backend import tensorrt_logger

        errors = tensorrt_logger(trt).take_errors() + [f"{type(exc).__name__}: {exc}"]
        raise EngineBuildError(explain_build_failure(onnx_path, errors, workspace_gb,
                                                     workspace_option)) from exc
    if calibrator is not None:
        # A reused cache was made from the same identity (data, split, frame count), so its
        # scales came from as many frames as a calibration now would read.
        from depth_fusion_ros.backends.tensorrt_calibration import pick_frames, split_frames

        calibrated = (len(pick_frames(len(split_frames(calib_data, calib_split)), calib_frames))
                      if calibrator.cache_reused else calibrator.n_batches)
        build["calibration"] = {"data": str(Path(calib_data).resolve()), "split": calib_split,
                                "frames": calibrated, "cache": str(cache),
                                "cache_reused": calibrator.cache_reused}
    try:
        md = _checked_metadata(trt, serialized, source, onnx_path, engine_path,
                               precision=precision, index=index, gpu_name=gpu_name,
                               capability=capability, workspace_gb=workspace_gb, build=build,
                               frames=frames, say=say, refused=f"{engine_path} was not written")
    except EngineBuildError:
        _write_timing_cache(timing_cache, timing_blob)  # tactic timings stay valid
        raise
    sidecar_path(engine_path).unlink(missing_ok=True)  # never pair an old sidecar with a new engine
    atomic_write_bytes(engine_path, serialized)
    write_metadata(md, engine_path)
    _write_timing_cache(timing_cache, timing_blob)
    return md


def describe_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, *,
                    precision: str, device: str = "cuda:0",
                    calib_data: str | os.PathLike | None = None, calib_split: str = "train",
                    accuracy_frames: int = 8,
                    progress: Callable[[str], None] | None = None) -> ModelMetadata:
    """Writes the sidecar of an engine built elsewhere on this machine (e.g. by trtexec) after
    the same accuracy check as `build_engine`; raises as `build_engine` does, or ValueError
    when the engine file does not exist."""
    from depth_fusion_ros.backends.tensorrt_backend import import_tensorrt, select_cuda_device

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    say = progress or (lambda message: LOG.info("%s", message))
    source = load_metadata(onnx_path)
    check_request(source, engine_path, precision, building=False)
    if not engine_path.is_file():
        raise ValueError(f"engine {engine_path} does not exist")
    check_build_prerequisites(engine_path)
    trt = import_tensorrt()
    index, gpu_name, capability = select_cuda_device(device)
    frames = _accuracy_frames(calib_data, calib_split, accuracy_frames, source)
    md = _checked_metadata(trt, engine_path.read_bytes(), source, onnx_path, engine_path,
                           precision=precision, index=index, gpu_name=gpu_name,
                           capability=capability, workspace_gb=None,
                           build={"built_by": "external (sidecar written by --sidecar-only)"},
                           frames=frames, say=say,
                           refused=f"no sidecar was written for {engine_path}")
    write_metadata(md, engine_path)
    return md
