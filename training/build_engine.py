"""Build a TensorRT 10 engine from an exported ONNX model, with its metadata sidecar.

    python -m training.build_engine --onnx model.onnx --out model.engine [--precision fp16]
        [--calib-data MS2_ROOT --calib-frames 200] [--workspace-gb 4] [--timing-cache FILE]

Uses the TensorRT 10 Python builder API (TensorRT developer guide, "The Python API"): Builder,
network definition (explicit batch is the only mode in 10.x), OnnxParser, IBuilderConfig with a
workspace memory-pool limit, FP16 / INT8 builder flags, an entropy calibrator fed by the shared
preprocessing over real MS2 frames, timing-cache reuse and build_serialized_network. The engine
sidecar records the TensorRT version, GPU name and compute capability, so the node refuses an
engine built elsewhere. Engines are not portable: build on the machine (GPU + TensorRT) that runs it.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import sys
from pathlib import Path

from depth_fusion_ros.fileio import atomic_write_bytes
from depth_fusion_ros.metadata import (
    ModelMetadata,
    ModelMetadataError,
    load_metadata,
    sha256_file,
    write_metadata,
)

TRTEXEC_EPILOG = """\
Equivalent trtexec command (TensorRT 10), for users who prefer it:
  trtexec --onnx=model.onnx --saveEngine=model.engine --fp16 \\
          --memPoolSize=workspace:4096M --timingCacheFile=timing.cache
trtexec writes no sidecar: afterwards run
  python -m training.build_engine --onnx model.onnx --out model.engine --precision fp16 --sidecar-only
on the same machine so the node accepts the engine.
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training.build_engine",
        description="Build a TensorRT 10 engine (+ sidecar) from an exported DMCF-SIDE ONNX model.",
        epilog=TRTEXEC_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--onnx", required=True, type=Path, help="exported model (with .onnx.json)")
    parser.add_argument("--out", required=True, type=Path, help="engine file to write (.engine)")
    parser.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16")
    parser.add_argument("--calib-data", type=Path, help="MS2 root with real frames (int8 only)")
    parser.add_argument("--calib-split", default="train", help="MS2 split to calibrate on")
    parser.add_argument("--calib-frames", type=int, default=200, help="frames for int8 calibration")
    parser.add_argument("--calib-cache", type=Path, help="calibration cache (default <out>.calib)")
    parser.add_argument("--workspace-gb", type=float, default=4.0, help="builder workspace limit")
    parser.add_argument("--timing-cache", type=Path, help="timing cache file to load and update")
    parser.add_argument("--device", default="cuda:0", help="GPU to build for")
    parser.add_argument(
        "--sidecar-only", action="store_true",
        help="only write the sidecar for an engine already built (e.g. by trtexec) on this machine",
    )
    return parser.parse_args(argv)


def calibration_batches(root: Path, split: str, n_frames: int, height: int, width: int):
    """Yields (thermal [1,1,H,W], rgb [1,3,H,W]) float32 from real MS2 frames, evenly spread.

    Uses the shared reader and preprocessing (depth_fusion_ros.ms2 / preprocess), so the int8
    ranges are calibrated on exactly what the node feeds at runtime.
    """
    from depth_fusion_ros import ms2
    from depth_fusion_ros.preprocess import preprocess_rgb, preprocess_thermal

    frames = [(seq, f) for seq in ms2.read_split(root, split) for f in ms2.list_frames(root, seq)]
    if not frames:
        raise SystemExit(f"--calib-data {root}: split {split!r} has no frames")
    step = max(1, len(frames) // max(1, n_frames))
    for seq, frame in frames[::step][:n_frames]:
        thermal = preprocess_thermal(ms2.read_thermal(root, seq, frame), (height, width))
        rgb = preprocess_rgb(ms2.read_rgb(root, seq, frame), (height, width))
        yield thermal[None], rgb[None]


def make_calibrator(trt, batches, input_names: dict[str, str], cache_path: Path, device: str):
    """An IInt8EntropyCalibrator2 over `batches`; `input_names` maps view -> ONNX input name."""
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # required by the pybind base class
            self._batches = iter(batches)
            self._device = torch.device(device)
            self._buffers: dict[str, torch.Tensor] = {}

        def get_batch_size(self) -> int:
            return 1  # the ONNX has static [1, ...] inputs

        def get_batch(self, names):
            try:
                thermal, rgb = next(self._batches)
            except StopIteration:
                return None  # tells TensorRT calibration is complete
            views = {"thermal": thermal, "rgb": rgb}
            arrays = {name: views[view] for view, name in input_names.items()}
            for name in names:
                self._buffers[name] = torch.from_numpy(arrays[name]).to(self._device).contiguous()
            return [int(self._buffers[name].data_ptr()) for name in names]

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            atomic_write_bytes(cache_path, cache)

    return EntropyCalibrator()


def parse_onnx(trt, builder, logger, onnx_path: Path):
    """Parses the ONNX into a network, printing every parser error before failing."""
    network = builder.create_network(0)  # TensorRT 10: explicit batch is implied, flag deprecated
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        for i in range(parser.num_errors):
            print(f"ONNX parser error {i}: {parser.get_error(i)}", file=sys.stderr)
        raise SystemExit(f"TensorRT could not parse {onnx_path} ({parser.num_errors} error(s) above)")
    return network, parser


def build(args: argparse.Namespace, source: ModelMetadata) -> None:
    """Builds and writes the serialised engine for args.onnx (sidecar written by the caller)."""
    from depth_fusion_ros.backends.tensorrt_backend import import_tensorrt

    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = parse_onnx(trt, builder, logger, args.onnx)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(args.workspace_gb * (1 << 30)))
    if args.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8 layers fall back to fp16, not fp32
    if args.precision == "int8":
        if args.calib_data is None:
            raise SystemExit("--precision int8 needs --calib-data MS2_ROOT (real frames)")
        config.set_flag(trt.BuilderFlag.INT8)
        names = {spec.view: spec.name for spec in source.inputs}
        batches = calibration_batches(
            args.calib_data, args.calib_split, args.calib_frames, source.height, source.width
        )
        cache = args.calib_cache or Path(str(args.out) + ".calib")
        config.int8_calibrator = make_calibrator(trt, batches, names, cache, args.device)
    if args.timing_cache is not None:
        blob = args.timing_cache.read_bytes() if args.timing_cache.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False)
    print(f"building {args.precision} engine from {args.onnx} (minutes for Swin models) ...")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SystemExit(f"TensorRT failed to build an engine from {args.onnx} (log above)")
    if args.timing_cache is not None:
        atomic_write_bytes(args.timing_cache, config.get_timing_cache().serialize())
    atomic_write_bytes(args.out, serialized)


def engine_metadata(args: argparse.Namespace, source: ModelMetadata) -> ModelMetadata:
    """The engine sidecar: the ONNX sidecar plus TensorRT version, GPU, precision and hashes."""
    from depth_fusion_ros.backends.tensorrt_backend import cuda_device_info, import_tensorrt

    trt = import_tensorrt()
    _, gpu_name, capability = cuda_device_info(args.device)
    sha = sha256_file(args.out)
    prefix = source.model_id.rsplit("-", 1)[0]
    return dataclasses.replace(
        source,
        format="engine",
        model_file=args.out.name,
        model_sha256=sha,
        model_id=f"{prefix}-{args.precision}-{sha[:12]}",
        precision=args.precision,
        created_utc=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        tensorrt={
            "version": trt.__version__,
            "gpu_name": gpu_name,
            "compute_capability": capability,
            "source_onnx_sha256": source.model_sha256,
            "workspace_gb": args.workspace_gb,
        },
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        source = load_metadata(args.onnx)
    except ModelMetadataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out.suffix != ".engine":
        print(f"error: --out {args.out}: the engine file must end in .engine", file=sys.stderr)
        return 2
    try:
        if args.sidecar_only:
            if not args.out.is_file():
                print(f"error: --sidecar-only: engine {args.out} does not exist", file=sys.stderr)
                return 2
        else:
            build(args, source)
        sidecar = write_metadata(engine_metadata(args, source), args.out)
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    print(f"wrote {args.out} and {sidecar}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
